"""TRACE inputs: the batch spec and the key-frame source (synthetic benchmark or files).

A batch is a set of key frames: ground-truth boxes/labels (up to ``n_max``), the multi-label
relation tensor ``rels`` [n, n, predicates], and either the clip frames (the backbones run in
the model) or precomputed backbone maps and detector box features (``formats.load_precomputed``).
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

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


def make_source(config, split: str) -> dict[str, np.ndarray]:
    """Synthetic key frames (default) or key-frame files (paper presets, formats.py)."""
    m, d = config.model, config.data
    if d.name == "precomputed" or m.backbone == "precomputed":
        return formats.load_precomputed(
            d.path,
            split,
            m.n_max,
            frames=m.backbone == "resnet",
            frame_shape=tuple(d.get("frame_shape", (0, 0))),
        )
    return _synthetic(d.to_json(), split, m.backbone, m.feat_dim)
