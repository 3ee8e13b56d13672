"""Margin heads equal their formulas at known angles (incl. ArcFace's theta + m > pi fallback),
soft labels equal SynFace's per-target mixing, and the class centres shard over a 'model' axis."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.lib import margin_heads as mh


def _unit(theta):
    return np.array([math.cos(theta), math.sin(theta)], np.float32)


def _cos_at(thetas):
    """Embedding at angle 0 against centres at the given angles -> cos matrix (1, C)."""
    emb = jnp.asarray(_unit(0.0))[None]
    centres = jnp.asarray(np.stack([_unit(t) for t in thetas]))
    return mh.cosine_matrix(emb * 3.0, centres * 0.5)  # norms must not matter


def test_cosine_matrix_known_angles():
    cos = _cos_at([0.0, math.pi / 3, math.pi / 2, math.pi])
    np.testing.assert_allclose(cos, [[1.0, 0.5, 0.0, -1.0]], atol=1e-6)


def test_cosface_arcface_sphereface_formulas():
    th = [math.pi / 3, math.pi / 4, 2.0]
    cos = _cos_at(th)
    lab = jnp.array([0])
    # CosFace s=30 m=0.35: target s*(cos - m), others s*cos.
    out = mh.margin_logits(cos, lab, mh.cosface(30.0, 0.35))
    np.testing.assert_allclose(
        out, [[30 * (0.5 - 0.35), 30 * math.cos(th[1]), 30 * math.cos(th[2])]], rtol=1e-5
    )
    # ArcFace s=30 m=0.5: target s*cos(theta + m).
    out = mh.margin_logits(cos, lab, mh.arcface(30.0, 0.5))
    np.testing.assert_allclose(out[0, 0], 30 * math.cos(th[0] + 0.5), rtol=1e-5)
    # SphereFace s=64 m=1.5 (FROM's plain cos(m*theta)).
    out = mh.margin_logits(cos, jnp.array([1]), mh.sphereface(64.0, 1.5))
    np.testing.assert_allclose(out[0, 1], 64 * math.cos(1.5 * th[1]), rtol=1e-4)
    # Combined cos(m1*theta + m2) - m3.
    m = mh.Margin(s=10.0, m1=1.2, m2=0.3, m3=0.1)
    out = mh.margin_logits(cos, jnp.array([2]), m)
    np.testing.assert_allclose(out[0, 2], 10 * (math.cos(1.2 * 2.0 + 0.3) - 0.1), rtol=1e-4)


def test_arcface_fallback_past_pi_minus_m():
    m = 0.5
    for theta in [math.pi - 0.3, 3.0, math.pi - 0.01]:  # theta + m > pi
        cos = _cos_at([theta])
        out = mh.margin_logits(cos, jnp.array([0]), mh.arcface(1.0, m))
        expect = math.cos(theta) - math.sin(math.pi - m) * m
        np.testing.assert_allclose(out[0, 0], expect, rtol=1e-5, atol=1e-6)
    # Just below the switch the margin form is used, and phi is monotone across it.
    grid = np.linspace(0.01, math.pi - 0.01, 400)
    phi = mh.target_phi(jnp.asarray(np.cos(grid)), mh.arcface(1.0, m))
    assert np.all(np.diff(np.asarray(phi)) < 0)
    assert (
        abs(float(mh.target_phi(jnp.array(math.cos(1.0)), mh.arcface(1.0, m))) - math.cos(1.5))
        < 1e-6
    )


def test_soft_labels_equal_per_target_mixing():
    key = jax.random.key(0)
    cos = jnp.tanh(jax.random.normal(key, (5, 7)))
    ya, yb = jnp.array([0, 1, 2, 3, 4]), jnp.array([6, 5, 2, 1, 0])
    phi = jnp.array([0.3, 0.0, 0.5, 1.0, 0.75])[:, None]
    t = phi * jax.nn.one_hot(ya, 7) + (1 - phi) * jax.nn.one_hot(yb, 7)
    for margin in [mh.arcface(30.0, 0.5), mh.cosface(30.0, 0.4)]:
        mixed = phi * mh.margin_logits(cos, ya, margin) + (1 - phi) * mh.margin_logits(
            cos, yb, margin
        )
        soft = mh.margin_logits(cos, t, margin)
        np.testing.assert_allclose(soft, mixed, rtol=1e-5, atol=1e-5)
        loss_soft = mh.softmax_cross_entropy(soft, t)
        ls = jax.nn.log_softmax(soft)
        manual = -jnp.mean(
            phi[:, 0] * ls[jnp.arange(5), ya] + (1 - phi[:, 0]) * ls[jnp.arange(5), yb]
        )
        np.testing.assert_allclose(loss_soft, manual, rtol=1e-5)
    # One-hot soft targets == integer labels.
    np.testing.assert_allclose(
        mh.margin_logits(cos, jax.nn.one_hot(ya, 7), mh.arcface()),
        mh.margin_logits(cos, ya, mh.arcface()),
        rtol=1e-6,
    )


def test_bad_targets_and_margins():
    with pytest.raises(ValueError, match="soft target"):
        mh.margin_logits(jnp.zeros((2, 3)), jnp.zeros((2, 4)), mh.cosface())
    with pytest.raises(ValueError, match="integer"):
        mh.margin_logits(jnp.zeros((2, 3)), jnp.zeros((2,)), mh.cosface())
    with pytest.raises(ValueError, match="Unknown margin"):
        mh.make_margin("adaface", 30.0)


def test_margin_head_sharded_centres_match_replicated():
    if jax.device_count() < 8:
        pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    emb = jax.random.normal(jax.random.key(1), (8, 16))
    lab = jnp.arange(8) % 12
    ref_head = mh.MarginHead(12, mh.arcface(30.0, 0.5))
    params = ref_head.init(jax.random.key(0), emb, lab)
    sh_head = mh.MarginHead(12, mh.arcface(30.0, 0.5), shard_axis="model", batch_axis="data")

    def loss(head):
        def f(p, e, y):
            logits, _ = head.apply(p, e, y)
            return mh.softmax_cross_entropy(logits, y), logits

        return jax.jit(jax.value_and_grad(f, has_aux=True))

    (l_ref, lg_ref), g_ref = loss(ref_head)(params, emb, lab)
    with jax.set_mesh(mesh):
        p_sh = {
            "params": {
                "centres": jax.device_put(
                    params["params"]["centres"],
                    NamedSharding(mesh, mh.centre_partition_spec("model")),
                )
            }
        }
        e_sh = jax.device_put(emb, NamedSharding(mesh, P("data")))
        (l_sh, lg_sh), g_sh = loss(sh_head)(p_sh, e_sh, lab)
    np.testing.assert_allclose(l_sh, l_ref, rtol=1e-5)
    np.testing.assert_allclose(lg_sh, lg_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_sh["params"]["centres"], g_ref["params"]["centres"], atol=1e-5)
    assert lg_sh.sharding.spec == P("data", "model")
    assert g_sh["params"]["centres"].sharding.spec[0] == "model"
    assert mh.centre_partition_spec(None) == P()
