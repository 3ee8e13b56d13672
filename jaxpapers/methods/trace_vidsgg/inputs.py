"""TRACE inputs: the batch spec and the key-frame source (synthetic benchmark or files).

A batch is a set of key frames: ground-truth boxes/labels (up to ``n_max``), the multi-label
relation tensor ``rels`` [n, n, predicates], and either the clip frames (the backbones run in
the model) or precomputed backbone maps and detector box features (``formats.load_precomputed``).

Action Genome preset: ``data.name='action_genome'`` reads AG's own layout (annotation pickles
and the frame folders, `action_genome_source`); its annotations are small and stay in memory,
the 17-frame clips at 800x1333 (~54 MB a key frame) are decoded per step in grain's workers
(``data.pipeline='stream'``, ``data.max_pixels`` checked before decoding, paths confined to
``frames/``).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpapers import data, safe_io
from jaxpapers.data import decode, stream
from jaxpapers.methods.trace_vidsgg import backbones, formats, synthetic


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    b, m, d = config.batch_size, config.model, config.data
    if m.backbone != "precomputed" and (d.n_max != m.n_max or d.clip_len != m.clip_len):
        raise ValueError(
            f"data.n_max/clip_len ({d.n_max}, {d.clip_len}) must equal model.n_max/clip_len "
            f"({m.n_max}, {m.clip_len}) for the synthetic benchmark."
        )
    n, p = m.n_max, m.num_predicates
    spec = {
        "boxes": jax.ShapeDtypeStruct((b, n, 4), jnp.float32),
        "labels": jax.ShapeDtypeStruct((b, n), jnp.int32),
        "num_boxes": jax.ShapeDtypeStruct((b,), jnp.int32),
        "rels": jax.ShapeDtypeStruct((b, n, n, p), jnp.uint8),
    }
    if m.backbone in ("precomputed", "resnet"):  # the frozen detector's box features
        spec["obj_feat"] = jax.ShapeDtypeStruct((b, n, m.feat_dim), jnp.float32)
    if m.backbone == "precomputed":
        t = max(1, backbones.i3d_output_frames(m.clip_len))  # I3D slices of a clip_len clip
        spec["feat2d"] = jax.ShapeDtypeStruct((b, *d.feat2d_shape), jnp.float32)
        spec["feat3d"] = jax.ShapeDtypeStruct((b, t, *d.feat3d_shape), jnp.float32)
    else:
        hw = tuple(d.frame_shape) if d.get("frame_shape", (0, 0))[0] else (d.image_size,) * 2
        spec["frames"] = jax.ShapeDtypeStruct((b, m.clip_len, *hw, 3), jnp.uint8)
    return spec


# The synthetic key frames are a pure function of the data config (rendering, no file read);
# evaluation asks for the test split at every evaluation, so the rendered arrays are kept.
@functools.lru_cache(maxsize=4)
def _synthetic(data_cfg_json: str, split: str, backbone: str, feat_dim: int) -> dict:
    src = synthetic.make_frames(ml_collections.ConfigDict(json.loads(data_cfg_json)), split)
    if backbone == "resnet":
        # The synthetic benchmark has no detector: zero box features (pipeline tests only).
        src["obj_feat"] = np.zeros(src["boxes"].shape[:2] + (feat_dim,), np.float32)
    return src


AG_FILES = (
    "person_bbox.pkl",
    "object_bbox_and_relationship.pkl",
    "object_classes.txt",
    "relationship_classes.txt",
)


def action_genome_source(config, split: str) -> stream.ClipBoxSource:
    """Action Genome key frames as a `stream.ClipBoxSource` (nothing decoded yet).

    ``data.path`` holds AG's ``annotations/`` (the four files of ``AG_FILES``, read by
    ``formats.read_action_genome``: person = subject) and ``frames/<video>.mp4/<frame>.png`` (AG's
    frame dump). Key frames are sorted by their name ('<video>.mp4/<frame>.png'); the clip of
    one is ``model.clip_len`` frames ``data.stride`` apart in the sorted frames of its video
    folder, centred on it (clamped at the ends), resized like the key frame (shorter side
    ``data.frame_shape[0]``, longer at most ``data.frame_shape[1]``) onto that canvas; boxes
    scaled alike. With ``model.backbone='resnet'`` the detector box features are
    ``obj_feat/<split>.npy``: float32 (key frames, model.n_max, model.feat_dim), rows in the same
    order, memory-mapped.
    """
    m, d = config.model, config.data
    root = d.path
    ann = os.path.join(root, "annotations")
    missing = [f for f in AG_FILES if not os.path.isfile(os.path.join(ann, f))]
    if not root or missing:
        raise FileNotFoundError(
            f"Action Genome folder {root!r} lacks annotations/{(missing or AG_FILES)[0]}; set "
            "--config.data.path to the folder holding annotations/ and frames/."
        )
    frames = formats.read_action_genome(*(os.path.join(ann, f) for f in AG_FILES), split=split)
    frames = sorted(frames, key=lambda f: f["key"])
    if not frames:
        raise ValueError(f"{ann}: no {split!r} key frame with a person box and a relation.")
    frame_root = os.path.join(root, "frames")
    videos: dict[str, int] = {}
    listed: list[np.ndarray] = []
    video, key = [], []
    for f in frames:
        folder, _, name = f["key"].rpartition("/")
        if folder not in videos:
            path = safe_io.confined_join(frame_root, folder, what="Action Genome video folder")
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"Frame folder {path!r} of key frame {f['key']!r} is missing."
                )
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(stream.IMAGE_SUFFIXES))
            videos[folder] = len(listed)
            listed.append(np.asarray(names, str))
        v = videos[folder]
        pos = np.searchsorted(listed[v], name)
        if pos == len(listed[v]) or listed[v][pos] != name:
            raise FileNotFoundError(f"Key frame file {f['key']!r} is missing under {frame_root!r}.")
        video.append(v)
        key.append(int(pos))
    folders = sorted(videos, key=videos.get)
    files = np.concatenate(
        [[f"{fo}/{n}" for n in names] for fo, names in zip(folders, listed, strict=True)]
    )
    length = np.asarray([len(n) for n in listed], np.int64)
    npy = {}
    if "obj_feat" in input_spec(config):
        npy["obj_feat"] = os.path.join(root, "obj_feat", f"{split}.npy")
        if not os.path.isfile(npy["obj_feat"]):
            raise FileNotFoundError(
                f"{npy['obj_feat']!r} not found: model.backbone={m.backbone!r} needs the detector "
                f"box features, float32 (key frames, {m.n_max}, {m.feat_dim}) in key-frame order."
            )
        feat = np.load(npy["obj_feat"], mmap_mode="r")
        if feat.dtype != np.float32 or feat.shape[1:] != (m.n_max, m.feat_dim):
            raise ValueError(
                f"{npy['obj_feat']} is {feat.dtype} {feat.shape}, expected float32 "
                f"(key frames, {m.n_max}, {m.feat_dim})."
            )
    canvas = tuple(int(x) for x in d.frame_shape)
    half = (int(m.clip_len) - 1) // 2
    src = stream.ClipBoxSource(
        frame_root,
        files,
        np.concatenate([[0], np.cumsum(length)[:-1]]),
        length,
        video,
        key,
        (np.arange(int(m.clip_len)) - half) * int(d.stride),
        [f["boxes"] for f in frames],
        [f["labels"] for f in frames],
        [f["rels"] for f in frames],
        n_max=m.n_max,
        num_predicates=m.num_predicates,
        canvas=canvas,
        short=min(canvas),
        max_long=max(canvas),
        max_pixels=int(d.get("max_pixels", decode.MAX_PIXELS)),
        npy=npy,
    )
    limit = int(d.get(f"{split}_limit", 0) or 0)
    return stream.Subset(src, limit) if limit else src


def make_source(config, split: str):
    """Synthetic key frames (default), key-frame files (formats.py) or Action Genome frames.

    ``data.name='action_genome'``: `action_genome_source`; with data.pipeline='stream' the
    training split is that source itself (frames decoded in grain's workers; the annotations
    'labels', 'num_boxes', 'rels' readable by key), otherwise the split read into arrays.
    """
    m, d = config.model, config.data
    if d.name == "precomputed" or m.backbone == "precomputed":
        return formats.load_precomputed(
            d.path,
            split,
            m.n_max,
            frames=m.backbone == "resnet",
            frame_shape=tuple(d.get("frame_shape", (0, 0))),
        )
    if d.name == "action_genome":
        if m.backbone != "resnet" or not d.frame_shape[0]:
            raise ValueError(
                "data.name='action_genome' streams the frames for model.backbone='resnet' onto "
                f"data.frame_shape; got backbone {m.backbone!r}, "
                f"frame_shape {tuple(d.frame_shape)}."
            )
        src = action_genome_source(config, split)
        if split == "train" and stream.streaming(d):
            return src
        return data.read_source(src)
    return _synthetic(d.to_json(), split, m.backbone, m.feat_dim)
