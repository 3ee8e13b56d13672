"""FaceAnime evaluation: held-out reconstruction, identity similarity, 3DDP errors, videos.

Numbers (all on frames the generator / 3DDP never trained on):
  rec_l1, rec_psnr   source = first held-out frame of each clip, targets = the other held-out
                     frames rendered at their TRACKED geometry; L1 in [-1, 1] units, PSNR in dB.
  id_sim_rec         cosine of identity embeddings (generated frame vs source frame) there;
  id_sim_stills      the same for the animated stills (prediction mode, every frame).
                     Measured with a SECOND identity net (seed + 100) so that the number is not
                     read off the very network the identity loss optimised.
  dyn_tf_mse         3DDP teacher-forced MSE (normalised parameters) on held-out windows;
  dyn_lm_err_px      mean vertex error (pixels) of the best of `samples` 3DDP rollouts vs the
                     real held-out sequence; dyn_static_err_px the same for repeating the source
                     geometry (the no-motion baseline);
  dyn_diversity_px   mean pairwise vertex distance between sampled futures of one still.
  fps_pipeline       frames/s of still -> video (3DDP + sparse render + G) after compilation.
Pictures/videos: <workdir>/videos/{still}_{mode}.mp4 + _strip.png, and eval_reconstruction.png.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import viz
from jaxpapers.data import face_video
from jaxpapers.lib import face_identity as fi
from jaxpapers.methods.faceanime import dynamics, inference, inputs, steps


def infer_fn(state, config) -> Callable[..., dict[str, np.ndarray]]:
    """Still image -> face video with the trained nets (``inference.animate``, what the
    ``faceanime_animate`` tool runs).

    ``fn(still, still_lm=None, *, mode='prediction', num_frames=None, seed=0, driving_lm=None)``:
    ``still`` is a uint8 RGB photo, cropped around the face FaceMesh finds
    (``inference.crop_still``), or, with ``still_lm``, an already cropped
    ``data.image_size`` face and its 468 landmarks. Returns 'frames' (uint8 [T, S, S, 3]),
    'renders' (the sparse-texture conditioning), 'verts' (the geometry) and 'still' (the crop).
    """
    state = jax.device_get(state)
    size = int(config.data.image_size)

    def fn(still: np.ndarray, still_lm: np.ndarray | None = None, **kwargs):
        if still_lm is None:
            still, still_lm = inference.crop_still(np.asarray(still), size)
        return {"still": still, **inference.animate(state, config, still, still_lm, **kwargs)}

    return fn


def _eval_identity(config) -> fi.IdentityModel:
    return steps.identity_model(config, seed_offset=100)


def _reconstruction(state, config, data: inputs.Clips, id_eval) -> tuple[dict, np.ndarray]:
    l1s, psnrs, sims, picture = [], [], [], None
    for i in range(len(data.frames)):
        frames, lm = data.split(i, "test")
        n = int(config.infer.eval_frames) + 1
        frames, lm = frames[:n], lm[:n]
        x = jnp.asarray(steps.np_float(frames))
        fake, n_dst, _ = inference.render_frames(
            state, x[0], jnp.asarray(lm[0]), jnp.asarray(lm[1:]), config=config
        )
        err = jnp.abs(fake - x[1:])
        l1s.append(float(jnp.mean(err)))
        mse = jnp.mean(jnp.square((fake - x[1:]) / 2.0), axis=(1, 2, 3))
        psnrs.append(float(jnp.mean(10 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10)))))
        sims.append(
            float(
                jnp.mean(
                    fi.identity_similarity(
                        id_eval.embed(fake), id_eval.embed(jnp.broadcast_to(x[0], fake.shape))
                    )
                )
            )
        )
        if picture is None:
            k = np.linspace(0, len(fake) - 1, min(6, len(fake))).astype(int)
            picture = np.concatenate(
                [np.asarray(x[1:][k]), np.asarray(n_dst[k]), np.asarray(fake[k])]
            )
    return {
        "rec_l1": float(np.mean(l1s)),
        "rec_psnr": float(np.mean(psnrs)),
        "id_sim_rec": float(np.mean(sims)),
    }, picture


def _dynamics(state, config, data: inputs.Clips) -> dict:
    geom = state.geom
    w, k = int(config.data.window), int(config.infer.samples)
    net = steps.build_dyn(config, int(geom.p_std.shape[0]))
    tf, errs, static, div = [], [], [], []
    for i in range(len(data.frames)):
        frames, lm = data.split(i, "test")
        if len(frames) < w:
            continue
        seq = inputs.windows(lm, np.array([0]), w, geom)
        img = jnp.asarray(steps.np_float(frames[:1]))
        mu, _ = net.apply(
            {"params": state.dyn.params}, jnp.asarray(seq), method=dynamics.Dynamics.posterior
        )
        pred = net.apply(
            {"params": state.dyn.params},
            img,
            jnp.asarray(seq),
            mu,
            method=dynamics.Dynamics.teacher_forced,
        )
        tf.append(float(jnp.mean(jnp.square(pred - seq[:, 1:]))))
        z = jax.random.normal(jax.random.key(i), (k, int(config.model.dyn_latent)))
        params = inference.predict_params(state, img, z, config=config, num_frames=w)
        verts = jnp.stack(
            [dynamics.params_to_vertices(p, jnp.asarray(lm[0]), geom) for p in params]
        )  # [k, T, V, 3]
        real = jnp.asarray(lm[:w])
        e = jnp.mean(jnp.linalg.norm(verts[..., :2] - real[None, ..., :2], axis=-1), (1, 2))
        errs.append(float(jnp.min(e)))
        static.append(float(jnp.mean(jnp.linalg.norm(real[:, :, :2] - real[:1, :, :2], axis=-1))))
        d = jnp.linalg.norm(verts[:, None, ..., :2] - verts[None, ..., :2], axis=-1).mean((2, 3))
        div.append(float(jnp.sum(d) / max(k * (k - 1), 1)))
    return {
        "dyn_tf_mse": float(np.mean(tf)),
        "dyn_lm_err_px": float(np.mean(errs)),
        "dyn_static_err_px": float(np.mean(static)),
        "dyn_diversity_px": float(np.mean(div)),
    }


def evaluate(state, config, workdir: str) -> dict[str, float]:
    """Metrics of the module docstring; writes pictures and videos into workdir."""
    state = jax.device_get(state)
    id_eval = _eval_identity(config)
    out = {}
    data = inputs.load_clips(config)
    rec, picture = _reconstruction(state, config, data, id_eval)
    out.update(rec)
    viz.save_image_grid(
        os.path.join(workdir, "eval_reconstruction.png"), picture, nrow=len(picture) // 3, scale=2
    )
    out.update(_dynamics(state, config, data))
    size = int(config.data.image_size)
    if config.infer.driving:  # another clip drives the retargeting videos
        v = face_video.load_face_video(config.infer.driving, size, config.data.cache_dir or None)
        driving = v.landmarks[v.found]
    else:  # the held-out part of the first training clip
        driving = data.split(0, "test")[1]
    vid_dir = os.path.join(workdir, "videos")
    sims, fps = [], None
    for n, spec in enumerate(config.infer.stills):
        try:
            still, lm = inference.crop_still(inference.read_still(spec), size)
        except (FileNotFoundError, ValueError) as e:
            print(f"faceanime: still {spec!r} skipped: {e}")
            continue
        res = inference.animate(state, config, still, lm, mode="prediction", seed=n)
        x = jnp.asarray(steps.np_float(res["frames"]))
        src = jnp.broadcast_to(jnp.asarray(steps.np_float(still)), x.shape)
        sims.append(float(jnp.mean(fi.identity_similarity(id_eval.embed(x), id_eval.embed(src)))))
        if n < int(config.infer.max_videos):
            name = spec.replace(":", "").replace("/", "_").split(".")[0][-24:]
            inference.save_outputs(vid_dir, f"{name}_prediction", still, res, config.infer.fps)
            ret = inference.animate(
                state,
                config,
                still,
                lm,
                mode="retarget",
                driving_lm=driving[: int(config.infer.num_frames)],
            )
            inference.save_outputs(vid_dir, f"{name}_retarget", still, ret, config.infer.fps)
        if fps is None and config.infer.benchmark:
            fps = inference.benchmark(state, config, still, lm, repeats=2)
    if sims:
        out["id_sim_stills"] = float(np.mean(sims))
    if fps is not None:
        out["fps_pipeline"] = float(fps)
    return out
