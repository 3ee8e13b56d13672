"""Numerics tests of jaxpapers.lib.attacks on tiny models (linear and a trained digits MLP)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers.lib import attacks
from jaxpapers.lib.attacks import losses

EPS = 0.1


@pytest.fixture(scope="module")
def digits_model():
    """A 2-layer MLP trained for a few seconds on scikit-learn digits (8x8x1, 10 classes, [0,1])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.normal(k1, (64, 64)) / 8.0,
        "b1": jnp.zeros(64),
        "w2": jax.random.normal(k2, (64, 10)) / 8.0,
        "b2": jnp.zeros(10),
    }

    def apply(p, xb):
        h = jax.nn.relu(xb.reshape(xb.shape[0], -1) @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"]

    tx = optax.adam(1e-2)
    opt = tx.init(params)

    @jax.jit
    def step(p, o):
        g = jax.grad(lambda q: jnp.mean(losses.cross_entropy(apply(q, x[:1500]), y[:1500])))(p)
        u, o = tx.update(g, o)
        return optax.apply_updates(p, u), o

    for _ in range(300):
        params, opt = step(params, opt)
    logits_fn = functools.partial(apply, params)
    xt, yt = jnp.asarray(x[1500:1628]), jnp.asarray(y[1500:1628])
    assert float(jnp.mean(jnp.argmax(logits_fn(xt), -1) == yt)) > 0.85
    return logits_fn, xt, yt


def _acc(logits_fn, x, y) -> float:
    return float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))


def _assert_in_ball(x_adv, x, eps, norm="linf"):
    assert x_adv.shape == x.shape
    assert bool(jnp.all(jnp.isfinite(x_adv)))
    assert float(jnp.min(x_adv)) >= 0.0 and float(jnp.max(x_adv)) <= 1.0
    d = attacks.linf_norm(x_adv - x) if norm == "linf" else attacks.l2_norm(x_adv - x)
    assert float(jnp.max(d)) <= eps * (1 + 1e-5) + 1e-6


