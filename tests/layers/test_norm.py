"""TorchBatchNorm: PyTorch's running statistics, flax's names and normalised outputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.layers.norm import TorchBatchNorm


@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 5, 4)])
def test_running_variance_is_unbiased_and_outputs_match_flax(shape):
    x = jax.random.normal(jax.random.key(0), shape) * 3.0 + 1.0
    ours, ref = TorchBatchNorm(momentum=0.9), nn.BatchNorm(momentum=0.9, epsilon=1e-5)
    v = ours.init(jax.random.key(1), x, use_running_average=False)
    vr = ref.init(jax.random.key(1), x, use_running_average=False)
    # Same variable tree as flax's BatchNorm: checkpoints and converters are interchangeable.
    assert jax.tree.structure(v) == jax.tree.structure(vr)
    y, upd = ours.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    yr, _ = ref.apply(vr, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y, yr, rtol=1e-4, atol=1e-5)
    flat = np.asarray(x).reshape(-1, shape[-1]).astype(np.float64)
    # PyTorch: running_var = (1 - 0.1) * 1 + 0.1 * var(ddof=1); running_mean likewise from 0.
    np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * flat.var(0, ddof=1), 1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * flat.mean(0), 1e-5, 1e-6)
    biased = TorchBatchNorm(unbiased_running_var=False)
    _, upd_b = biased.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(upd_b["batch_stats"]["var"], 0.9 + 0.1 * flat.var(0), 1e-5)


def test_eval_mode_uses_running_stats_and_bf16_keeps_f32_stats():
    x = jax.random.normal(jax.random.key(0), (8, 3))
    m = TorchBatchNorm(dtype=jnp.bfloat16)
    v = m.init(jax.random.key(1), x, use_running_average=True)
    v = {
        "params": v["params"],
        "batch_stats": {"mean": jnp.full((3,), 0.5), "var": jnp.full((3,), 4.0)},
    }
    y = m.apply(v, x.astype(jnp.bfloat16), use_running_average=True)
    assert y.dtype == jnp.bfloat16 and v["batch_stats"]["var"].dtype == jnp.float32
    # bf16 keeps 8 mantissa bits: ~0.4% relative error on the input and the output.
    np.testing.assert_allclose(
        np.asarray(y, np.float32), (x - 0.5) / np.sqrt(4.0 + 1e-5), 2e-2, 1e-2
    )
