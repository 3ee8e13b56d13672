"""On-device image augmentation, jitted inside train steps (no host work per example)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.astype(jnp.float32) / 255.0


def random_crop(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """Zero-pads by ``pad`` and takes a random crop of the original size per image."""
    if pad <= 0:
        return images
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Horizontal flip with probability 1/2 per image."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def crop_flip(key: jax.Array, images: jax.Array, pad: int, flip: bool) -> jax.Array:
    k1, k2 = jax.random.split(key)
    images = random_crop(k1, images, pad)
    return random_flip(k2, images) if flip else images
