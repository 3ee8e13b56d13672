"""layers.conv: kernel gradients as matmuls equal XLA's convolution gradients (float32 rounding)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from jaxpapers.layers import conv, resnet

DN = ("NHWC", "HWIO", "NHWC")


def _loss(fn, strides, padding, **kw):
    def loss(x, w, t):
        y = fn(x, w, strides, padding, dimension_numbers=DN, **kw)
        return jnp.sum(jnp.sin(y) * t)  # a non-uniform output gradient

    return loss


@pytest.mark.parametrize(
    "hw, k, cin, cout, stride, padding",
    [
        (8, 3, 3, 5, 1, ((1, 1), (1, 1))),
        (7, 3, 4, 6, 2, ((1, 1), (1, 1))),  # odd size, stride 2: the last row/col unused
        (8, 1, 4, 6, 2, "SAME"),  # PreActBlock's 1x1 stride-2 shortcut
        (9, 3, 2, 3, (2, 1), ((0, 2), (1, 0))),  # asymmetric strides and padding
        (6, 5, 2, 3, 1, "VALID"),
    ],
)
def test_forward_and_gradients_equal_lax(hw, k, cin, cout, stride, padding):
    r = np.random.default_rng(0)
    x = jnp.asarray(r.standard_normal((2, hw, hw, cin)), jnp.float32)
    w = jnp.asarray(r.standard_normal((k, k, cin, cout)), jnp.float32)
    strides = (stride, stride) if isinstance(stride, int) else stride
    ref_y = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)
    t = jnp.asarray(r.standard_normal(ref_y.shape), jnp.float32)
    y = jax.jit(
        lambda x, w: conv.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)
    )(x, w)
    np.testing.assert_array_equal(y, ref_y)  # the forward is XLA's own convolution
    ref = jax.grad(_loss(lax.conv_general_dilated, strides, padding), (0, 1))(x, w, t)
    got = jax.jit(jax.grad(_loss(conv.conv_general_dilated, strides, padding), (0, 1)))(x, w, t)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-5, atol=1e-5)


def test_dilated_and_grouped_convs_fall_back_to_lax():
    r = np.random.default_rng(1)
    x = jnp.asarray(r.standard_normal((2, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(r.standard_normal((3, 3, 2, 4)), jnp.float32)
    t = jnp.asarray(r.standard_normal((2, 8, 8, 4)), jnp.float32)
    pad = ((2, 2), (2, 2))
    kw = dict(rhs_dilation=(2, 2), feature_group_count=2)
    ref = jax.grad(_loss(lax.conv_general_dilated, (1, 1), pad, **kw), (0, 1))(x, w, t)
    got = jax.grad(_loss(conv.conv_general_dilated, (1, 1), pad, **kw), (0, 1))(x, w, t)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_second_order_gradient_matches_lax():
    """The custom backward is itself differentiable (input-gradient penalties, grad of grad)."""
    r = np.random.default_rng(2)
    x = jnp.asarray(r.standard_normal((2, 6, 6, 3)), jnp.float32)
    w = jnp.asarray(r.standard_normal((3, 3, 3, 4)), jnp.float32)
    t = jnp.asarray(r.standard_normal((2, 3, 3, 4)), jnp.float32)

    def penalty(fn):
        grad_x = jax.grad(_loss(fn, (2, 2), ((1, 1), (1, 1))))
        return jax.grad(lambda w: jnp.sum(grad_x(x, w, t) ** 2))(w)

    np.testing.assert_allclose(
        penalty(conv.conv_general_dilated), penalty(lax.conv_general_dilated), rtol=1e-4, atol=1e-4
    )


def test_preact_resnet_mm_grad_same_params_loss_and_gradients():
    """A two-stage PreActResNet (stride-2 block with its 1x1 shortcut): same parameter tree, same
    loss, gradients equal to float32 rounding relative to each tensor's scale."""
    x = jnp.asarray(np.random.default_rng(3).random((8, 12, 12, 3)), jnp.float32)
    y = jnp.arange(8) % 10
    models = {c: resnet.PreActResNet(10, 4, (1, 1), conv=c) for c in ("lax", "mm_grad")}
    v = models["lax"].init(jax.random.key(0), x, train=False)
    v2 = models["mm_grad"].init(jax.random.key(0), x, train=False)
    assert jax.tree.structure(v) == jax.tree.structure(v2)  # same parameter names: checkpoints load
    jax.tree.map(np.testing.assert_array_equal, v, v2)

    def loss_and_grads(model):
        def loss(params):
            logits, _ = model.apply(
                {"params": params, "batch_stats": v["batch_stats"]},
                x,
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

        return jax.jit(jax.value_and_grad(loss))(v["params"])

    ref_l, ref_g = loss_and_grads(models["lax"])
    got_l, got_g = loss_and_grads(models["mm_grad"])
    np.testing.assert_allclose(got_l, ref_l, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(ref_g), strict=True):
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(b))) + 1e-7


def test_conv_option_resolves_on_the_host():
    assert resnet.conv_fn("auto") is (
        conv.conv_general_dilated if jax.default_backend() == "cpu" else None
    )
    assert resnet.conv_fn("lax") is None  # flax's default, lax.conv_general_dilated
    with pytest.raises(ValueError, match="conv must be one of"):
        resnet.conv_fn("im2col")
