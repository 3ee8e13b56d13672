"""FaceAnime: Image-to-Video Generation via 3D Facial Dynamics (Tu et al., TCSVT 2022).

Method contract (ARCHITECTURE.md §3).  See README.md in this folder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.lib.face3d import topology
from jaxpapers.methods.faceanime.clips import make_source  # noqa: F401
from jaxpapers.methods.faceanime.evaluate import evaluate  # noqa: F401
from jaxpapers.methods.faceanime.steps import init_state, train_step  # noqa: F401

kind = "train"


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
