"""Numerics of StRA's operations against naive per-position numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.stra.attention import (
    HubRouting,
    LocalStructuralAttention,
    diversity_loss,
    routing_matrix,
)
from jaxpapers.methods.stra.model import StRAResNet, count_params


def _randomise_stats(variables, seed):
    """Non-trivial BN running stats and biases so eval mode exercises every term."""
    r = np.random.default_rng(seed)

    def leaf(path, x):
        name = jax.tree_util.keystr(path)
        if name.endswith("['var']"):
            return jnp.asarray(r.uniform(0.5, 1.5, x.shape), x.dtype)
        if name.endswith(("['mean']", "['bias']")):
            return jnp.asarray(r.normal(0, 0.2, x.shape), x.dtype)
        if name.endswith("['scale']"):
            return jnp.asarray(r.uniform(0.5, 1.5, x.shape), x.dtype)
        return x

    return jax.tree_util.tree_map_with_path(leaf, variables)


def _gconv(x, conv, groups):
    """Grouped 1x1 conv in numpy; x (..., Cin), kernel (1,1,Cin/G,Cout)."""
    k = np.asarray(conv["kernel"])[0, 0]
    cin, cout = k.shape[0], k.shape[1] // groups
    outs = [
        x[..., g * cin : (g + 1) * cin] @ k[:, g * cout : (g + 1) * cout] for g in range(groups)
    ]
    y = np.concatenate(outs, -1)
    return y + np.asarray(conv["bias"]) if "bias" in conv else y


def _bn(x, p, s):
    return (x - s["mean"]) / np.sqrt(np.asarray(s["var"]) + 1e-5) * p["scale"] + p["bias"]


def _naive_local(x, v, g, k, s, d):
    """Y_g(p) = sum_o softmax_o(m_g(sp,o) + nu_g(sp+o)) V_g(sp+o), zero outside the image."""
    p, st = v["params"], v["batch_stats"]
    t = np.tanh(_bn(_gconv(x, p["mask_conv1"], g), p["mask_bn1"], st["mask_bn1"]))
    mask = _bn(_gconv(t, p["mask_conv2"], g), p["mask_bn2"], st["mask_bn2"])
    val = _gconv(x, p["value_conv"], g)
    b, h, w, c = val.shape
    n, pad = c // g, ((k - 1) * d + 2 - s) // 2
    ho, wo = (h + 2 * pad - d * (k - 1) - 1) // s + 1, (w + 2 * pad - d * (k - 1) - 1) // s + 1
    out = np.zeros((b, ho, wo, c))
    for bi in range(b):
        for i in range(ho):
            for j in range(wo):
                for hd in range(g):
                    logits, vals = [], []
                    for di in range(k):
                        for dj in range(k):
                            qi, qj = i * s + di * d - pad, j * s + dj * d - pad
                            inside = 0 <= qi < h and 0 <= qj < w
                            nu = mask[bi, qi, qj, hd] if inside else 0.0
                            m = mask[bi, i * s, j * s, g + hd * k * k + di * k + dj]
                            logits.append(m + nu)
                            vals.append(
                                val[bi, qi, qj, hd * n : (hd + 1) * n] if inside else np.zeros(n)
                            )
                    wgt = np.exp(np.array(logits) - max(logits))
                    wgt /= wgt.sum()
                    out[bi, i, j, hd * n : (hd + 1) * n] = wgt @ np.array(vals)
    return out


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_local_attention_matches_naive_loop(stride, dilation):
    g, k = 4, 3
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 16)).astype(np.float32)
    mod = LocalStructuralAttention(
        features=16,
        groups=g,
        kernel_size=k,
        stride=stride,
        dilation=dilation,
        ratio=2,
        use_hub=False,
    )
    v = _randomise_stats(mod.init(jax.random.key(1), jnp.asarray(x), train=False), 2)
    y, div, pi = mod.apply(v, jnp.asarray(x), train=False)
    ref = _naive_local(x.astype(np.float64), jax.device_get(v), g, k, stride, dilation)
    assert pi is None and np.all(np.asarray(div) == 0)
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, atol=2e-5, rtol=1e-4)


def test_hub_routing_matches_naive():
    g, b, h, w, c = 4, 2, 3, 4, 16
    n = c // g
    x = np.random.default_rng(3).normal(size=(b, h, w, c)).astype(np.float32)
    mod = HubRouting(groups=g, pool_hidden_per_group=2)
    v = mod.init(jax.random.key(0), jnp.asarray(x), train=False)
    v = jax.device_get(_randomise_stats(v, 4))
    y, div, pi = mod.apply(v, jnp.asarray(x), train=False)
    p, st = v["params"], v["batch_stats"]
    t = np.tanh(_bn(_gconv(x, p["gap_conv1"], g), p["gap_bn1"], st["gap_bn1"]))
    t = _bn(_gconv(t, p["gap_conv2"], g), p["gap_bn2"], st["gap_bn2"]).reshape(b, h * w, g)
    e = np.exp(t - t.max(1, keepdims=True))
    pool = e / e.sum(1, keepdims=True)
    xs = x.reshape(b, h * w, g, n)
    ref = np.zeros_like(xs)
    for bi in range(b):
        z = np.stack([pool[bi, :, hd] @ xs[bi, :, hd] for hd in range(g)])  # hubs (G, n)
        gate = 1 / (1 + np.exp(-_bn(np.einsum("gn,pgn->pg", z, xs[bi]), p["bn"], st["bn"])))
        y1 = xs[bi] + gate[..., None] * z[None]
        gram = z @ z.T
        gram = gram / np.linalg.norm(gram, axis=1, keepdims=True)
        r = np.exp(np.sqrt(g) * gram)
        r /= r.sum(1, keepdims=True)
        z2 = r @ z
        gate2 = 1 / (1 + np.exp(-_bn(np.einsum("gn,pgn->pg", z2, y1), p["bn2"], st["bn2"])))
        ref[bi] = y1 + gate2[..., None] * z2[None]
    np.testing.assert_allclose(np.asarray(y), ref.reshape(b, h, w, c), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(div), g - pool.max(-1).sum(-1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(pi).reshape(b, h * w, g).sum(1), 1.0, atol=1e-5)


def test_diversity_loss_extremes():
    g, p = 4, 8
    disjoint = np.zeros((1, p, g), np.float32)
    for hd in range(g):  # head hd spreads over positions 2hd, 2hd+1 only
        disjoint[0, 2 * hd : 2 * hd + 2, hd] = 0.5
    same = np.zeros((1, p, g), np.float32)
    same[0, 3, :] = 1.0
    uniform = np.full((1, p, g), 1.0 / p, np.float32)
    np.testing.assert_allclose(diversity_loss(jnp.asarray(disjoint)), [0.0], atol=1e-6)
    np.testing.assert_allclose(diversity_loss(jnp.asarray(same)), [g - 1.0], atol=1e-6)
    np.testing.assert_allclose(diversity_loss(jnp.asarray(uniform)), [g - 1.0], atol=1e-6)


def test_routing_rows_sum_to_one_and_finite_for_zero_hubs():
    z = jax.random.normal(jax.random.key(0), (3, 8, 16))
    r = routing_matrix(z)
    np.testing.assert_allclose(np.asarray(r.sum(-1)), 1.0, atol=1e-6)
    assert np.all(np.asarray(r) > 0)
    r0 = routing_matrix(jnp.zeros((1, 8, 16)))  # normalise with eps: uniform routing, no NaN
    np.testing.assert_allclose(np.asarray(r0), 1.0 / 8, atol=1e-6)


def _nparams(**kw):
    m = StRAResNet(**kw)
    v = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)), train=False))
    return count_params(v["params"])


def test_parameter_counts_match_formulas():
    plain = _nparams(num_classes=1000, block="plain", neck_dim=0, last_stride=2)
    assert plain == 25_557_032  # torchvision resnet50
    c, g, r, k2 = 512, 8, 4, 9
    stra_op = (
        c * (c // r) // g
        + c // r
        + 2 * (c // r)  # mask conv1 + bias + BN
        + (c // r) // g * g * (1 + k2)
        + g * (1 + k2)
        + 2 * g * (1 + k2)  # conv2 + BN
        + c * c // g  # value conv
        + c * 8 * g // g
        + 8 * g
        + 2 * 8 * g
        + 8 * g // g * g
        + g
        + 2 * g  # pooling branch
        + 2 * g
        + 2 * g
    )  # the two gate BNs
    stra = _nparams(num_classes=1000, block="stra", neck_dim=0, last_stride=2)
    assert stra == plain - 3 * 9 * c * c + 3 * stra_op
    # The official re-ID StRA-ResNet-50 (751 Market-1501 ids) has 18,006,823 parameters (counted
    # with torch on shenao-zhang/StRA models/StRARes.py, see README).
    assert _nparams(num_classes=751) == 18_006_823
