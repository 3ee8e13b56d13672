"""Inputs of the DGL-GAN BigGAN job: the batch spec and the host-side padding of images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import data
from jaxpapers.data import stream


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    r, c, n = config.model.resolution, config.model.img_channels, config.batch_size
    return {
        "image": jax.ShapeDtypeStruct((n, r, r, c), jnp.uint8),
        "label": jax.ShapeDtypeStruct((n,), jnp.int32),
    }


def pad_images(images: np.ndarray, pad_to: int) -> np.ndarray:
    """Zero-pads centred (Fashion-MNIST 28 -> 32, black background as in the data)."""
    if not pad_to:
        return images
    h, w = images.shape[1:3]
    if h > pad_to or w > pad_to:
        raise ValueError(f"data.pad_to={pad_to} is smaller than the images ({h}x{w}).")
    ph, pw = pad_to - h, pad_to - w
    return np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def make_source(config, split: str):
    """Images and class labels (class-conditional GAN), padded on the host once; with
    data.pipeline='stream' a source decoded at the model resolution in grain workers."""
    m = config.model
    if stream.streaming(config.data):
        size, c = (m.resolution, m.resolution), m.img_channels
        src = stream.open_stream_source(config.data, split, image_size=size, channels=c)
        if src.num_classes > m.num_classes:
            raise ValueError(f"{src.num_classes} classes > model.num_classes={m.num_classes}.")
        return src
    arrays = data.load(config.data, split)
    if "label" not in arrays:
        raise ValueError(
            f"Dataset {config.data.name!r} has no 'label' array; BigGAN is "
            "class-conditional and needs labels."
        )
    images = pad_images(arrays["image"], int(config.data.pad_to))
    if images.shape[1:] != (m.resolution, m.resolution, m.img_channels):
        raise ValueError(
            f"Images {images.shape[1:]} do not match the model "
            f"({m.resolution}, {m.resolution}, {m.img_channels}); set data.pad_to "
            "or model.resolution / model.img_channels."
        )
    labels = arrays["label"].astype(np.int32)
    if labels.max() >= m.num_classes:
        raise ValueError(f"Label {labels.max()} >= model.num_classes={m.num_classes}.")
    limit = int(config.data.train_limit)
    if limit and split == "train":
        images, labels = images[:limit], labels[:limit]
    return {"image": images, "label": labels}
