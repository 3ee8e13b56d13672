"""Numerics of the shared StyleGAN2 ops against naive NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.layers import stylegan2_ops as ops


def naive_upfirdn2d(x, f1, up, down, pad, gain=1.0):
    """Definition: zero-insert, pad/crop, true 2-D convolution, subsample (loops, float64)."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    f = np.outer(f1, f1) * gain
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    big = np.zeros((n, h * up + max(py0, 0) + max(py1, 0), w * up + max(px0, 0) + max(px1, 0), c))
    big[:, max(py0, 0) : max(py0, 0) + h * up, max(px0, 0) : max(px0, 0) + w * up] = u
    hh, ww = big.shape[1], big.shape[2]
    big = big[:, max(-py0, 0) : hh - max(-py1, 0), max(-px0, 0) : ww - max(-px1, 0)]
    fh, fw = f.shape
    oh, ow = big.shape[1] - fh + 1, big.shape[2] - fw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            win = big[:, i : i + fh, j : j + fw]  # convolution = correlation with flipped filter
            out[:, i, j] = np.einsum("nabc,ab->nc", win, f[::-1, ::-1])
    return out[:, ::down, ::down]


def naive_conv(x, w, pad):
    """Cross-correlation NHWC x HWIO, stride 1, symmetric zero padding."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    oh, ow = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = np.einsum("nabc,abco->no", x[:, i : i + k, j : j + k], w)
    return out


@pytest.mark.parametrize(
    "up,down,pad",
    [(1, 1, (1, 2, 0, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 2, (-1, 0, 1, -1))],
)
def test_upfirdn2d_matches_naive(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    f = np.array([1.0, 2.0, 5.0, 1.0], np.float32)  # Asymmetric: catches a missing flip.
    got = ops.upfirdn2d(jnp.asarray(x), f, up, down, pad, gain=3.0)
    np.testing.assert_allclose(got, naive_upfirdn2d(x, f, up, down, pad, 3.0), atol=1e-4)


def test_up_downsample_shapes_and_dc_gain():
    f = ops.setup_filter()
    np.testing.assert_allclose(f, [0.125, 0.375, 0.375, 0.125])
    x = jnp.ones((1, 8, 8, 2))
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    # A constant image keeps its value away from the zero-padded border.
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1.0, atol=1e-6)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.0, atol=1e-6)


def test_conv2d_resample_up_is_transposed_conv_then_blur():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    f = ops.setup_filter()
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), f, up=True)
    # Reference: zero insertion (stride-2 transposed conv), full padding, correlation, blur.
    u = np.zeros((2, 7, 7, 3))
    u[:, ::2, ::2] = x
    t = naive_conv(u, w, pad=2)  # 9x9 = 2H+1
    ref = naive_upfirdn2d(t, f, 1, 1, (1, 1, 1, 1), gain=4.0)
    assert got.shape == (2, 8, 8, 5)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_conv2d_resample_down_is_blur_then_strided_conv():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    f = ops.setup_filter()
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), f, down=True)
    blurred = naive_upfirdn2d(x, f, 1, 1, (2, 2, 2, 2))
    ref = naive_conv(blurred, w, pad=0)[:, ::2, ::2]
    assert got.shape == (1, 4, 4, 4)
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("demod,up", [(True, False), (False, False), (True, True)])
def test_modulated_conv_equals_explicit_per_sample_weights(demod, up):
    rng = np.random.default_rng(3)
    n, cin, cout = 3, 4, 5
    x = rng.normal(size=(n, 6, 6, cin)).astype(np.float32)
    w = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
    s = rng.normal(size=(n, cin)).astype(np.float32) + 1.0
    f = ops.setup_filter()
    got = ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), demod, up, f)
    for i in range(n):  # StyleGAN2 Eq. 1 and 3, one sample at a time with its own kernel.
        wi = w * s[i][None, None, :, None]
        if demod:
            wi = wi / np.sqrt(np.sum(wi**2, axis=(0, 1, 2), keepdims=True) + 1e-8)
        ref = ops.conv2d_resample(jnp.asarray(x[i : i + 1]), jnp.asarray(wi), f, up=up)
        np.testing.assert_allclose(got[i : i + 1], ref, atol=1e-4, rtol=1e-4)


def test_equalized_lr_runtime_scaling():
    x = jax.random.normal(jax.random.key(0), (7, 50))
    layer = ops.EqualDense(30, lr_mul=0.01, bias_init=0.5, act="linear")
    p = layer.init(jax.random.key(1), x)["params"]
    # Stored at N(0, 1)/lr_mul; run-time weight is stored * lr_mul / sqrt(fan_in).
    assert abs(float(jnp.std(p["weight"])) * 0.01 - 1.0) < 0.1
    ref = x @ (p["weight"] * 0.01 / math.sqrt(50)) + p["bias"] * 0.01
    np.testing.assert_allclose(layer.apply({"params": p}, x), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["bias"], 0.5)
    conv = ops.EqualConv2d(4, 3, act="lrelu")
    xi = jax.random.normal(jax.random.key(2), (2, 5, 5, 6))
    pc = conv.init(jax.random.key(3), xi)["params"]
    lin = naive_conv(np.asarray(xi), np.asarray(pc["weight"]) / math.sqrt(54), 1)
    ref = np.where(lin > 0, lin, 0.2 * lin) * math.sqrt(2)
    np.testing.assert_allclose(conv.apply({"params": pc}, xi), ref, atol=1e-4)


def test_minibatch_std_matches_loop():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 3, 3, 4)).astype(np.float32)
    got = np.asarray(ops.minibatch_std(jnp.asarray(x), group_size=4))
    assert got.shape == (8, 3, 3, 5)
    m = 8 // 4
    for i in range(8):  # Sample i shares statistics with samples i % M, i % M + M, ...
        members = x[(i % m) :: m]
        ref = np.sqrt(members.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(got[i, :, :, -1], ref, rtol=1e-5)
    np.testing.assert_array_equal(got[..., :4], x)
