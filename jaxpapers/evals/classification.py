"""Batched, jitted top-1 accuracy of a classifier over a whole split."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def predict_all(logits_fn: Callable, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Applies a jitted ``logits_fn(images) -> logits`` over ``images`` in fixed-size batches.

    The last batch is padded to ``batch_size`` so the function compiles once.
    """
    n = len(images)
    out = []
    for i in range(0, n, batch_size):
        chunk = images[i : i + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        out.append(np.asarray(logits_fn(jnp.asarray(chunk)))[: batch_size - pad])
    return np.concatenate(out)


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
