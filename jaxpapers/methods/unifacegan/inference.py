"""Whole-video inference (swapping and reenactment), MP4 writing and comparison strips.

Both tasks run the same generator: the geometry of every output frame is the source identity
with the driving frame's expression and pose (``s_t R_t (I_src + E_t) + t_t``); swapping keeps
the driving frame as the canvas (the face is replaced in the target video), reenactment keeps
the source image as the canvas (the source person moves like the driving video).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxpapers import batching, viz
from jaxpapers.lib.face3d import geometry
from jaxpapers.methods.unifacegan import conditioning, steps

MODES = ("swap", "reenact", "self")


# Compiled programs only (pure computation, no inputs): evaluation calls edit_video several times
# per config, and one jitted function per config compiles once.
_JITTED: dict = {}


def _generator_fn(config):
    """The jitted conditioning + generator pass for a config (compiled once per config)."""
    key = id(config)
    if key not in _JITTED:
        _JITTED.clear()
        _JITTED[key] = (config, jax.jit(functools.partial(_generate, config=config)))
    return _JITTED[key][1]


def _generate(g_params, verts, canon, canvas, canvas_verts, src, src_verts, *, config):
    g_net, _ = steps.make_nets(config)
    cond, face, g = conditioning.condition(
        verts, canon, canvas, canvas_verts, src, src_verts,
        erase_scale=config.model.erase_scale, chunk=config.model.raster_chunk,
    )  # fmt: skip
    out = g_net.apply({"params": g_params}, cond, face)
    r = g["raster"]
    return out, r.tri_id, r.bary, r.depth, face


def still_geometry(landmarks: np.ndarray) -> np.ndarray:
    """Canonical identity shape of one still face (its own frame: expression zero)."""
    _, ident, _ = geometry.decompose(np.asarray(landmarks, np.float32)[None])
    return np.asarray(ident)


def edit_video(
    g_params,
    config,
    frames: np.ndarray,
    landmarks: np.ndarray,
    src_image: np.ndarray,
    src_landmarks: np.ndarray,
    mode: str,
    chunk: int = 8,
) -> dict[str, np.ndarray]:
    """Edits a driving/target video with a source face.

    Args:
      g_params: generator parameters.
      config: the method config (hashable ConfigDict, locked).
      frames: uint8 [T,S,S,3] driving (reenact) or target (swap) frames; landmarks [T,V,3].
      src_image: uint8 [S,S,3] source face; src_landmarks [V,3] its mesh.
      mode: 'swap', 'reenact', or 'self' (source identity = the video's own: reconstruction).

    Returns:
      dict with 'frames' uint8 [T,S,S,3] and the per-frame 'tri_id', 'bary', 'depth', 'verts',
      'face' (face-region masks) of the rendered geometry (for the flicker metric).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    pose, ident, expr = geometry.decompose(np.asarray(landmarks, np.float32))
    src_id = ident if mode == "self" else still_geometry(src_landmarks)
    verts = np.asarray(geometry.recombine(np.asarray(src_id), np.asarray(expr), pose), np.float32)
    f = frames.astype(np.float32) / 127.5 - 1.0
    src = np.broadcast_to(src_image.astype(np.float32) / 127.5 - 1.0, f.shape)
    src_v = np.broadcast_to(src_landmarks.astype(np.float32), landmarks.shape)
    canvas, canvas_v = (src, src_v) if mode == "reenact" else (f, landmarks.astype(np.float32))
    canon = np.broadcast_to(np.asarray(src_id, np.float32), verts.shape)
    out, tri, bary, depth, face = batching.map_batches(
        functools.partial(_generator_fn(config), g_params),
        verts, canon, canvas, canvas_v, src, src_v,
        batch_size=chunk,
    )  # fmt: skip
    return {
        "frames": viz.to_uint8(out, (-1.0, 1.0)),
        "tri_id": tri,
        "bary": bary,
        "depth": depth,
        "verts": verts,
        "face": face,
    }


def write_mp4(path: str, frames: np.ndarray, fps: float = 15.0, scale: int = 2) -> str:
    """Writes uint8 [T,H,W,3] frames as an H.264 (or MPEG-4) MP4 with PyAV."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_mp4 expects uint8 [T,H,W,3], got {frames.shape} {frames.dtype}.")
    if scale > 1:
        frames = frames.repeat(scale, 1).repeat(scale, 2)
    h, w = frames.shape[1:3]
    frames = frames[:, : h - h % 2, : w - w % 2]  # codecs need even sizes
    return viz.write_mp4(path, frames, fps)


def comparison_strip(path: str, rows: list[np.ndarray], every: int, scale: int = 2) -> str:
    """PNG: one row per video (uint8 [T,S,S,3]), every ``every``-th frame left to right."""
    t = min(len(r) for r in rows)
    idx = np.arange(0, t, max(1, every))
    tiles = np.concatenate([np.asarray(r)[idx] for r in rows])
    return viz.save_image_grid(path, tiles, nrow=len(idx), scale=scale)
