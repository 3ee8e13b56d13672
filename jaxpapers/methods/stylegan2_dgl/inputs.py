"""Inputs of the DGL-GAN StyleGAN2 job: the batch spec and the host-side image shaping."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import data
from jaxpapers.data import stream


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    r, c = config.model.resolution, config.model.img_channels
    return {"image": jax.ShapeDtypeStruct((config.batch_size, r, r, c), jnp.uint8)}


def fit_resolution(images: np.ndarray, pad_to: int, resolution: int, channels: int) -> np.ndarray:
    """Zero-pads (e.g. Fashion-MNIST 28 -> 32) and area-downsamples to the model resolution."""
    if images.ndim != 4:
        raise ValueError(f"Expected uint8 NHWC images, got shape {images.shape}.")
    if pad_to:
        h, w = images.shape[1:3]
        if h > pad_to or w > pad_to:
            raise ValueError(f"data.pad_to={pad_to} is smaller than the images ({h}x{w}).")
        ph, pw = pad_to - h, pad_to - w
        images = np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    n, h, w, ch = images.shape
    if h != w or h % resolution:
        raise ValueError(
            f"Images {h}x{w} cannot be brought to resolution {resolution}; set "
            "data.pad_to / data.image_size so the size is a multiple of it."
        )
    if ch != channels:
        raise ValueError(f"Images have {ch} channels but model.img_channels={channels}.")
    f = h // resolution
    if f > 1:
        x = images.reshape(n, resolution, f, resolution, f, ch).astype(np.float32).mean((2, 4))
        images = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return images


def make_source(config, split: str):
    """Images only (unconditional GAN), padded/resized on the host once; with
    data.pipeline='stream' a source decoded at the model resolution in grain workers."""
    m = config.model
    if stream.streaming(config.data):
        size = (m.resolution, m.resolution)
        return stream.open_stream_source(
            config.data, split, image_size=size, channels=m.img_channels, labels=False
        )
    arrays = data.load(config.data, split)
    return {
        "image": fit_resolution(
            arrays["image"], int(config.data.pad_to), m.resolution, m.img_channels
        )
    }
