"""Inputs: the batch spec and the host-side source (face videos + still faces -> records).

Every record is one target frame with what the jitted step needs to form self-reconstruction
and cross-identity pairs on device (``steps.select_pairs``):

* ``image``/``image_next`` uint8 [S,S,3]: frame t and t+1 (stills: the image twice);
* ``verts``/``verts_next`` [V,3]: their tracked meshes in pixels;
* ``ref_image``/``ref_verts``: another frame of the same identity (the self-pair source);
* ``identity`` [V,3]: the group's neutral canonical shape; ``expr``/``expr_next`` [V,3];
  ``pose_{s,R,t}`` and ``pose_{s,R,t}_next`` (``geometry.decompose`` per group);
* ``group`` int32 (identity id), ``has_next`` float32 (1 for video frames with a next frame).

Paper preset (``data.pipeline='stream'``): the frames of FaceForensics++ / VoxCeleb clips at
256x256 do not fit in memory. Each video is tracked and cropped once into its array_record
cache (``data/face_video.py``, as the in-memory path); `stream_source` keeps only the meshes
and the per-record geometry in memory and reads frame t, t+1 and the reference frame of a record
from the caches in grain's workers: the same records, draws and batches as the in-memory path.

Groups: each video is one group (split in time: the last ``data.test_frames`` frames are the
test split); still faces are grouped by their identity label (ORL: 10 images per person; the
astronaut and each LFW crop alone). Video frames are repeated ``data.video_repeat`` times so the
few video frames are not drowned by the still faces.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.data import faces, stream
from jaxpapers.lib.face3d import geometry, topology
from jaxpapers.methods.unifacegan import synthetic

KEYS = (
    "image", "image_next", "ref_image", "verts", "verts_next", "ref_verts", "identity", "expr",
    "expr_next", "pose_s", "pose_R", "pose_t", "pose_s_next", "pose_R_next", "pose_t_next",
    "group", "has_next",
)  # fmt: skip


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch of the records above."""
    b, s, v = config.batch_size, config.data.size, topology.NUM_VERTICES
    u8, f32 = jnp.uint8, jnp.float32
    spec = {k: ((b, s, s, 3), u8) for k in ("image", "image_next", "ref_image")}
    for k in ("verts", "verts_next", "ref_verts", "identity", "expr", "expr_next"):
        spec[k] = ((b, v, 3), f32)
    for sfx in ("", "_next"):
        spec["pose_s" + sfx] = ((b,), f32)
        spec["pose_R" + sfx] = ((b, 3, 3), f32)
        spec["pose_t" + sfx] = ((b, 3), f32)
    spec["group"] = ((b,), jnp.int32)
    spec["has_next"] = ((b,), f32)
    return {k: jax.ShapeDtypeStruct(shape, dt) for k, (shape, dt) in spec.items()}


IMAGE_KEYS = ("image", "image_next", "ref_image")


def group_plan(
    landmarks: np.ndarray, group: int, is_video: bool, rs: np.random.Generator
) -> dict[str, np.ndarray]:
    """Records of one identity group (a video in time order, or stills of one person) with the
    images as frame positions in the group (``image``, ``image_next``, ``ref_image``)."""
    t = len(landmarks)
    if t == 0:
        return {}
    pose, ident, expr = geometry.decompose(landmarks.astype(np.float32))
    idx = np.arange(t)
    nxt = np.minimum(idx + 1, t - 1) if is_video else idx
    has_next = ((nxt != idx) & is_video).astype(np.float32)
    if t == 1:
        ref = idx
    elif is_video:  # a source frame at least a quarter of the clip away (different pose/expr)
        gap = max(1, t // 4)
        ref = (idx + rs.integers(gap, t - gap + 1, t) if t > 2 * gap else idx + 1) % t
    else:
        ref = (idx + rs.integers(1, t, t)) % t
    s, rot, tr = (np.asarray(x, np.float32) for x in (pose.s, pose.R, pose.t))
    return {
        "image": idx,
        "image_next": nxt,
        "ref_image": ref,
        "verts": landmarks,
        "verts_next": landmarks[nxt],
        "ref_verts": landmarks[ref],
        "identity": np.broadcast_to(np.asarray(ident), landmarks.shape).copy(),
        "expr": np.asarray(expr),
        "expr_next": np.asarray(expr)[nxt],
        "pose_s": s,
        "pose_R": rot,
        "pose_t": tr,
        "pose_s_next": s[nxt],
        "pose_R_next": rot[nxt],
        "pose_t_next": tr[nxt],
        "group": np.full((t,), group, np.int32),
        "has_next": has_next,
    }


def group_records(
    frames: np.ndarray, landmarks: np.ndarray, group: int, is_video: bool, rs: np.random.Generator
) -> dict[str, np.ndarray]:
    """Records of one identity group (a video in time order, or stills of one person)."""
    if len(frames) == 0:
        return {}
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    rec = group_plan(landmarks, group, is_video, rs)
    return {**rec, **{k: frames[rec[k]] for k in IMAGE_KEYS}}


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError("No face records: no video frame or still face was tracked.")
    out = {k: np.concatenate([p[k] for p in parts]) for k in KEYS}
    for k in KEYS:
        if out[k].dtype == np.float64:
            out[k] = out[k].astype(np.float32)
    return out


def concat_records(parts: list[dict]) -> dict[str, np.ndarray]:
    out = _concat(parts)
    for k in IMAGE_KEYS:
        out[k] = out[k].astype(np.uint8)
    return out


def split_video(frames, landmarks, found, split: str, test_frames: int):
    """Time split of one video (test = last ``test_frames``), keeping tracked frames only."""
    t = len(frames)
    if test_frames >= t:
        raise ValueError(f"data.test_frames={test_frames} leaves no training frame of {t}.")
    sl = slice(0, t - test_frames) if split == "train" else slice(t - test_frames, t)
    f, lm, ok = frames[sl], landmarks[sl], np.asarray(found[sl], bool)
    # Frames without a face are dropped; neighbours across a gap are still used as t, t+1.
    return f[ok], lm[ok]


def cache_dir(config) -> str:
    d = config.data.cache_dir or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxpapers", "unifacegan"
    )
    os.makedirs(d, exist_ok=True)
    return d


