"""Evaluation: swap/reenact/self videos of the first clip, with their metrics.

Metrics (all on the first video of ``data.videos``, S x S crops; pixel errors in [0, 255]):

* ``rec_l1``, ``rec_psnr``: self-reconstruction of the held-out last ``data.test_frames`` frames
  (source = the first training frame, geometry = the frames' own) against the real frames;
  ``rec_l1_face`` inside the face oval.
* ``flicker_<mode>``: temporal warping error of an output video through the mesh
  correspondence (``losses.temporal_loss`` of consecutive frames, face pixels visible in both),
  for 'swap', 'reenact', 'self' and the real clip itself ('real', its tracked meshes).
* ``id_sim_<mode>``: mean cosine of identity-net embeddings of output frames and the source
  face (``id_sim_real`` = the real clip vs the source: the "no swap" baseline); needs the
  identity net (``identity.path``).
* ``fd_<feat>_<mode>``: Fréchet distance of output frames to the real clip's frames, features
  = identity-net embeddings (``id``) or 8x8 RGB thumbnails (``px``) when it is off.
* ``pose_err_deg``/``trans_err_px``/``expr_err`` (``eval.retrack``): the swap output is
  re-tracked with the FaceMesh tracker and decomposed; rotation angle to the driving pose,
  translation, and the mean vertex distance of the expression deformations (canonical units:
  the face has unit RMS radius); ``retrack_found`` = fraction of frames with a face.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import batching, parallel, viz
from jaxpapers.evals.gan import metrics as gm
from jaxpapers.lib.face3d import geometry, topology
from jaxpapers.methods.unifacegan import identity, inference, inputs, losses, synthetic


def infer_fn(state, config) -> Callable[..., dict[str, np.ndarray]]:
    """Face swapping / reenactment with the trained generator (``inference.edit_video``):
    ``fn(frames, landmarks, src_image, src_landmarks, mode)`` with uint8 [T, S, S, 3] driving or
    target frames and their FaceMesh meshes [T, 468, 3], a uint8 [S, S, 3] source face and its
    mesh, mode 'swap' | 'reenact' | 'self'; returns 'frames' (uint8) and the rendered geometry."""
    return functools.partial(inference.edit_video, jax.device_get(state.g), config)


def eval_clip(config):
    """(frames, landmarks, n_train, src_image, src_landmarks) of the evaluation clip."""
    d = config.data
    if d.source == "synthetic":
        vids = synthetic.make_videos(d.synthetic_ids, d.synthetic_frames, d.size, seed=d.seed)
        frames, lm = vids[0]
        found = np.ones(len(frames), bool)
        src_img, src_lm = vids[-1][0][0], vids[-1][1][0]
    else:
        frames, lm, found = inputs.load_video(config, d.videos.split(",")[0])
        images, lms, _ = inputs.load_stills(config)
        k = int(config.eval.source_index)
        if not 0 <= k < len(images):
            raise ValueError(f"eval.source_index={k} outside the {len(images)} still faces.")
        src_img, src_lm = images[k], lms[k]
        if src_img.shape[-1] == 1:
            src_img = np.repeat(src_img, 3, -1)
    tr_f, tr_l = inputs.split_video(frames, lm, found, "train", d.test_frames)
    te_f, te_l = inputs.split_video(frames, lm, found, "test", d.test_frames)
    return (np.concatenate([tr_f, te_f]), np.concatenate([tr_l, te_l]), len(tr_f), src_img, src_lm)


def flicker(frames_u8: np.ndarray, out: dict) -> float:
    """Mean |G_t - warp(G_{t+1})| (0..255) over face pixels of consecutive frames."""
    return float(
        _flicker(
            jnp.asarray(frames_u8, jnp.float32), out["tri_id"], out["bary"], out["verts"],
            out["depth"],
        )
    )  # fmt: skip


@jax.jit
def _flicker(x, tri_id, bary, verts, depth):
    faces = jnp.asarray(topology.triangles(), jnp.int32)
    return losses.temporal_loss(x[:-1], x[1:], tri_id[:-1], bary[:-1], verts[1:], faces, depth[1:])


@jax.jit
def _embed_chunk(model, frames_u8):
    return model.embed(frames_u8.astype(jnp.float32) / 127.5 - 1.0)


def _embed(model, frames_u8: np.ndarray) -> np.ndarray:
    return batching.map_batches(
        lambda x: _embed_chunk(model, x), frames_u8, batch_size=64, mesh=parallel.make_mesh()
    )


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    return gm.frechet_distance(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )


def _thumb(frames_u8: np.ndarray) -> np.ndarray:
    n, s = frames_u8.shape[:2]
    f = s // 8
    return frames_u8.reshape(n, 8, f, 8, f, 3).astype(np.float32).mean((2, 4)).reshape(n, -1) / 255


def retrack_errors(frames_u8: np.ndarray, driving_verts: np.ndarray) -> dict[str, float]:
    """Pose/expression error of an output video re-tracked with FaceMesh (see module doc)."""
    from jaxpapers.lib.face3d import tracker

    lm, found = tracker.track_video(frames_u8)
    found = np.asarray(found, bool)
    res = {"retrack_found": float(found.mean())}
    if found.sum() < 2:
        return res
    p_out, _, e_out = geometry.decompose(np.asarray(lm)[found])
    p_drv, _, e_drv = geometry.decompose(driving_verts[found])
    rel = np.einsum("tij,tkj->tik", np.asarray(p_out.R), np.asarray(p_drv.R))
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)
    res["pose_err_deg"] = float(np.degrees(np.arccos(cos)).mean())
    res["trans_err_px"] = float(
        np.linalg.norm(np.asarray(p_out.t - p_drv.t)[:, :2], axis=-1).mean()
    )
    res["expr_err"] = float(np.linalg.norm(np.asarray(e_out) - np.asarray(e_drv), axis=-1).mean())
    return res


def evaluate(state, config, workdir: str) -> dict[str, float]:
    frames, lm, n_train, src_img, src_lm = eval_clip(config)
    g = jax.device_get(state.g)
    step = int(jax.device_get(state.step))
    res: dict[str, float] = {}
    outs = {
        m: inference.edit_video(g, config, frames, lm, src_img, src_lm, m)
        for m in ("swap", "reenact")
    }
    # Whole-clip self-reconstruction: source = the clip's first frame (its own texture).
    outs["self"] = inference.edit_video(g, config, frames, lm, frames[0], lm[0], "self")
    # Held-out self-reconstruction: the source is the first training frame.
    test = inference.edit_video(g, config, frames[n_train:], lm[n_train:], frames[0], lm[0], "self")
    real_te = frames[n_train:].astype(np.float32)
    err = np.abs(test["frames"].astype(np.float32) - real_te)
    res["rec_l1"] = float(err.mean())
    res["rec_l1_face"] = float((err * test["face"]).sum() / max(test["face"].sum() * 3, 1.0))
    res["rec_psnr"] = float(10 * np.log10(255.0**2 / max(np.mean(err**2), 1e-8)))
    for m, o in outs.items():
        res[f"flicker_{m}"] = flicker(o["frames"], o)
    res["flicker_real"] = flicker(frames, outs["self"])
    if config.eval.identity or identity.enabled(config):
        model = state.identity if state.identity is not None else identity.load(config)
        e_src = _embed(model, src_img[None])[0]
        e_real = _embed(model, frames)
        res["id_sim_real"] = float((e_real @ e_src).mean())
        for m in ("swap", "reenact"):
            e = _embed(model, outs[m]["frames"])
            res[f"id_sim_{m}"] = float((e @ e_src).mean())
            res[f"fd_id_{m}"] = _fd(e, e_real)
        res["fd_id_self"] = _fd(_embed(model, outs["self"]["frames"]), e_real)
    else:
        t_real = _thumb(frames)
        for m in ("swap", "reenact", "self"):
            res[f"fd_px_{m}"] = _fd(_thumb(outs[m]["frames"]), t_real)
    if config.eval.retrack:
        res.update(retrack_errors(outs["swap"]["frames"], outs["swap"]["verts"]))
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        fps = config.eval.fps
        for m, o in outs.items():
            inference.write_mp4(os.path.join(workdir, f"{m}.mp4"), o["frames"], fps)
        both = np.concatenate([frames, outs["swap"]["frames"], outs["reenact"]["frames"]], 2)
        inference.write_mp4(os.path.join(workdir, "driving_swap_reenact.mp4"), both, fps)
        src_row = np.broadcast_to(src_img, frames.shape)
        rows = [src_row, frames, outs["swap"]["frames"], outs["reenact"]["frames"]]
        rows.append(outs["self"]["frames"])
        every = max(1, len(frames) // 10)
        inference.comparison_strip(os.path.join(workdir, f"strip_step{step}.png"), rows, every)
        inference.comparison_strip(
            os.path.join(workdir, f"heldout_recon_step{step}.png"),
            [frames[n_train:], test["frames"]],
            max(1, (len(frames) - n_train) // 10),
        )
        viz.save_image_grid(os.path.join(workdir, "source.png"), src_img[None], scale=2)
    return res
