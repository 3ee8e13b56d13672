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


# ---- Polyphase resampling equals the zero-insertion / subsample forms it replaces (values and
# gradients, float32 rounding), written here with plain lax ops as the reference.

_DN = ("NHWC", "HWIO", "NHWC")


def _zero_insert_upfirdn2d(x, f, up, pad, gain):
    px0, px1, py0, py1 = pad
    cfg = [(0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)]
    x = jax.lax.pad(x, 0.0, cfg)
    f2 = jnp.asarray(np.outer(f, f) * gain)[::-1, ::-1, None, None]
    c = x.shape[-1]
    k = jnp.tile(f2, (1, 1, 1, c))  # Depthwise true convolution with the FIR filter.
    return jax.lax.conv_general_dilated(
        x, k, (1, 1), "VALID", dimension_numbers=_DN, feature_group_count=c
    )


def _zero_insert_conv_up(x, w, f):
    """Stride-2 transposed conv by explicit zero insertion, then the [1,3,3,1] blur (gain 4)."""
    kh = w.shape[0]
    cfg = [(0, 0, 0), (kh - 1, kh - 1, 1), (kh - 1, kh - 1, 1), (0, 0, 0)]
    y = jax.lax.conv_general_dilated(jax.lax.pad(x, 0.0, cfg), w, (1, 1), "VALID",
                                     dimension_numbers=_DN)  # fmt: skip
    p = (f.shape[0] - 2) - (kh - 1)
    p0, p1 = (p + 1) // 2 + 1, p // 2 + 1
    return _zero_insert_upfirdn2d(y, f, 1, (p0, p1, p0, p1), 4.0)


def _subsample_conv_down(x, w, f):
    kh = w.shape[0]
    p = (f.shape[0] - 2) + (kh - 1)
    p0, p1 = (p + 1) // 2, p // 2
    x = _zero_insert_upfirdn2d(x, f, 1, (p0, p1, p0, p1), 1.0)
    return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DN)[:, ::2, ::2]


def _assert_same_with_grads(fast, ref, args, tol=2e-5):
    """Same outputs and same gradients of a random projection w.r.t. every argument."""
    out_fast, out_ref = fast(*args), ref(*args)
    assert out_fast.shape == out_ref.shape
    scale = float(jnp.max(jnp.abs(out_ref)))
    np.testing.assert_allclose(out_fast, out_ref, atol=tol * scale, rtol=0)
    probe = jax.random.normal(jax.random.key(7), out_ref.shape)
    argnums = tuple(range(len(args)))
    g_fast = jax.grad(lambda *a: jnp.sum(fast(*a) * probe), argnums)(*args)
    g_ref = jax.grad(lambda *a: jnp.sum(ref(*a) * probe), argnums)(*args)
    for a, b in zip(g_fast, g_ref, strict=True):
        np.testing.assert_allclose(a, b, atol=tol * float(jnp.max(jnp.abs(b))), rtol=0)


@pytest.mark.parametrize(
    "cin,cout,k,size", [(3, 5, 3, 4), (16, 8, 3, 5), (32, 32, 3, 8), (8, 3, 1, 6)]
)
def test_modulated_conv_up_polyphase_equals_zero_insertion(cin, cout, k, size):
    """Modulated up-sampling conv (3x3 conv0_up; k=1 also exercises empty phases)."""
    rng = np.random.default_rng(cin + k)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, cin)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)).astype(np.float32))
    s = jnp.asarray(rng.normal(size=(2, cin)).astype(np.float32) + 1.0)
    f = ops.setup_filter()

    def ref(x, w, s):  # modulated_conv2d with the reference up-sampling conv substituted.
        y = _zero_insert_conv_up(x * s[:, None, None, :], w, f)
        d = jax.lax.rsqrt(jnp.square(s) @ jnp.sum(jnp.square(w), axis=(0, 1)) + 1e-8)
        return y * d[:, None, None, :]

    fast = lambda x, w, s: ops.modulated_conv2d(x, w, s, True, True, f)
    _assert_same_with_grads(fast, ref, (x, w, s))