def load_video(config, path: str):
    """(frames, landmarks, found) of one face video, tracked once and cached."""
    from jaxpapers.data import face_video  # host side; needs the tracker packages

    fv = face_video.load_face_video(path, config.data.size, cache_dir(config))
    return fv.frames, fv.landmarks, fv.found


def load_stills(config):
    from jaxpapers.data import face_video

    d = config.data
    return face_video.still_faces(
        d.size, orl_dir=faces.resolve_dir(d.orl_dir, key="data.orl_dir"), include_lfw=d.lfw
    )


def stream_source(config, split: str, rs: np.random.Generator) -> stream.JoinedSource:
    """The records of ``data.source='faces'`` (same rows, same draws as the in-memory path) with
    the geometry in memory and the three images read on demand from the tracked-video caches
    (and the still faces, held in memory)."""
    from jaxpapers.data import face_video  # host side; needs the tracker packages

    d = config.data
    if d.stills:  # before minutes of video tracking
        faces.resolve_dir(d.orl_dir, key="data.orl_dir")
    videos = _video_list(d)
    parts, stores, base = [], [], 0
    for g, path in enumerate(videos):
        frames, (tracked,) = face_video.face_video_source([path], d.size, cache_dir(config))
        rows, lm = split_video(tracked.rows, tracked.landmarks, tracked.found, split, d.test_frames)
        plan = group_plan(lm, g, True, rs)
        for k in IMAGE_KEYS if plan else ():
            plan[k] = base + rows[plan[k]]
        parts.extend([plan] * (d.video_repeat if split == "train" else 1))
        stores.append(frames)
        base += len(frames)
    if d.stills and split == "train":
        images, lms, ids = load_stills(config)
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, -1)
        for k, gid in enumerate(np.unique(ids)):
            sel = np.flatnonzero(ids == gid)
            plan = group_plan(lms[sel], len(videos) + k, False, rs)
            for key in IMAGE_KEYS if plan else ():
                plan[key] = base + sel[plan[key]]
            parts.append(plan)
        stores.append({"image": images})
    arrays = _concat(parts)
    store = stores[0] if len(stores) == 1 else stream.Concat(stores)
    return stream.JoinedSource(
        {k: v for k, v in arrays.items() if k not in IMAGE_KEYS},
        {k: (store, arrays[k], "image") for k in IMAGE_KEYS},
    )


def _video_list(d) -> list[str]:
    videos = [v for v in d.videos.split(",") if v]
    if not videos:
        raise ValueError(
            "data.videos is empty: give video paths or built-in clip names (carphone)."
        )
    return videos


def make_source(config, split: str):
    """The method's source (see module doc) for ``data.source`` 'synthetic' or 'faces'; with
    data.pipeline='stream' and 'faces' a `stream.JoinedSource` (`stream_source`) whose frames
    are read from the tracked-video caches in grain's workers."""
    d = config.data
    rs = np.random.default_rng(config.seed + (0 if split == "train" else 1))
    parts = []
    if d.source == "synthetic":
        videos = synthetic.make_videos(d.synthetic_ids, d.synthetic_frames, d.size, seed=d.seed)
        for g, (frames, lm) in enumerate(videos):
            f, l_ = split_video(frames, lm, np.ones(len(frames), bool), split, d.test_frames)
            parts.append(group_records(f, l_, g, True, rs))
        return concat_records(parts)
    if d.source != "faces":
        raise ValueError(f"data.source must be 'faces' or 'synthetic', got {d.source!r}.")
    if stream.streaming(d):
        return stream_source(config, split, rs)
    if d.stills:  # before minutes of video tracking
        faces.resolve_dir(d.orl_dir, key="data.orl_dir")
    videos = _video_list(d)
    for g, path in enumerate(videos):
        frames, lm, found = load_video(config, path)
        f, l_ = split_video(frames, lm, found, split, d.test_frames)
        rec = group_records(f, l_, g, True, rs)
        parts.extend([rec] * (d.video_repeat if split == "train" else 1))
    if d.stills and split == "train":
        images, lms, ids = load_stills(config)
        base = len(videos)
        for k, gid in enumerate(np.unique(ids)):
            sel = np.flatnonzero(ids == gid)
            parts.append(group_records(images[sel], lms[sel], base + k, False, rs))
    return concat_records(parts)
