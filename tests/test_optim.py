"""Optimizer factory: schedules at known steps, decay masks, per-subtree multipliers, EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers import optim


def test_piecewise_schedule_with_warmup():
    cfg = optim.config(
        name="sgd",
        lr=0.1,
        schedule="piecewise",
        milestones=(100, 150),
        decay_factor=0.1,
        warmup_steps=10,
    )
    s = optim.schedule(cfg)
    np.testing.assert_allclose(
        [s(0), s(5), s(10), s(99), s(100), s(149), s(150)],
        [0.0, 0.05, 0.1, 0.1, 0.01, 0.01, 0.001],
        rtol=1e-5,
    )


def test_cosine_schedule_endpoints():
    s = optim.schedule(optim.config(lr=1.0, schedule="cosine", total_steps=100))
    np.testing.assert_allclose([s(0), s(50), s(100)], [1.0, 0.5, 0.0], atol=1e-6)


def test_default_decay_mask_skips_biases_and_scales():
    params = {
        "conv": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones(2)},
        "bn": {"scale": jnp.ones(2)},
    }
    tx = optim.make(optim.config(name="sgd", lr=1.0, weight_decay=0.5))
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["conv"]["kernel"], -0.5)  # -lr * wd * w
    np.testing.assert_allclose(updates["conv"]["bias"], 0.0)
    np.testing.assert_allclose(updates["bn"]["scale"], 0.0)


def test_lr_multipliers_scale_a_subtree():
    params = {
        "mapping": {"Dense_0": {"kernel": jnp.ones((2, 2))}},
        "synthesis": {"kernel": jnp.ones((2, 2))},
    }
    tx = optim.make(optim.config(name="sgd", lr=1.0, lr_multipliers=(("mapping/.*", 0.01),)))
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["mapping"]["Dense_0"]["kernel"], -0.01)
    np.testing.assert_allclose(updates["synthesis"]["kernel"], -1.0)


def test_adam_matches_optax_and_clipping_applies():
    params = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([3.0, 4.0])}
    ours = optim.make(optim.config(name="adam", lr=0.1, b1=0.0, b2=0.99, eps=1e-8))
    ref = optax.adam(0.1, 0.0, 0.99, 1e-8)
    u1, _ = ours.update(g, ours.init(params), params)
    u2, _ = ref.update(g, ref.init(params), params)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)
    clipped = optim.make(optim.config(name="sgd", lr=1.0, clip_norm=1.0))
    u3, _ = clipped.update(g, clipped.init(params), params)
    np.testing.assert_allclose(np.linalg.norm(u3["w"]), 1.0, rtol=1e-5)


def test_adamw_decoupled_decay_and_nesterov():
    params = {"k": jnp.ones((2, 2))}
    tx = optim.make(optim.config(name="adamw", lr=0.1, weight_decay=0.01))
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(u["k"], -0.1 * 0.01, rtol=1e-5)
    tx = optim.make(optim.config(name="nesterov", lr=1.0, momentum=0.9))
    u, _ = tx.update({"k": jnp.ones((2, 2))}, tx.init(params), params)
    np.testing.assert_allclose(u["k"], -1.9, rtol=1e-6)  # g + mu * (mu * 0 + g)


def test_ema_update_and_bad_names():
    e = optim.ema_update({"a": jnp.array(0.0)}, {"a": jnp.array(1.0)}, 0.9)
    np.testing.assert_allclose(e["a"], 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optim.make(optim.config(name="lion"))
    with pytest.raises(KeyError, match="Unknown optimizer option"):
        optim.config(learning_rate=1.0)
