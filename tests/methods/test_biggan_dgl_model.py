"""Numerics of the BigGAN layers and losses: SN, conditional BN, projection D, hinge, ortho."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.layers.spectral_norm import SNConv, SNDense, power_iteration
from jaxpapers.lib import dgl
from jaxpapers.methods.biggan_dgl import losses
from jaxpapers.methods.biggan_dgl import model as M


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_spectral_norm_sigma_converges_to_svd(kind):
    layer = SNDense(6) if kind == "dense" else SNConv(5, (3, 3))
    x = jnp.ones((2, 4, 4, 3)) if kind == "conv" else jnp.ones((2, 7))
    v = layer.init(jax.random.key(0), x)
    kernel = np.asarray(v["params"]["kernel"]) * 3.0  # sigma far from 1 so the check bites
    params = {"kernel": jnp.asarray(kernel), "bias": v["params"]["bias"]}
    true_sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]

    @jax.jit
    def step(spectral):
        _, new = layer.apply(
            {"params": params, "spectral": spectral}, x, update=True, mutable=["spectral"]
        )
        return new["spectral"]

    spectral = v["spectral"]
    first = None
    for _ in range(200):
        spectral = step(spectral)
        first = float(spectral["sv"]) if first is None else first
    np.testing.assert_allclose(float(spectral["sv"]), true_sigma, rtol=1e-4)
    # Without update the state stays put; the normalised weight then has top singular value 1.
    _, same = layer.apply(
        {"params": params, "spectral": spectral}, x, update=False, mutable=["spectral"]
    )
    np.testing.assert_array_equal(np.asarray(same["spectral"]["u"]), np.asarray(spectral["u"]))
    sigma, _ = power_iteration(jnp.asarray(kernel.reshape(-1, kernel.shape[-1]).T), spectral["u"])
    w_sn = kernel.reshape(-1, kernel.shape[-1]) / float(sigma)
    np.testing.assert_allclose(np.linalg.svd(w_sn, compute_uv=False)[0], 1.0, rtol=1e-4)


def test_spectral_norm_sigma_has_gradient_only_through_w():
    w = jax.random.normal(jax.random.key(1), (4, 6))
    u = jax.random.normal(jax.random.key(2), (4,))
    for _ in range(100):
        _, u = power_iteration(w, u)
    g = jax.grad(lambda w: power_iteration(w, u)[0])(w)
    uu, s, vt = np.linalg.svd(np.asarray(w))
    # d sigma_max / dW = u1 v1^T at convergence.
    np.testing.assert_allclose(
        np.asarray(g),
        np.outer(uu[:, 0], vt[0]) * np.sign(np.dot(np.asarray(u), uu[:, 0])) ** 2,
        atol=1e-4,
    )


@pytest.fixture(scope="module")
def small_g():
    g = M.Generator(
        resolution=32, ch=2, dim_z=8, shared_dim=4, num_classes=5, out_channels=1, attention="16"
    )
    z = jax.random.normal(jax.random.key(3), (4, 8))
    y = jnp.array([0, 1, 2, 3])
    v = g.init(jax.random.key(4), z, y, train=True)
    # Make CBN gains/biases clearly class dependent (init is small but non-zero already).
    return g, v, z, y


def test_conditional_bn_uses_the_class_embedding(small_g):
    g, v, z, y = small_g
    apply_v = jax.jit(lambda v, z, y: g.apply(v, z, y, train=False))
    apply = lambda z, y: apply_v(v, z, y)
    base = np.asarray(apply(z, y))
    np.testing.assert_array_equal(base, np.asarray(apply(z, y)))  # nothing changed: same output
    y2 = y.at[1].set(4)
    out = np.asarray(apply(z, y2))
    # In eval mode (running stats) samples are independent: only sample 1 changes.
    assert np.abs(out[1] - base[1]).max() > 1e-4
    np.testing.assert_allclose(out[[0, 2, 3]], base[[0, 2, 3]], atol=1e-6)
    # Changing only the shared embedding row of an unused class changes nothing.
    v3 = jax.tree.map(lambda a: a, v)
    v3["params"]["shared"]["embedding"] = v["params"]["shared"]["embedding"].at[4].add(1.0)
    np.testing.assert_array_equal(np.asarray(apply_v(v3, z, y)), base)


def test_cbn_per_class_affine():
    cbn = M.CondBN(num_classes=3)
    x = jax.random.normal(jax.random.key(5), (6, 2, 2, 4))
    y = jnp.array([0, 0, 1, 1, 2, 2])
    v = cbn.init(jax.random.key(6), x, y, train=False)
    out = np.asarray(cbn.apply(v, x, y, train=False))
    table_g = np.asarray(v["params"]["gain"]["embedding"])
    table_b = np.asarray(v["params"]["bias"]["embedding"])
    xn = np.asarray(x) / np.sqrt(1 + 1e-5)  # running stats: mean 0, var 1
    yi = np.asarray(y)
    expect = xn * (1 + table_g[yi])[:, None, None] + table_b[yi][:, None, None]
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)


def test_projection_term_is_the_explicit_inner_product():
    d = M.Discriminator(resolution=32, ch=2, num_classes=5, attention="0")
    x = jax.random.normal(jax.random.key(7), (3, 32, 32, 1))
    y = jnp.array([4, 0, 2])
    v = d.init(jax.random.key(8), x, y)
    (total, out, proj), inter = d.apply(v, x, y, parts=True, mutable=["intermediates"])
    h = np.asarray(inter["intermediates"]["features"][0])
    table = v["params"]["embed"]["embedding"]
    sigma, _ = power_iteration(table, v["spectral"]["embed"]["u"], 1e-6)
    e = np.asarray(table)[np.asarray(y)] / float(sigma)
    np.testing.assert_allclose(np.asarray(proj), np.sum(e * h, -1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(total), np.asarray(out + proj), rtol=1e-6)


def test_hinge_losses_at_known_values():
    real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 1.0])
    l_real, l_fake = losses.hinge_d(real, fake)
    assert float(l_real) == pytest.approx((0 + 0.5 + 2.0) / 3)
    assert float(l_fake) == pytest.approx((0 + 1.0 + 2.0) / 3)
    assert float(losses.hinge_g(fake)) == pytest.approx(1.0 / 3)
    t = jnp.array([1.0, 3.0, -1.0])
    total, term = dgl.generator_loss(losses.hinge_g, fake, t, 0.1)
    assert float(term) == pytest.approx(-1.0) and float(total) == pytest.approx(1 / 3 + 0.1 * -1.0)
    assert float(dgl.generator_loss(losses.hinge_g, fake, t, 0.0)[0]) == float(losses.hinge_g(fake))
    # Stage 1 (no teacher logits): the vanilla loss and a zero term.
    total, term = dgl.generator_loss(losses.hinge_g, fake, None, 0.1)
    assert float(total) == float(losses.hinge_g(fake)) and float(term) == 0.0


def test_ortho_penalty_gradient_matches_biggan_formula():
    k = jax.random.normal(jax.random.key(9), (3, 3, 4, 5))
    params = {"conv": {"kernel": k}, "shared": {"embedding": jnp.ones((3, 4))}}
    grad = jax.grad(lambda p: losses.ortho_penalty(p, 1e-2))(params)
    w = np.asarray(k).reshape(-1, 5).T  # PyTorch weight.view(out, -1) up to column order
    expect = 1e-2 * 2 * ((w @ w.T) * (1 - np.eye(5))) @ w
    np.testing.assert_allclose(
        np.asarray(grad["conv"]["kernel"]).reshape(-1, 5).T, expect, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(grad["shared"]["embedding"]), 0.0)  # blacklisted


def test_biggan128_parameter_counts_match_the_official_model():
    # google/compare_gan resnet_biggan_test asserts 70,433,988 (G) and 87,982,370 (D) for the
    # BigGAN-128 (ch 96) architecture BigGAN-PyTorch also builds.
    y = jnp.zeros((2,), jnp.int32)
    count = lambda t: int(sum(np.prod(a.shape) for a in jax.tree.leaves(t["params"])))
    g = M.Generator()
    assert (
        count(jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((2, 120)), y)))
        == 70_433_988
    )
    d = M.Discriminator()
    x = jnp.zeros((2, 128, 128, 3))
    assert count(jax.eval_shape(lambda: d.init(jax.random.key(0), x, y))) == 87_982_370
    gs = M.Generator(ch=48)
    n = count(jax.eval_shape(lambda: gs.init(jax.random.key(0), jnp.zeros((2, 120)), y)))
    assert 18.3e6 < n < 18.5e6  # the paper's "nearly 1/4" student


def test_output_bn_eps_is_always_the_official_1e5():
    """BigGAN-PyTorch's output BN is ``layers.bn(...)`` without BN_eps: eps 1e-5 whatever bn_eps
    the conditional BNs take. Eval mode with running var 0 makes eps the whole denominator."""
    kw = dict(resolution=32, ch=4, dim_z=8, shared_dim=4, num_classes=3, out_channels=1)
    kw.update(attention="0")
    z, y = jnp.ones((2, 8)), jnp.array([0, 2])
    outs = {}
    for bn_eps in (1e-5, 1e-2):
        g = M.Generator(bn_eps=bn_eps, **kw)
        v = g.init(jax.random.key(0), z, y)
        v["batch_stats"]["output_bn"]["var"] = jnp.zeros_like(v["batch_stats"]["output_bn"]["var"])
        seen = {}

        def grab(next_fun, args, kwargs, context, seen=seen):
            if context.module.name == "output_bn" and context.method_name == "__call__":
                out = next_fun(*args, **kwargs)
                seen["in"], seen["out"] = args[0], out
                return out
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(grab):
            g.apply(v, z, y, train=False)
        mean = v["batch_stats"]["output_bn"]["mean"]
        np.testing.assert_allclose(
            seen["out"], (seen["in"] - mean) / np.sqrt(1e-5), rtol=1e-4, atol=1e-4
        )
        outs[bn_eps] = seen["in"]
    # The CBNs inside the blocks do take bn_eps: the input to the output BN differs.
    assert float(jnp.max(jnp.abs(outs[1e-5] - outs[1e-2]))) > 0