ATTACKS = {
    "fgsm": lambda f, x, y, k: attacks.fgsm(f, x, y, eps=EPS),
    "pgd_linf": lambda f, x, y, k: attacks.pgd(f, x, y, k, eps=EPS, step_size=0.03, num_steps=5),
    "pgd_linf_targeted": lambda f, x, y, k: attacks.pgd(
        f, x, (y + 1) % 10, k, eps=EPS, step_size=0.03, num_steps=5, targeted=True
    ),
    "pgd_l2": lambda f, x, y, k: attacks.pgd(
        f, x, y, k, eps=0.5, step_size=0.2, num_steps=5, norm="l2"
    ),
    "cw_linf": lambda f, x, y, k: attacks.cw_linf(f, x, y, k, eps=EPS, step_size=0.03, num_steps=5),
    "trades": lambda f, x, y, k: attacks.trades_attack(f, x, k, eps=EPS, step_size=0.03),
    "pgd_restarts": lambda f, x, y, k: attacks.pgd_restarts(
        f, x, y, k, num_restarts=2, eps=EPS, step_size=0.03, num_steps=3
    ),
    "apgd_ce": lambda f, x, y, k: attacks.apgd(f, x, y, k, eps=EPS, num_steps=10),
    "apgd_dlr_l2": lambda f, x, y, k: attacks.apgd(
        f, x, y, k, eps=0.5, num_steps=10, loss="dlr", norm="l2"
    ),
    "apgd_t": lambda f, x, y, k: attacks.apgd_targeted(
        f, x, y, k, eps=EPS, num_steps=5, num_target_classes=3
    ),
    "square": lambda f, x, y, k: attacks.square_linf(f, x, y, k, eps=EPS, num_queries=50),
    "fab_t": lambda f, x, y, k: attacks.fab_targeted(
        f, x, y, k, eps=EPS, num_steps=10, num_target_classes=3, num_restarts=2
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_stays_in_eps_ball_and_box_and_is_deterministic(digits_model, name):
    f, x, y = digits_model
    x, y = x[:32], y[:32]
    run = jax.jit(lambda k: ATTACKS[name](f, x, y, k))
    a1, a2 = run(jax.random.key(3)), run(jax.random.key(3))
    norm = "l2" if name in ("pgd_l2", "apgd_dlr_l2") else "linf"
    _assert_in_ball(a1, x, 0.5 if norm == "l2" else EPS, norm)
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
    # Every attack must hurt a non-robust model: accuracy drops.
    if name != "pgd_linf_targeted":
        assert _acc(f, a1, y) < _acc(f, x, y)


def test_pgd_reaches_analytic_worst_case_on_linear_model():
    """For z = W x with 2 classes, the L∞ (L2) worst case moves x by ε·sign(w₁−w₀) (ε·unit)."""
    w = jax.random.normal(jax.random.key(1), (2, 12))
    f = lambda x: x.reshape(x.shape[0], -1) @ w.T  # noqa: E731
    x = jnp.full((4, 3, 4, 1), 0.5)  # interior: the box constraint is inactive for ε = 0.1
    y = jnp.zeros(4, jnp.int32)
    dw = (w[1] - w[0]).reshape(3, 4, 1)
    x_inf = attacks.pgd(f, x, y, jax.random.key(0), eps=EPS, step_size=0.05, num_steps=10)
    np.testing.assert_allclose(x_inf, x + EPS * jnp.sign(dw)[None], atol=1e-6)
    x_l2 = attacks.pgd(f, x, y, jax.random.key(0), eps=EPS, step_size=0.05, num_steps=60, norm="l2")
    np.testing.assert_allclose(x_l2, x + EPS * (dw / jnp.linalg.norm(dw))[None], atol=1e-5)
    # Margin at the worst case = clean margin + ε‖Δw‖₁ (L∞ dual norm).
    m_adv = losses.margin(f(x_inf), y)
    np.testing.assert_allclose(m_adv, losses.margin(f(x), y) + EPS * jnp.sum(jnp.abs(dw)), 1e-5)


def test_pgd_path_and_random_start(digits_model):
    f, x, y = digits_model
    x, y = x[:8], y[:8]
    x_t, path = attacks.pgd(
        f, x, y, jax.random.key(0), eps=EPS, step_size=0.03, num_steps=4, return_path=True
    )
    assert path.shape == (5,) + x.shape
    np.testing.assert_array_equal(path[-1], x_t)
    for p in path:
        _assert_in_ball(p, x, EPS)
    assert float(jnp.max(jnp.abs(path[0] - x))) > 0.05  # random start really moved
    other = attacks.pgd(f, x, y, jax.random.key(1), eps=EPS, step_size=0.03, num_steps=4)
    assert not np.array_equal(np.asarray(other), np.asarray(x_t))
    # The unrolled loop (used on CPU) walks the same path.
    x_u, path_u = attacks.pgd(
        f,
        x,
        y,
        jax.random.key(0),
        eps=EPS,
        step_size=0.03,
        num_steps=4,
        return_path=True,
        unroll=True,
    )
    np.testing.assert_allclose(path_u, path, atol=1e-6)
    np.testing.assert_allclose(x_u, x_t, atol=1e-6)


def test_apgd_not_worse_than_pgd_same_budget(digits_model):
    f, x, y = digits_model
    eps = 0.05
    x_pgd = attacks.pgd(f, x, y, jax.random.key(0), eps=eps, step_size=eps / 4, num_steps=20)
    x_apgd = attacks.apgd(f, x, y, jax.random.key(0), eps=eps, num_steps=20)
    acc_clean, acc_pgd, acc_apgd = _acc(f, x, y), _acc(f, x_pgd, y), _acc(f, x_apgd, y)
    assert acc_pgd < acc_clean  # the budget is meaningful
    assert acc_apgd <= acc_pgd
    x_t = attacks.apgd_targeted(f, x, y, jax.random.key(0), eps=eps, num_steps=20)
    assert _acc(f, x_t, y) <= acc_pgd


def test_apgd_checkpoint_schedule_matches_reference_constants():
    # Reference: k0 = int(0.22N) = 22, shrink by int(0.03N) = 3 down to int(0.06N) = 6.
    assert attacks.checkpoints(100) == [21, 40, 56, 69, 79, 86, 92, 98]
    assert attacks.checkpoints(10) == list(range(1, 10))


def test_dlr_losses_hand_values_and_invariance():
    z = jnp.array([[4.0, 1.0, 3.0, 0.0], [1.0, 5.0, 2.0, 0.5]])
    y = jnp.array([0, 0])
    # row 0: y top, other max 3, π1 − π3 = 4 − 1 → −(4 − 3)/3; row 1: −(1 − 5)/(5 − 1) = 1.
    np.testing.assert_allclose(losses.dlr(z, y), [-1.0 / 3.0, 1.0], rtol=1e-6)
    t = jnp.array([2, 2])
    # targeted: row 0: −(4 − 3)/(4 − ½(1 + 0)) ; row 1: −(1 − 2)/(5 − ½(1 + 0.5)).
    np.testing.assert_allclose(losses.dlr_targeted(z, y, t), [-1.0 / 3.5, 1.0 / 4.25], rtol=1e-6)
    np.testing.assert_allclose(losses.dlr(3.0 * z + 7.0, y), losses.dlr(z, y), rtol=1e-5)
    np.testing.assert_allclose(losses.margin(z, y), [-1.0, 4.0])
    # All-negative logits: the true class must still be masked out (not multiplied by 0,
    # the pitfall of burcywu/hedge_defense attacks.py cw_loss).
    np.testing.assert_allclose(losses.margin(-z - 10, jnp.array([3, 0])), [-1.0, 0.5])
    with pytest.raises(ValueError, match="at least 4 classes"):
        losses.dlr_targeted(z[:, :3], y, t)


def test_square_schedule_and_success_on_linear_model():
    ps = [float(attacks.p_selection(0.8, jnp.int32(i))) for i in (0, 10, 11, 51, 9000)]
    np.testing.assert_allclose(ps, [0.8, 0.8, 0.4, 0.2, 0.8 / 512], rtol=1e-6)
    w = jax.random.normal(jax.random.key(2), (3, 6 * 6 * 2))
    f = lambda x: x.reshape(x.shape[0], -1) @ w.T  # noqa: E731
    x = jax.random.uniform(jax.random.key(4), (16, 6, 6, 2), minval=0.3, maxval=0.7)
    y = jnp.argmax(f(x), -1)
    eps = 0.05
    # Points whose analytic L∞ worst case (ε‖w_j − w_y‖₁ vs the margin) flips them.
    z = f(x)
    gap = jnp.take_along_axis(z, y[:, None], -1) - z
    reach = eps * jnp.sum(jnp.abs(w[y][:, None, :] - w[None, :, :][0]), -1)
    flippable = jnp.any((gap < reach) & (gap > 0), -1)
    x_adv = attacks.square_linf(f, x, y, jax.random.key(0), eps=eps, num_queries=300)
    _assert_in_ball(x_adv, x, eps)
    fooled = jnp.argmax(f(x_adv), -1) != y
    assert not bool(jnp.any(fooled & ~flippable))  # never beats the analytic worst case
    assert int(jnp.sum(fooled)) >= 1


def test_linf_hyperplane_box_projection_is_the_minimal_step():
    """Against scipy's LP: min s s.t. |δ_i| ≤ s, w·(t+δ) = b, 0 ≤ t+δ ≤ 1."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(0)
    n, d = 24, 7
    t = rng.uniform(0, 1, (n, d)).astype(np.float32)
    w = rng.normal(size=(n, d)).astype(np.float32)
    w[3, 2] = 0.0  # a zero weight must not move
    # Targets from small (no coordinate saturates) to infeasible (beyond every corner).
    b = (w * t).sum(1) + rng.normal(size=n).astype(np.float32) * np.linspace(0.05, 4, n)
    delta = np.asarray(attacks.project_linf_hyperplane_box(t, w, b))
    assert np.all(t + delta >= -1e-6) and np.all(t + delta <= 1 + 1e-6)
    assert delta[3, 2] == 0.0
    for i in range(n):
        c = np.zeros(d + 1)
        c[-1] = 1.0
        a_ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
        lp = linprog(
            c,
            A_ub=a_ub,
            b_ub=np.zeros(2 * d),
            A_eq=np.append(w[i], 0.0)[None],
            b_eq=[b[i] - w[i] @ t[i]],
            bounds=[(-ti, 1 - ti) for ti in t[i]] + [(0, None)],
        )
        if lp.status == 0:  # feasible: same (minimal) L∞ norm and on the hyperplane
            assert np.abs(delta[i]).max() == pytest.approx(lp.x[-1], rel=1e-4, abs=1e-5)
            assert w[i] @ (t[i] + delta[i]) == pytest.approx(b[i], rel=1e-4, abs=1e-4)
        else:  # infeasible: the corner that moves w·z furthest towards b
            corner = np.where((w[i] > 0) == (b[i] > w[i] @ t[i]), 1.0, 0.0)
            np.testing.assert_allclose((t[i] + delta[i])[w[i] != 0], corner[w[i] != 0], atol=1e-6)


def test_fab_finds_the_minimal_linf_adversarial_of_a_linear_model():
    """Two classes, z = W x: the closest L∞ adversarial is at |Δz| / ‖w₁ − w₀‖₁; FAB-T fools
    every point when ε is 10% above it and none when ε is 5% below it."""
    w = jax.random.normal(jax.random.key(1), (2, 12))
    f = lambda x: x.reshape(x.shape[0], -1) @ w.T  # noqa: E731
    x = jax.random.uniform(jax.random.key(2), (16, 12), minval=0.4, maxval=0.6)
    y = jnp.argmax(f(x), -1)
    gap = jnp.abs(f(x)[:, 1] - f(x)[:, 0])
    dist = gap / jnp.sum(jnp.abs(w[1] - w[0]))  # interior points: the box stays inactive
    assert float(dist.max()) * 1.1 < 0.4  # x in [0.4, 0.6]: the steps stay inside [0, 1]
    for scale, fooled in ((1.1, True), (0.95, False)):
        for i in range(4):  # per point, with ε just above / below its own distance
            xi, yi = x[i : i + 1], y[i : i + 1]
            adv = attacks.fab_targeted(
                f,
                xi,
                yi,
                jax.random.key(0),
                eps=float(dist[i]) * scale,
                num_steps=20,
                num_target_classes=1,
            )
            assert bool(jnp.argmax(f(adv), -1)[0] != yi[0]) == fooled
            _assert_in_ball(adv, xi, float(dist[i]) * scale)
