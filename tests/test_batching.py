"""batching.map_batches: padding, order, chunk starts, and the data-parallel path over a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxpapers import batching, parallel


def test_pads_the_last_chunk_and_keeps_order():
    seen = []

    def fn(start, a, b):
        seen.append((start, a.shape[0]))
        return {"sum": a + b[:, None], "start": np.full(len(a), start)}

    a = np.arange(23, dtype=np.float32)[:, None]
    b = np.arange(23) % 5
    out = batching.map_batches(fn, a, b, batch_size=10, with_start=True)
    np.testing.assert_array_equal(out["sum"], a + b[:, None])
    np.testing.assert_array_equal(out["start"], np.repeat([0, 10, 20], [10, 10, 3]))
    assert seen == [(0, 10), (10, 10), (20, 10)]  # one shape: the last chunk is padded
    with pytest.raises(ValueError, match="different lengths"):
        batching.map_batches(fn, a, b[:3], batch_size=10)


def test_on_a_mesh_chunks_are_sharded_and_the_numbers_are_one_devices():
    """Rows appended to a chunk (to a multiple of the 8 devices) leave every row's result alone,
    random draws included (a key per chunk, partitionable threefry): same numbers as no mesh."""
    mesh = parallel.make_mesh()
    key = jax.random.key(3)
    seen = []

    @jax.jit
    def noisy(k, x):
        y = jnp.tanh(x @ jnp.arange(12.0).reshape(3, 4)) + jax.random.uniform(k, (len(x), 4))
        return {"y": y, "arg": jnp.argmax(y, -1)}

    def fn(start, x):
        if isinstance(x, jax.Array):
            seen.append((x.shape, x.sharding.spec))
        return noisy(jax.random.fold_in(key, start), x)

    x = np.random.default_rng(0).normal(size=(21, 3)).astype(np.float32)
    want = batching.map_batches(fn, x, batch_size=10, with_start=True)
    got = batching.map_batches(fn, x, batch_size=10, mesh=mesh, with_start=True)
    assert seen == [((16, 3), P("data"))] * 3  # 10 rows padded to 16: 2 per device
    np.testing.assert_array_equal(got["arg"], want["arg"])
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)
    one = batching.map_batches(
        fn, x, batch_size=10, mesh=parallel.make_mesh(jax.devices()[:1]), with_start=True
    )
    np.testing.assert_array_equal(one["arg"], want["arg"])


def test_shard_full_batch_refuses_a_size_the_mesh_does_not_divide():
    with pytest.raises(ValueError, match="multiple of the device count"):
        parallel.shard_full_batch(np.zeros((6, 2)), parallel.make_mesh())
