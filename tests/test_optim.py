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


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_accumulated_update_equals_the_large_batch_update(name):
    """k micro-batch steps with accum_steps=k == one step on the k-times larger batch (a model
    without batch statistics, mean loss), to float32 rounding; params fixed in between."""
    k, b = 4, 8
    x = jax.random.normal(jax.random.key(0), (k * b, 5))
    y = jax.random.normal(jax.random.key(1), (k * b, 3))
    params = {"w": jax.random.normal(jax.random.key(2), (5, 3)), "b": jnp.zeros((3,))}

    def loss(p, xb, yb):
        return jnp.mean((jnp.tanh(xb @ p["w"] + p["b"]) - yb) ** 2)

    big = optim.make(optim.config(name=name, lr=0.1, weight_decay=1e-3))
    want, _ = big.update(jax.grad(loss)(params, x, y), big.init(params), params)
    want = optax.apply_updates(params, want)

    acc = optim.make(optim.config(name=name, lr=0.1, weight_decay=1e-3, accum_steps=k))
    p, s = params, acc.init(params)
    for i in range(k):
        g = jax.grad(loss)(p, x[i * b : (i + 1) * b], y[i * b : (i + 1) * b])
        u, s = acc.update(g, s, p)
        new = optax.apply_updates(p, u)
        if i < k - 1:  # Micro-steps leave the parameters untouched.
            for a, c in zip(jax.tree.leaves(new), jax.tree.leaves(p), strict=True):
                np.testing.assert_array_equal(a, c)
        p = new
    for a, c in zip(jax.tree.leaves(p), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def test_accum_steps_must_be_positive():
    with pytest.raises(ValueError, match="accum_steps"):
        optim.make(optim.config(accum_steps=0))


def test_applied_marks_the_steps_that_update_the_parameters():
    """What must happen once per update (e.g. BigGAN's G EMA) follows ``optim.applied``."""
    p = {"w": jnp.ones((2,))}
    g = {"w": jnp.ones((2,))}
    plain = optim.make(optim.config(name="sgd", lr=0.1))
    _, s = plain.update(g, plain.init(p), p)
    assert optim.applied(s) is True
    acc = optim.make(optim.config(name="sgd", lr=0.1, accum_steps=3))
    s, seen = acc.init(p), []
    for _ in range(6):
        u, s = acc.update(g, s, p)
        seen.append(bool(optim.applied(s)))
        assert bool(np.any(u["w"] != 0)) == seen[-1]
    assert seen == [False, False, True, False, False, True]
