"""Meshes, shardings and multi-host start-up (the single owner of device layout).

Data parallelism is ``jax.jit`` over a mesh with a ``data`` axis: batches are sharded
``P('data')`` and the state is replicated ``P()``. This is what ``pmap`` used to express.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils
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


def shard_full_batch(tree, mesh: Mesh):
    """Places a batch that EVERY process holds in full as global arrays sharded over ``data``.

    Unlike ``global_batch`` (each process brings its own rows), evaluation loops hand every
    process the whole evaluation set; each process copies only the rows of its own devices.
    Leading sizes must be multiples of the mesh size.
    """
    sharding = data_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % mesh.devices.size:
            raise ValueError(
                f"an array of shape {x.shape} cannot be split over the {mesh.devices.size} "
                "devices of the mesh; pad its leading axis to a multiple of the device count."
            )
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def replicate_full(tree, mesh: Mesh):
    """Places a host value that EVERY process holds as global arrays replicated on the mesh.

    ``replicate`` (``device_put``) refuses a mesh with other hosts' devices; here each process
    copies the value to its own devices. Typed PRNG keys are placed as their key data.
    """

    def put(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, replicated(mesh), lambda index: x[index])

    return jax.tree.map(put, tree)


def gather_to_host(tree):
    """NumPy copies of the full values of (possibly multi-host) global arrays, on every process.

    A sharded result of a data-parallel evaluation lives partly on other hosts' devices;
    ``process_allgather`` collects it. Arrays this process holds in full (every array on one
    host) are a plain device-to-host copy: all-gathering them would stack the hosts' copies.
    """

    def fetch(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(fetch, tree)
