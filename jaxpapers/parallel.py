"""Meshes, shardings and multi-host start-up (the single owner of device layout).

Data parallelism is ``jax.jit`` over a mesh with a ``data`` axis: batches are sharded
``P('data')`` and the state is replicated ``P()``. This is what ``pmap`` used to express.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

_DISTRIBUTED_STARTED = False


def maybe_initialize_distributed() -> None:
    """Calls ``jax.distributed.initialize`` when ``JAXPAPERS_DISTRIBUTED=1`` is set.

    On TPU pods and SLURM/GPU clusters JAX discovers the coordinator itself; for explicit set-ups
    (and the loopback test) set ``JAXPAPERS_COORDINATOR``, ``JAXPAPERS_NUM_PROCESSES`` and
    ``JAXPAPERS_PROCESS_ID``.
    """
    global _DISTRIBUTED_STARTED
    if _DISTRIBUTED_STARTED or os.environ.get("JAXPAPERS_DISTRIBUTED", "0") != "1":
        return
    kwargs = {}
    if "JAXPAPERS_COORDINATOR" in os.environ:
        kwargs = dict(
            coordinator_address=os.environ["JAXPAPERS_COORDINATOR"],
            num_processes=int(os.environ["JAXPAPERS_NUM_PROCESSES"]),
            process_id=int(os.environ["JAXPAPERS_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)
    _DISTRIBUTED_STARTED = True


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``data`` mesh over all devices of all processes (GSPMD 'Auto' axis)."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"batch_size {global_batch} is not divisible by the {n} devices of the mesh; "
            f"use a multiple of {n} (--config.batch_size=...)."
        )


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's part of a batch as global arrays sharded over ``data``."""
    sharding = data_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }


def replicate(tree, mesh: Mesh):
    """Places a (host) pytree replicated on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
