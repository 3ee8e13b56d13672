"""SynFace losses: IM/DM reductions, margin-then-mix logits, the grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.lib import margin_heads as mh
from jaxpapers.methods.synface import losses

N, C = 6, 9
MARGIN = mh.arcface(30.0, 0.5)


@pytest.fixture(scope="module")
def case():
    k = jax.random.split(jax.random.key(0), 4)
    cos = jnp.tanh(jax.random.normal(k[0], (N, C)))
    y_a = jax.random.randint(k[1], (N,), 0, 6)
    y_b = (y_a + 1 + jax.random.randint(k[2], (N,), 0, 4)) % 6
    y_real = 6 + jax.random.randint(k[3], (N,), 0, 3)  # real labels offset after 6 synthetic
    phi = jnp.asarray([0.0, 0.05, 0.3, 0.5, 0.95, 1.0], jnp.float32)
    return cos, y_a, y_b, phi, y_real


def test_grid_is_official():
    g = losses.mixup_grid(0.05)
    assert len(g) == 21 and g[0] == 0.0 and g[-1] == 1.0
    np.testing.assert_allclose(np.diff(g), 0.05, atol=1e-6)
    draws = np.asarray(losses.sample_from_grid(jax.random.key(1), (2000,)))
    assert set(np.round(draws, 2)).issubset(set(np.round(g, 2))) and len(set(draws)) == 21


def test_mixed_logits_equal_explicit_formula(case):
    cos, y_a, y_b, phi, y_real = case
    psi = 0.35
    o = losses.mixed_logits(cos, y_a, y_b, phi, y_real, psi, MARGIN)
    # By hand: A(f, y) = s*cos except s*phi_arc(cos_y) on class y; mix per target.
    c = np.asarray(cos, np.float64)
    s, m = 30.0, 0.5

    def arc(x):
        th = np.arccos(np.clip(x, -1, 1))
        return np.where(x > np.cos(np.pi - m), np.cos(th + m), x - np.sin(np.pi - m) * m)

    def A(y):
        out = s * c.copy()
        out[np.arange(N), y] = s * arc(c[np.arange(N), y])
        return out

    p = np.asarray(phi, np.float64)[:, None]
    ref = psi * (p * A(np.asarray(y_a)) + (1 - p) * A(np.asarray(y_b))) + (1 - psi) * A(
        np.asarray(y_real)
    )
    np.testing.assert_allclose(np.asarray(o), ref, rtol=1e-5, atol=1e-4)
    # The train step's single-head form (margin_logits with the mixed target matrix) is the same.
    t = losses.soft_targets(y_a, y_b, phi, y_real, psi, C)
    np.testing.assert_allclose(
        np.asarray(mh.margin_logits(cos, t, MARGIN)), ref, rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(t).sum(1), 1.0, atol=1e-6)


def test_dm_with_psi_one_is_im_and_im_with_phi_one_is_arcface(case):
    cos, y_a, y_b, phi, y_real = case
    o_dm = losses.mixed_logits(cos, y_a, y_b, phi, y_real, 1.0, MARGIN)
    o_im = losses.mixed_logits(cos, y_a, y_b, phi, None, 1.0, MARGIN)
    np.testing.assert_allclose(np.asarray(o_dm), np.asarray(o_im), atol=1e-6)
    l_dm = losses.synface_loss(o_dm, y_a, y_b, phi, y_real, 1.0)
    l_im = losses.synface_loss(o_im, y_a, y_b, phi, None, 1.0)
    np.testing.assert_allclose(float(l_dm), float(l_im), rtol=1e-6)
    ones = jnp.ones((N,))
    o1 = losses.mixed_logits(cos, y_a, y_b, ones, None, 1.0, MARGIN)
    plain = mh.margin_logits(cos, y_a, MARGIN)
    np.testing.assert_allclose(np.asarray(o1), np.asarray(plain), atol=1e-6)
    np.testing.assert_allclose(
        float(losses.synface_loss(o1, y_a, y_b, ones, None, 1.0)),
        float(mh.softmax_cross_entropy(plain, y_a)),
        rtol=1e-6,
    )


def test_loss_equals_soft_target_ce_and_weights_matter(case):
    cos, y_a, y_b, phi, y_real = case
    psi = 0.6
    o = losses.mixed_logits(cos, y_a, y_b, phi, y_real, psi, MARGIN)
    t = losses.soft_targets(y_a, y_b, phi, y_real, psi, C)
    l_official = losses.synface_loss(o, y_a, y_b, phi, y_real, psi)
    np.testing.assert_allclose(float(l_official), float(mh.softmax_cross_entropy(o, t)), rtol=1e-5)
    l_other = losses.synface_loss(o, y_a, y_b, phi, y_real, 0.1)
    assert abs(float(l_other) - float(l_official)) > 1e-3


def test_mix_pixels():
    a, b = jnp.ones((2, 4, 4, 3)), -jnp.ones((2, 4, 4, 3))
    np.testing.assert_allclose(np.asarray(losses.mix_pixels(a, b, 0.25)), -0.5)
    with pytest.raises(ValueError):
        losses.mix_pixels(a, b[:1], 0.5)