@pytest.mark.parametrize("channels,size", [(1, 4), (3, 8), (12, 5)])
def test_skip_upsample2d_polyphase_equals_zero_insertion(channels, size):
    """The ToRGB skip path: img = upsample2d(img) + torgb(x)."""
    rng = np.random.default_rng(channels)
    img = jnp.asarray(rng.normal(size=(2, size, size, channels)).astype(np.float32))
    f = ops.setup_filter()
    ref = lambda x: _zero_insert_upfirdn2d(x, f, 2, (2, 1, 2, 1), 4.0)
    _assert_same_with_grads(lambda x: ops.upsample2d(x, f), ref, (img,))


@pytest.mark.parametrize("cin,cout,k", [(3, 4, 3), (16, 32, 3), (8, 8, 1)])
def test_conv_down_polyphase_equals_stride1_then_subsample(cin, cout, k):
    rng = np.random.default_rng(cout + k)
    x = jnp.asarray(rng.normal(size=(2, 8, 10, cin)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)).astype(np.float32))
    f = ops.setup_filter()
    fast = lambda x, w: ops.conv2d_resample(x, w, f, down=True)
    _assert_same_with_grads(fast, lambda x, w: _subsample_conv_down(x, w, f), (x, w))


def test_polyphase_up_second_order_gradients_match():
    """Path-length regularization differentiates G's gradient again: the double backward too."""
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 6)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 6, 4)).astype(np.float32))
    f = ops.setup_filter()

    def penalty(conv):
        def pen(w):
            g = jax.grad(lambda x: jnp.sum(jnp.square(conv(x, w))))(x)
            return jnp.sum(jnp.square(g))

        return jax.grad(pen)(w)

    got = penalty(lambda x, w: ops.conv2d_resample(x, w, f, up=True))
    ref = penalty(lambda x, w: _zero_insert_conv_up(x, w, f))
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.parametrize(
    "k,pad",
    [(3, ((1, 1), (1, 1))), (2, ((1, 1), (0, 0))), (1, ((0, 0), (0, 0))), (2, ((1, 0), (0, 1)))],
)
def test_conv2d_matmul_weight_grad_equals_native_conv_to_second_order(k, pad):
    """`ops.conv2d` (weight gradient as per-tap matmuls on CPU) against XLA's own convolution:
    values, first-order gradients and the double backward R1 / path length take."""
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, 3, 4)).astype(np.float32))
    native = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    ours = lambda x, w: ops.conv2d(x, w, pad)

    def second_order(conv):
        def pen(x, w):
            g = jax.grad(lambda x: jnp.sum(jnp.sin(conv(x, w))))(x)
            return jnp.sum(jnp.square(g))

        return jax.grad(pen, (0, 1))(x, w)

    def first_order(conv):
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), (0, 1))(x, w)

    np.testing.assert_allclose(ours(x, w), native(x, w), atol=1e-5)
    pairs = [*zip(first_order(ours), first_order(native), strict=True)]
    pairs += zip(second_order(ours), second_order(native), strict=True)
    for got, ref in pairs:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


def test_networks_with_matmul_weight_grads_equal_native_convs(monkeypatch):
    """Whole tiny G and D (polyphase up/down convs included): the G loss gradient and the R1
    gradient (double backward) with `conv2d`'s matmul weight gradients equal those with XLA's
    native convolution substituted, to float32 rounding; the parameter trees are the same."""
    from jaxpapers.layers import stylegan2 as sg

    g_net = sg.Generator(8, 3, 16, 16, 2, 64, 8)
    d_net = sg.Discriminator(8, 64, 8, mbstd_group_size=2)
    z = jax.random.normal(jax.random.key(0), (4, 16))
    reals = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    g = g_net.init({"params": jax.random.key(2), "noise": jax.random.key(3)}, z)["params"]
    d = d_net.init(jax.random.key(4), reals)["params"]

    def grads():
        def g_loss(gp):
            fake = g_net.apply({"params": gp}, z, rngs={"noise": jax.random.key(5)})
            return jnp.mean(jax.nn.softplus(-d_net.apply({"params": d}, fake)))

        def r1(dp):
            gx = jax.grad(lambda x: jnp.sum(d_net.apply({"params": dp}, x)))(reals)
            return jnp.mean(jnp.sum(jnp.square(gx), axis=(1, 2, 3)))

        return jax.grad(g_loss)(g), jax.grad(r1)(d)

    ours = grads()
    native = lambda x, w, padding: jax.lax.conv_general_dilated(
        x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    monkeypatch.setattr(ops, "_conv_s1", native)
    ref = grads()
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        scale = float(jnp.max(jnp.abs(want))) + 1e-12
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
