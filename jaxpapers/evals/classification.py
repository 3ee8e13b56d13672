"""Batched, jitted top-1 accuracy of a classifier over a whole split."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import batching


def predict_all(logits_fn: Callable, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Applies a jitted ``logits_fn(images) -> logits`` over ``images`` in fixed-size batches
    (``batching.map_batches``: the last batch is padded so the function compiles once)."""
    return batching.map_batches(lambda x: logits_fn(jnp.asarray(x)), images, batch_size=batch_size)


def accuracy(logits_fn: Callable, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    logits = predict_all(logits_fn, images, batch_size)
    return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def jit_logits(model, variables) -> Callable:
    """``images uint8 or float -> logits`` in eval mode, jitted once."""

    @jax.jit
    def fn(images):
        x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
        return model.apply(variables, x, train=False)

    return fn
