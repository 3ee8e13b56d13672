"""FaceAnime inference: one still image -> a face video (MP4 + frame strip).

  still (any image file, 'astronaut', or 'orl:<subject>') -> FaceMesh landmarks -> square face
  crop -> geometry sequence (PREDICTION: 3DDP rollout with z ~ N(0, I); RETARGETING: the relative
  pose/expression of a driving clip) -> sparse texture renders of the still at every predicted
  geometry -> generator frames.

Command line (after a training run in RUN): ``python -m jaxpapers.tools.faceanime_animate``.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from jaxpapers import viz
from jaxpapers.data import face_video, faces
from jaxpapers.methods.faceanime import dynamics, steps

MODES = ("prediction", "retarget")


def read_still(spec: str) -> np.ndarray:
    """uint8 RGB image of a still spec: a file path, 'astronaut', or 'orl:<k>' (k-th subject)."""
    if spec == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    if spec.startswith("orl:"):
        subject = int(spec.split(":", 1)[1])
        path = os.path.join(faces.resolve_dir(), f"s{subject}", "1.pgm")
    else:
        path = spec
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Still image {path!r} (from {spec!r}) not found.")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def crop_still(image: np.ndarray, size: int, margin: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Finds the face with FaceMesh and crops it: (uint8 [S, S, 3], landmarks [468, 3])."""
    from jaxpapers.lib.face3d.tracker import FaceMeshTracker

    lm = FaceMeshTracker().landmarks(image)
    if lm is None:
        raise ValueError("No face found in the still image (FaceMesh); use a frontal face photo.")
    crop, lm_c = face_video.crop_face_video(image[None], lm[None], size, margin=margin)
    return crop[0], lm_c[0].astype(np.float32)


def frozen(config) -> ml_collections.FrozenConfigDict:
    """A hashable copy of the config (a static argument of the jitted functions below)."""
    if isinstance(config, ml_collections.FrozenConfigDict):
        return config
    return ml_collections.FrozenConfigDict(config)


def predict_params(state, image: jax.Array, z: jax.Array, *, config, num_frames: int):
    """3DDP rollout: image [1,S,S,3] in [-1,1], z [N, latent] -> params [N, T, P]."""
    return _predict_params(state, image, z, config=frozen(config), num_frames=num_frames)


def render_frames(state, x_src: jax.Array, src_lm: jax.Array, verts: jax.Array, *, config):
    """Generator frames for one source [S,S,3] (float) at target geometries verts [T, V, 3].

    Returns (frames [T,S,S,3], conditioning renders n_dst [T,S,S,3], attention w [T,S,S,1]).
    """
    return _render_frames(state, x_src, src_lm, verts, config=frozen(config))


@functools.partial(jax.jit, static_argnames=("config", "num_frames"))
def _predict_params(state, image, z, *, config, num_frames):
    net = steps.build_dyn(config, int(state.geom.p_std.shape[0]))
    img = jnp.broadcast_to(image, (z.shape[0], *image.shape[1:]))
    return net.apply(
        {"params": state.dyn.params}, img, z, num_frames, method=dynamics.Dynamics.rollout
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _render_frames(state, x_src, src_lm, verts, *, config):
    t = verts.shape[0]
    xs = jnp.broadcast_to(x_src, (t, *x_src.shape))
    ls = jnp.broadcast_to(src_lm, (t, *src_lm.shape))
    n_src, n_dst = steps.conditions(xs, ls, verts, config)
    frames, w = steps.generate(state, xs, n_src, n_dst, config)
    return frames, n_dst, w


def animate(
    state,
    config,
    still: np.ndarray,
    still_lm: np.ndarray,
    *,
    mode: str = "prediction",
    num_frames: int | None = None,
    seed: int = 0,
    driving_lm: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One cropped still (uint8 [S,S,3], landmarks [468,3]) -> {'frames', 'renders', 'verts'}.

    Prediction mode samples z ~ N(0, I) with `seed`; retarget mode needs `driving_lm` [T, 468, 3]
    (its first frame plays the role of the still's pose/expression).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    geom = state.geom
    x = jnp.asarray(steps.np_float(still))
    if mode == "prediction":
        n = int(num_frames or config.infer.num_frames)
        z = jax.random.normal(jax.random.key(seed), (1, int(config.model.dyn_latent)))
        params = predict_params(state, x[None], z, config=config, num_frames=n)[0]
    else:
        if driving_lm is None:
            raise ValueError("retarget mode needs driving_lm [T, 468, 3].")
        lm = np.asarray(driving_lm)[: num_frames or None]
        params = dynamics.sequence_params(jnp.asarray(lm), geom)
    verts = dynamics.params_to_vertices(params, jnp.asarray(still_lm), geom)
    frames, renders, _ = render_frames(state, x, jnp.asarray(still_lm), verts, config=config)
    return {"frames": to_uint8(frames), "renders": to_uint8(renders), "verts": np.asarray(verts)}


def to_uint8(x) -> np.ndarray:
    """[-1, 1] float -> uint8."""
    return np.asarray(jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255)).astype(np.uint8)


def write_mp4(path: str, frames: np.ndarray, fps: int = 12) -> str:
    """Writes uint8 frames [T, H, W, 3] as H.264 (yuv420p; sizes rounded up to even by padding)."""
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return viz.write_mp4(path, frames, fps)


def save_outputs(out_dir: str, name: str, still: np.ndarray, result: dict, fps: int) -> dict:
    """MP4 of the frames and a PNG strip (still, then 8 frames over sparse renders)."""
    frames = result["frames"]
    mp4 = write_mp4(os.path.join(out_dir, f"{name}.mp4"), frames, fps)
    pick = np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)
    top = np.concatenate([still[None], frames[pick]])
    bottom = np.concatenate([still[None], result["renders"][pick]])
    png = viz.save_image_grid(
        os.path.join(out_dir, f"{name}_strip.png"),
        np.concatenate([top, bottom]),
        nrow=len(top),
        scale=2,
    )
    return {"mp4": mp4, "png": png}


def benchmark(state, config, still: np.ndarray, still_lm: np.ndarray, repeats: int = 3) -> float:
    """Frames/s of the whole still -> video pipeline after compilation (prediction mode)."""
    animate(state, config, still, still_lm)  # compile
    t0 = time.perf_counter()
    for r in range(repeats):
        out = animate(state, config, still, still_lm, seed=r + 1)
    return repeats * len(out["frames"]) / (time.perf_counter() - t0)
