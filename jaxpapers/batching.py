"""Host-side batched inference: one compiled shape for any number of inputs.

Evaluation loops apply a jitted function to a data set too large for one call. Padding the last
chunk to the batch size (with copies of its last row) keeps a single input shape, so the function
compiles once; the padded rows are dropped from the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def map_batches(fn: Callable[..., Any], *arrays: np.ndarray, batch_size: int) -> Any:
    """``fn`` applied to aligned chunks of ``arrays`` (same leading size), outputs concatenated.

    ``fn`` takes one chunk of each array and returns an array or a pytree of arrays whose leading
    axis is the chunk's. Returns NumPy outputs of leading size ``len(arrays[0])``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if not arrays:
        raise ValueError("map_batches needs at least one input array.")
    n = len(arrays[0])
    for a in arrays[1:]:
        if len(a) != n:
            raise ValueError(f"Inputs have different lengths: {[len(a) for a in arrays]}.")
    if n == 0:
        raise ValueError("map_batches got empty inputs.")
    outs = []
    for i in range(0, n, batch_size):
        chunks = [np.asarray(a[i : i + batch_size]) for a in arrays]
        pad = batch_size - len(chunks[0])
        if pad:
            chunks = [np.concatenate([c, np.repeat(c[-1:], pad, 0)]) for c in chunks]
        out = jax.device_get(fn(*chunks))
        outs.append(jax.tree.map(lambda x, keep=batch_size - pad: np.asarray(x)[:keep], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
