"""SynFace: Face Recognition with Synthetic Data (Qiu et al., ICCV 2021). Method contract.

One job: train the identity-conditioned generator (the suite's DiscoFaceGAN stand-in) on real
identities, then train LResNet-E-IR + ArcFace on its new synthetic identities with identity
mixup and (optionally) domain mixup; evaluate on held-out real identities.  See README.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.methods.synface.evaluate import evaluate  # noqa: F401
from jaxpapers.methods.synface.faces import make_source  # noqa: F401
from jaxpapers.methods.synface.steps import init_state, phase, train_step  # noqa: F401

kind = "train"


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch: synthesis-plan rows + one real face (and its label) per row."""
    b, r, c = config.batch_size, config.gen.resolution, config.gen.img_channels
    return {
        "syn_id_a": jax.ShapeDtypeStruct((b,), jnp.int32),
        "syn_id_b": jax.ShapeDtypeStruct((b,), jnp.int32),
        "syn_phi": jax.ShapeDtypeStruct((b,), jnp.float32),
        "syn_seed": jax.ShapeDtypeStruct((b,), jnp.int32),
        "real_image": jax.ShapeDtypeStruct((b, r, r, c), jnp.uint8),
        "real_label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }


def load_init(state, tree, config):
    """init_from an earlier synface run: its trained generator (gen.steps must be 0)."""
    if int(config.gen.steps) != 0:
        raise ValueError("init_from provides the generator: set --config.gen.steps=0.")
    if not isinstance(tree, dict) or "gen" not in tree:
        raise ValueError("init_from must point at a synface run (no 'gen' in its checkpoint).")
    src = tree["gen"]
    new = {}
    for name in ("g", "d", "g_ema"):
        want = getattr(state.gen, name)
        got = jax.tree.map(jnp.asarray, src[name])
        if jax.tree.structure(got) != jax.tree.structure(want):
            raise ValueError(f"init_from generator {name!r} does not match this config's gen.*.")
        new[name] = jax.tree.map(lambda a, b: jnp.asarray(a, b.dtype).reshape(b.shape), got, want)
    return state.replace(gen=state.gen.replace(**new))
