"""The rat method: jit invariants for every objective, and the train step's attack semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.methods import rat
from jaxpapers.methods.rat import steps


def smoke(variant: str):
    return config_lib.load_config_file("configs/rat.py", f"smoke,method_variant={variant}")


@pytest.mark.parametrize(
    "variant",
    # ~20 s CPU each on 2 cores: RAT and SAT run in CI, the other two objectives are 'slow'.
    ["rat", "sat"] + [pytest.param(v, marks=pytest.mark.slow) for v in ("trades", "standard")],
)
def test_rat_train_step_jit(variant, jit_check):
    _, metrics = jit_check("rat", smoke(variant))
    assert 0.0 <= float(metrics[-1]["train_input_accuracy"]) <= 1.0
    if variant == "rat":
        d = float(metrics[-1]["rat_mean_distance"])
        assert 0.0 <= d <= 1.0
        # s(d) = s_max·d for the default linear, 'far_more' schedule (mean is linear too).
        np.testing.assert_allclose(float(metrics[-1]["rat_mean_smoothing"]), 0.2 * d, rtol=1e-5)


def test_rat_config_rejects_unknown_variant_and_keys():
    with pytest.raises(ValueError, match="method_variant"):
        steps.init_state(jax.random.key(0), smoke("pgd_at"))
    with pytest.raises(KeyError):
        config_lib.load_config_file("configs/rat.py", "smoke,rat.regoin=hull")
    for preset in ("default", "cifar10_preact18"):
        c = config_lib.load_config_file("configs/rat.py", preset)
        assert c.method == "rat" and c.method_variant == "rat"


def test_rat_inputs_are_in_ball_with_soft_targets_summing_to_one():
    c = config_lib.load_config_file("configs/rat.py", "smoke,rat.num_samples=3,rat.region=tube")
    st = steps.init_state(jax.random.key(0), c)
    x = jax.random.uniform(jax.random.key(1), (16, 8, 8, 1))
    y = jnp.arange(16) % 10
    run = jax.jit(lambda k: steps.rat_inputs(rat.logits_fn(st, c), x, y, k, c)[:2])
    xs, q = run(jax.random.key(2))
    assert xs.shape == (48, 8, 8, 1) and q.shape == (48, 10)
    xr = jnp.tile(x, (3, 1, 1, 1))
    assert float(jnp.max(jnp.abs(xs - xr))) <= c.attack.eps + 1e-6
    assert float(xs.min()) >= 0 and float(xs.max()) <= 1
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-6)
    assert bool(jnp.all(jnp.argmax(q, -1) == jnp.tile(y, 3)))
