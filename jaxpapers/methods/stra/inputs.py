"""StRA's batches: uint8 images + labels; re-ID folders (Market-1501, AT&T faces) read on the host.

Images are normalised on device (``normalise``, ImageNet statistics for RGB re-ID), after the
uint8 batch has been transferred.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from jaxpapers import data
from jaxpapers.data import faces, stream
from jaxpapers.lib import augment
from jaxpapers.methods.stra import reid

REID_DATA = ("market1501", "att_faces")


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    b = config.batch_size
    return {
        "image": jax.ShapeDtypeStruct((b, *config.data.image_shape), jnp.uint8),
        "label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }


def make_source(config, split: str):
    """Training arrays: re-ID folders read here, everything else through ``data.load``; with
    data.pipeline='stream' (training split) a source decoded in grain workers instead."""
    name, shape = config.data.name, tuple(config.data.image_shape)
    if split == "train" and stream.streaming(config.data):
        if name == "market1501":
            items = reid.market1501_items(config.data.path, split)
            root = os.path.dirname(items[0][0])
            return stream.FileImageSource(
                root,
                [os.path.basename(p) for p, _, _ in items],
                reid.train_labels([pid for _, pid, _ in items]),
                image_size=shape[:2],
                channels=shape[2],
            )
        return stream.open_stream_source(
            config.data, split, image_size=shape[:2], channels=shape[2]
        )
    if name == "market1501":
        src = reid.read_market1501(config.data.path, split, shape[:2])
    elif name == "att_faces":
        src = reid.read_att_faces(
            faces.resolve_dir(config.data.path), split, shape[:2], config.data.num_train_ids
        )
    else:
        return data.load(config.data, split)
    return {"image": src["image"], "label": src["label"]} if split == "train" else src


def normalise(images: jax.Array, config) -> jax.Array:
    """uint8 -> float, (x - mean) / std per channel (ImageNet statistics for RGB re-ID)."""
    x = augment.to_float(images)
    mean, std = jnp.asarray(config.data.mean), jnp.asarray(config.data.std)
    return (x - mean) / std
