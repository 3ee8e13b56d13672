"""FROM: End2End Occluded Face Recognition by Masking Corrupted Features (Qiu et al., TPAMI 2021).

Method contract (ARCHITECTURE.md §3).  See README.md in this folder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.methods.from_occlusion.evaluate import evaluate  # noqa: F401
from jaxpapers.methods.from_occlusion.faces import make_source  # noqa: F401
from jaxpapers.methods.from_occlusion.steps import init_state, load_init, train_step  # noqa: F401

kind = "train"


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch: uint8 RGB faces (N, H, W, 3) and identity labels (N,)."""
    h, w = config.data.image_size
    return {
        "image": jax.ShapeDtypeStruct((config.batch_size, h, w, 3), jnp.uint8),
        "label": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32),
    }
