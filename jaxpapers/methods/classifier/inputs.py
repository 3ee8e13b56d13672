"""The classifier's batch: uint8 images and integer labels (augmentation runs on device)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    b = config.batch_size
    return {
        "image": jax.ShapeDtypeStruct((b, *config.data.image_shape), jnp.uint8),
        "label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }
