"""The classifier RAT trains, as a function of pixels in [0, 1] (Rice et al. normalise inside).

Attacks perturb pixels, so the per-channel normalisation ``(x - mean) / std`` is part of the model
function; the networks themselves are ``jaxpapers.layers.resnet``. ``dtype`` is the compute
dtype of the ``layers.precision`` policy: the train step (its PGD included) passes
``model.dtype``; evaluation and ``logits_fn`` keep the float32 default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.layers import precision, resnet


def normalize(x: jax.Array, config) -> jax.Array:
    mean = jnp.asarray(config.model.mean, jnp.float32)
    std = jnp.asarray(config.model.std, jnp.float32)
    return (x - mean) / std


def apply_model(
    variables: dict,
    x: jax.Array,
    config,
    train: bool,
    mutable: bool = False,
    dtype=jnp.float32,
):
    """The classifier on pixels x ∈ [0, 1]; normalisation is part of the model function.
    Logits are float32 whatever ``dtype`` computes the network."""
    model = resnet.build(config.model)
    kw = dict(dtype=dtype, keep=resnet.F32_PARAMS, train=train)
    if mutable:
        return precision.apply(
            model, variables, normalize(x, config), mutable=["batch_stats"], **kw
        )
    return precision.apply(model, variables, normalize(x, config), **kw)


def eval_logits(variables: dict, config, dtype=jnp.float32):
    """Eval-mode logits (BatchNorm running statistics) on [0, 1] pixels."""
    return lambda x: apply_model(variables, x, config, train=False, dtype=dtype)
