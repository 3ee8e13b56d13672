"""Hedge defense: objective, projection, the official path-logit sum, linear-model step, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers import config_lib, parallel
from jaxpapers.methods.hedge_defense import defense

rng = np.random.default_rng(0)
W = jnp.asarray(rng.normal(size=(12, 4)).astype(np.float32))
B = jnp.asarray(rng.normal(size=(4,)).astype(np.float32))


def linear(x):
    return x.reshape(x.shape[0], -1) @ W + B


def test_objective_is_sum_of_class_ce_and_k_times_kl_to_uniform():
    z = jnp.asarray(rng.normal(size=(5, 4)).astype(np.float32))
    logp = jax.nn.log_softmax(z)
    np.testing.assert_allclose(defense.all_class_objective(z), -jnp.sum(logp, -1), rtol=1e-5)
    kl = jnp.sum(0.25 * (jnp.log(0.25) - logp), -1)
    np.testing.assert_allclose(defense.all_class_objective(z), 4 * (kl + jnp.log(4.0)), rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_iterates_stay_in_the_eps_ball_of_the_input_and_in_unit_range(steps):
    x = jnp.asarray(rng.uniform(size=(6, 3, 4, 1)).astype(np.float32))
    x = x.at[0].set(0.0).at[1].set(1.0)  # on the box corners the clip matters
    _, xt = defense.hedge(
        linear, x, jax.random.PRNGKey(1), eps=0.05, step_size=0.03, num_steps=steps, predict="final"
    )
    assert float(jnp.max(jnp.abs(xt - x))) <= 0.05 + 1e-6
    assert float(xt.min()) >= 0.0 and float(xt.max()) <= 1.0


def test_path_logit_sum_uses_exactly_iterates_1_to_T_minus_1():
    x = jnp.asarray(rng.uniform(0.2, 0.8, size=(3, 3, 4, 1)).astype(np.float32))
    key, eps, step, T = jax.random.PRNGKey(3), 0.05, 0.01, 5
    acc, xt = defense.hedge(linear, x, key, eps=eps, step_size=step, num_steps=T)
    # Reference: the official loop written out in numpy.
    xa = np.asarray(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps))
    ref = np.zeros((3, 4), np.float32)
    for k in range(T):
        g = np.asarray(
            jax.grad(lambda a: jnp.sum(defense.all_class_objective(linear(a))))(jnp.asarray(xa))
        )
        if k > 0:
            ref += np.asarray(linear(jnp.asarray(xa)))
        xa = np.clip(
            np.asarray(x) + np.clip(xa + step * np.sign(g) - np.asarray(x), -eps, eps), 0, 1
        )
    np.testing.assert_allclose(acc, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xt, xa, atol=1e-6)
    final, _ = defense.hedge(linear, x, key, eps=eps, step_size=step, num_steps=T, predict="final")
    np.testing.assert_allclose(final, linear(jnp.asarray(xa)), rtol=1e-5, atol=1e-5)


def test_linear_model_step_follows_the_first_order_analysis():
    """One step on f(x) = Wx + b moves every logit by Δz_c = η·w_c·sign(Σ_j (K p_j − 1) w_j)."""
    x = jnp.full((1, 3, 4, 1), 0.5)
    eta = 0.01
    _, x1 = defense.hedge(
        linear,
        x,
        jax.random.PRNGKey(0),
        eps=0.1,
        step_size=eta,
        num_steps=1,
        random_init=False,
        predict="final",
    )
    p = jax.nn.softmax(linear(x))[0]
    direction = jnp.sign(W @ (4 * p - 1))
    np.testing.assert_allclose(x1.reshape(-1) - 0.5, eta * direction, atol=1e-6)
    dz = linear(x1) - linear(x)
    np.testing.assert_allclose(dz[0], eta * direction @ W, rtol=1e-4, atol=1e-6)
    # Classes with larger ‖w_c‖₁ (larger Lipschitz constant) can move by more.
    assert np.all(np.abs(np.asarray(dz[0])) <= eta * np.abs(np.asarray(W)).sum(0) + 1e-6)


CONV_W = jnp.asarray(rng.normal(size=(3, 3, 1, 4)).astype(np.float32) * 0.5)


def conv_net(x):
    """A tiny conv classifier: the kind of model whose loop body XLA:CPU runs slowly rolled."""
    h = jax.lax.conv_general_dilated(
        x, CONV_W, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.tanh(h).mean(axis=(1, 2)) @ W[:4] + B


@pytest.mark.parametrize("predict", defense.PREDICT_MODES)
def test_unrolled_defense_equals_rolled(predict):
    x = jnp.asarray(rng.uniform(size=(4, 3, 4, 1)).astype(np.float32))
    run = lambda unroll: jax.jit(
        lambda a, k: defense.hedge(conv_net, a, k, num_steps=6, predict=predict, unroll=unroll)
    )(x, jax.random.PRNGKey(4))
    (z_rolled, x_rolled), (z_unrolled, x_unrolled) = run(1), run(True)
    np.testing.assert_allclose(x_unrolled, x_rolled, atol=1e-6)
    np.testing.assert_allclose(z_unrolled, z_rolled, rtol=1e-5, atol=1e-5)


def test_unroll_option_and_config_kwargs():
    assert defense.unroll_for("yes") is True and defense.unroll_for("no") == 1
    assert defense.unroll_for("auto") == (True if jax.default_backend() == "cpu" else 1)
    with pytest.raises(ValueError, match="hedge.unroll"):
        defense.unroll_for("sometimes")
    c = config_lib.load_config_file("configs/hedge_defense.py", "smoke,hedge.unroll=no")
    kw = defense.hedge_kwargs(c.hedge)
    assert kw["unroll"] == 1 and kw["num_steps"] == c.hedge.num_steps
    # Configs saved before the option existed run with 'auto'.
    old = config_lib.ConfigDict({k: v for k, v in c.hedge.items() if k != "unroll"})
    assert defense.hedge_kwargs(old)["unroll"] == defense.unroll_for("auto")


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="predict mode"):
        defense.hedge(linear, jnp.zeros((1, 3, 4, 1)), jax.random.PRNGKey(0), predict="mean")


def test_hedge_defense_jit():
    """The defense jitted over the 8-device data mesh: one compile, deterministic, sharded."""
    mesh = parallel.make_mesh()
    x = jax.device_put(
        jnp.asarray(rng.uniform(size=(16, 3, 4, 1)).astype(np.float32)),
        NamedSharding(mesh, P("data")),
    )
    fn = jax.jit(lambda a, k: defense.hedge(linear, a, k, num_steps=5))
    with jax.set_mesh(mesh):
        a1, x1 = fn(x, jax.random.PRNGKey(0))
        a2, x2 = fn(x + 0.0, jax.random.PRNGKey(0))
        fn(x, jax.random.PRNGKey(1))
    assert fn._cache_size() == 1
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(x1, x2)
    assert np.all(np.isfinite(a1))


def test_presets_parse():
    for p in ("default", "cifar10", "imagenet", "smoke"):
        c = config_lib.load_config_file("configs/hedge_defense.py", p)
        assert c.hedge.predict in defense.PREDICT_MODES


def test_hedge_defense_runs_end_to_end(smoke_run):
    """main.run on the smoke preset: trains a tiny SAT model, writes both tables and pictures."""
    import json
    import pathlib

    workdir, flat = smoke_run("hedge_defense")
    work = pathlib.Path(workdir)
    assert {
        "eval/clean/none",
        "eval/pgd/hedge",
        "eval/worst/noise",
        "eval/adaptive/worst_case",
    } <= set(flat)
    with open(work / "hedge_table.json") as f:
        table = json.load(f)["table"]
    assert set(table) == {"clean", "pgd", "apgd-ce", "worst"}
    for row in table.values():
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert table["worst"]["none"] <= min(table[r]["none"] for r in ("clean", "pgd", "apgd-ce"))
    assert (work / "hedge_table.md").exists() and (work / "gradient_norms.png").exists()


def test_flip_examples_counts_and_draws_the_points_the_hedge_fixes(tmp_path):
    from PIL import Image

    from jaxpapers.methods.hedge_defense import pictures

    c = config_lib.load_config_file("configs/hedge_defense.py", "smoke,hedge.eps=0.5")
    x = rng.uniform(size=(64, 3, 4, 1)).astype(np.float32)
    key = jax.random.PRNGKey(5)
    bare = np.argmax(linear(jnp.asarray(x)), -1)
    hedged = np.argmax(
        defense.hedge(linear, jnp.asarray(x), key, **defense.hedge_kwargs(c.hedge))[0], -1
    )
    # Labelled with the hedge's own predictions, every point where it disagrees with the bare
    # model is one the hedge "fixes"; the others must not be counted.
    path = tmp_path / "flips.png"
    n = pictures.flip_examples(str(path), linear, x, hedged.astype(np.int32), key, c.hedge)
    assert n == int(np.sum(bare != hedged)) > 0
    assert Image.open(path).format == "PNG"
