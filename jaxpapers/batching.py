"""Host-side batched inference: one compiled shape for any number of inputs.

Evaluation loops apply a jitted function to a data set too large for one call. Padding the last
chunk to the batch size (with copies of its last row) keeps a single input shape, so the function
compiles once; the padded rows are dropped from the result.

With a ``mesh`` the loop is data-parallel: each chunk is sharded over the mesh's ``data`` axis
(the devices of every process) and the outputs are gathered, so every process gets the full
result. Every process then passes the same inputs (as evaluation does: each host loads the whole
evaluation set). A chunk is padded further to a multiple of the device count by rows appended
at its END, so every row keeps its position in its chunk: a function that treats rows
independently (inference, the attacks of ``jaxpapers.lib.attacks`` with a key per chunk, whose
random draws do not depend on the batch size under JAX's partitionable threefry) gives the same
numbers on one device and on many, up to the float rounding of the per-device kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxpapers import parallel


def map_batches(
    fn: Callable[..., Any],
    *arrays: np.ndarray,
    batch_size: int,
    mesh: Mesh | None = None,
    with_start: bool = False,
) -> Any:
    """``fn`` applied to aligned chunks of ``arrays`` (same leading size), outputs concatenated.

    ``fn`` takes one chunk of each array and returns an array or a pytree of arrays whose leading
    axis is the chunk's. Returns NumPy outputs of leading size ``len(arrays[0])``.

    Args:
      batch_size: rows per chunk (the compiled shape).
      mesh: run data-parallel over this mesh (see the module docstring): chunks are padded to a
        multiple of its size and reach ``fn`` as global arrays sharded ``P('data')``, so ``fn``
        must be a JAX function (jitted, or built of jnp operations); None: NumPy chunks.
      with_start: call ``fn(start, *chunks)`` with the index of the chunk's first row (a Python
        int), e.g. to fold a random key per chunk.
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
    rows = batch_size if mesh is None else -(-batch_size // mesh.devices.size) * mesh.devices.size

    def fetch(out, keep):
        out = parallel.gather_to_host(out) if mesh is not None else jax.device_get(out)
        return jax.tree.map(lambda x: np.asarray(x)[:keep], out)

    outs, pending = [], None
    for i in range(0, n, batch_size):
        chunks = [np.asarray(a[i : i + batch_size]) for a in arrays]
        keep = len(chunks[0])
        if keep < rows:
            chunks = [np.concatenate([c, np.repeat(c[-1:], rows - keep, 0)]) for c in chunks]
        if mesh is not None:
            chunks = parallel.shard_full_batch(chunks, mesh)
        out = fn(i, *chunks) if with_start else fn(*chunks)
        # Chunk i is dispatched before chunk i-1 is copied back, so the devices compute while
        # the host copies and pads.
        if pending is not None:
            outs.append(fetch(*pending))
        pending = (out, keep)
    outs.append(fetch(*pending))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
