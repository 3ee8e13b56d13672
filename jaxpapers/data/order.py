"""The example order of every input pipeline: a pure function of ``(seed, step)``.

The batch of step ``s`` is the ``s % steps_per_epoch``-th slice of the permutation of epoch
``s // steps_per_epoch`` (``numpy.random.default_rng([seed, epoch])``); each of the
``process_count`` processes reads a contiguous part of it. A resumed run therefore continues the
order exactly where it stopped, with no iterator state to save, whatever reads the examples (the
in-memory `Loader` or the grain stream, any number of workers). NumPy only, so grain's worker
processes import it cheaply.
"""

from __future__ import annotations

import numpy as np


def step_indices(n: int, global_batch: int, seed: int, step: int, shuffle: bool = True):
    """The global example indices of ``step`` (before per-process slicing)."""
    steps_per_epoch = n // global_batch
    if steps_per_epoch < 1:
        raise ValueError(f"The data set has {n} examples, fewer than one batch ({global_batch}).")
    epoch, k = divmod(int(step), steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    return order[k * global_batch : (k + 1) * global_batch]


def process_part(indices: np.ndarray, process_index: int, process_count: int):
    """(this process's example indices, sorted for read locality; their positions in ``indices``).

    Process p reads positions [p * L, (p + 1) * L) with L = len(indices) / process_count, so the
    processes' parts are disjoint and together are the whole batch.
    """
    if len(indices) % process_count or not 0 <= process_index < process_count:
        raise ValueError(
            f"A batch of {len(indices)} cannot be split over process {process_index} of "
            f"{process_count}; use a batch size divisible by the process count."
        )
    local = len(indices) // process_count
    lo = process_index * local
    order = np.argsort(indices[lo : lo + local], kind="stable")
    return indices[lo : lo + local][order], lo + order
