"""UniFaceGAN (Cao et al., IEEE TIP 2021, arXiv 2108.05650): method contract.

One generator for face swapping and reenactment, conditioned on the rendered 3D geometry of the
recombined face (source identity + target/driving expression and pose, from the suite's
FaceMesh-based 3D face core), with region-aware conditional normalization, a multi-scale patch
discriminator, dynamic training-sample selection and the barycentric 3D temporal loss.
See README.md, ``steps.py`` and ``losses.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.lib.face3d import topology
from jaxpapers.methods.unifacegan.data import make_source
from jaxpapers.methods.unifacegan.evaluate import evaluate
from jaxpapers.methods.unifacegan.steps import init_state, train_step

kind = "train"
__all__ = ["kind", "input_spec", "init_state", "train_step", "make_source", "evaluate"]


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
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
