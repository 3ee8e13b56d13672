"""FaceAnime inputs: tracked face clips -> (source, target) frame pairs + 3DDP windows.

Official data (pingponglabs/FaceAnime README.md): IJB-C video folders cropped with 2DASL,
per-frame dense BFM vertices; random (src, dst) frame pairs of one video train the generator.
Ours: the clips named in config.data.videos are tracked with FaceMesh and face-cropped once by
`data/face_video.py` (cached array_record); the last `holdout` frames of every clip are held out
for evaluation. Each training example is a pre-drawn random pair (src, dst) of the same clip plus
the 3DDP window of `window` frames that starts at src (relative pose/expression parameters, see
dynamics.py), so one batch feeds all three networks.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.data import face_video
from jaxpapers.lib.face3d import topology
from jaxpapers.methods.faceanime import dynamics


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch: source/target face crops, their 468 tracked vertices, a 3DDP window."""
    b, s = config.batch_size, int(config.data.image_size)
    v = topology.NUM_VERTICES
    p = 7 + int(config.model.expr_k)
    return {
        "src_image": jax.ShapeDtypeStruct((b, s, s, 3), jnp.uint8),
        "dst_image": jax.ShapeDtypeStruct((b, s, s, 3), jnp.uint8),
        "src_lm": jax.ShapeDtypeStruct((b, v, 3), jnp.float32),
        "dst_lm": jax.ShapeDtypeStruct((b, v, 3), jnp.float32),
        "seq": jax.ShapeDtypeStruct((b, int(config.data.window), p), jnp.float32),
    }


@dataclasses.dataclass(frozen=True)
class Clips:
    """Tracked clips with found frames only: frames [T,S,S,3] uint8, landmarks [T,468,3]."""

    frames: tuple[np.ndarray, ...]
    landmarks: tuple[np.ndarray, ...]
    holdout: int

    def split(self, i: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        f, lm = self.frames[i], self.landmarks[i]
        cut = len(f) - self.holdout
        return (f[:cut], lm[:cut]) if split == "train" else (f[cut:], lm[cut:])


def load_clips(config) -> Clips:
    """The config's tracked, cropped clips (tracked once, cached on disk by data/face_video.py)."""
    d = config.data
    videos, holdout = tuple(d.videos), int(d.holdout)
    vids = face_video.load_face_videos(
        [face_video.resolve_video(v) for v in videos],
        int(d.image_size),
        str(d.cache_dir) or None,
        margin=float(d.margin),
        max_frames=int(d.max_frames) or None,
    )
    frames, lms = [], []
    for path, v in zip(videos, vids, strict=True):
        keep = v.found & np.all(np.isfinite(v.landmarks), axis=(1, 2))
        if keep.sum() < holdout + 4:
            raise ValueError(
                f"Clip {path!r}: only {int(keep.sum())} frames with a tracked face; "
                f"need > holdout + 4 = {holdout + 4}."
            )
        frames.append(v.frames[keep])
        lms.append(v.landmarks[keep].astype(np.float32))
    return Clips(tuple(frames), tuple(lms), holdout)


def fit_geometry(config, clips: Clips) -> dynamics.Geometry:
    """Reference shape, expression PCA and parameter scales fitted on the training frames."""
    train_lm = np.concatenate([clips.split(i, "train")[1] for i in range(len(clips.frames))])
    return dynamics.fit_geometry(
        train_lm, int(config.data.image_size), int(config.model.expr_k), int(config.data.window)
    )


def windows(
    landmarks: np.ndarray, starts: np.ndarray, window: int, geom: dynamics.Geometry
) -> np.ndarray:
    """Normalised relative parameters [N, window, P] of the windows starting at `starts`."""
    return np.stack(
        [np.asarray(dynamics.sequence_params(landmarks[s : s + window], geom)) for s in starts]
    ).astype(np.float32)


def make_source(config, split: str) -> dict[str, np.ndarray]:
    """Pre-drawn training examples (module docstring); keys match `input_spec`."""
    clips = load_clips(config)
    geom = fit_geometry(config, clips)
    window, n = int(config.data.window), int(config.data.num_pairs)
    rng = np.random.default_rng(int(config.data.pairs_seed) + (0 if split == "train" else 1))
    per_clip = np.array_split(np.arange(n), len(clips.frames))
    out: dict[str, list] = {k: [] for k in ("src_image", "dst_image", "src_lm", "dst_lm", "seq")}
    for i, idx in enumerate(per_clip):
        frames, lm = clips.split(i, split)
        if len(frames) < window:
            raise ValueError(f"Clip {i} {split} part has {len(frames)} frames < window {window}.")
        starts = rng.integers(0, len(frames) - window + 1, len(idx))
        src = starts  # the 3DDP window starts at the source frame (p_0 = the still)
        dst = rng.integers(0, len(frames), len(idx))
        out["src_image"].append(frames[src])
        out["dst_image"].append(frames[dst])
        out["src_lm"].append(lm[src])
        out["dst_lm"].append(lm[dst])
        cache = {s: windows(lm, np.array([s]), window, geom)[0] for s in np.unique(starts)}
        out["seq"].append(np.stack([cache[s] for s in starts]))
    return {k: np.concatenate(v) for k, v in out.items()}
