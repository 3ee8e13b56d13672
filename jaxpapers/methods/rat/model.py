"""The classifier RAT trains, as a function of pixels in [0, 1] (Rice et al. normalise inside).

Attacks perturb pixels, so the per-channel normalisation ``(x - mean) / std`` is part of the model
function; the networks themselves are ``jaxpapers.layers.resnet``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.layers import resnet


def normalize(x: jax.Array, config) -> jax.Array:
    mean = jnp.asarray(config.model.mean, jnp.float32)
    std = jnp.asarray(config.model.std, jnp.float32)
    return (x - mean) / std


def apply_model(variables: dict, x: jax.Array, config, train: bool, mutable: bool = False):
    """The classifier on pixels x ∈ [0, 1]; normalisation is part of the model function."""
    model = resnet.build(config.model)
    if mutable:
        return model.apply(variables, normalize(x, config), train=train, mutable=["batch_stats"])
    return model.apply(variables, normalize(x, config), train=train)


def eval_logits(variables: dict, config):
    """Eval-mode logits (BatchNorm running statistics) on [0, 1] pixels."""
    return lambda x: apply_model(variables, x, config, train=False)
