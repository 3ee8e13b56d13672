"""StyleGAN2 noise inputs (layers.stylegan2): the const mode of the official networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.layers import stylegan2 as sg
from jaxpapers.layers import stylegan2_ops as ops

KW = dict(
    resolution=8, img_channels=1, z_dim=8, w_dim=8, mapping_layers=2, fmap_base=32, fmap_max=4
)


@pytest.fixture(scope="module")
def gen():
    g = sg.Generator(**KW)
    z = jax.random.normal(jax.random.key(0), (3, 8))
    v = g.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, z)
    assert set(v) == {"params"}  # The default (random) mode stores no buffers.
    # Non-zero noise strengths, so that the noise shows in the images.
    p = jax.tree.map(lambda a: a + 0.5, v["params"])
    return g, p, z


def test_const_noise_equals_the_official_layer_formula():
    """At 4x4 (one noisy layer): lrelu(modconv(const) + buffer * strength + bias) -> ToRGB."""
    net = sg.SynthesisNetwork(resolution=4, img_channels=1, fmap_base=32, fmap_max=4)
    ws = jax.random.normal(jax.random.key(0), (2, sg.num_ws(4), 8))
    p = net.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, ws)["params"]
    p = jax.tree.map(lambda a: a + 0.3, p)
    buf = sg.noise_const_buffers(jax.random.key(3), 4)
    got = net.apply({"params": p, "noise_const": buf}, ws, "const")

    def styles(q, w):
        return w @ (q["mod_weight"] / np.sqrt(w.shape[-1])) + q["mod_bias"] + 1.0

    c, t = p["b4_conv1"], p["b4_torgb"]
    x = jnp.broadcast_to(p["const"][None], (2,) + p["const"].shape)
    wt = c["weight"] / np.sqrt(c["weight"].shape[2] * 9)
    x = ops.modulated_conv2d(x, wt, styles(c, ws[:, 0]))
    x = x + buf["b4_conv1"][None] * c["noise_strength"] + c["bias"]
    x = jax.nn.leaky_relu(x, 0.2) * np.sqrt(2.0)
    wr = t["weight"] / np.sqrt(t["weight"].shape[2])
    want = ops.modulated_conv2d(x, wr, styles(t, ws[:, 1]), demodulate=False) + t["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_const_noise_is_fixed_per_layer_and_selected_by_the_flag(gen):
    g, p, z = gen
    buf = {"synthesis": sg.noise_const_buffers(jax.random.key(7), 8)}
    zz = jnp.concatenate([z[:1], z[:1]])  # Two identical latents in one batch.
    a = g.apply({"params": p, "noise_const": buf}, zz, noise_mode="const")
    b = g.apply({"params": p, "noise_const": buf}, zz, noise_mode="const")
    np.testing.assert_array_equal(a, b)
    # The same buffers for every sample (rows of one batched conv round alike to ~1e-6).
    np.testing.assert_allclose(a[0], a[1], rtol=1e-5, atol=1e-5)
    r = g.apply({"params": p}, zz, rngs={"noise": jax.random.key(3)})
    assert float(jnp.abs(r[0] - r[1]).max()) > 1e-3  # Random mode: per-sample noise (default).
    none = g.apply({"params": p}, zz, noise_mode="none")
    assert float(jnp.abs(a - none).max()) > 1e-3
    # Zero buffers: exactly the no-noise image (up to the order of two float additions).
    zero = jax.tree.map(jnp.zeros_like, buf)
    np.testing.assert_allclose(
        g.apply({"params": p, "noise_const": zero}, zz, noise_mode="const"), none, atol=1e-5
    )
    other = {"synthesis": sg.noise_const_buffers(jax.random.key(8), 8)}
    c = g.apply({"params": p, "noise_const": other}, zz, noise_mode="const")
    assert float(jnp.abs(a - c).max()) > 1e-3
    with pytest.raises(ValueError, match="noise_const"):
        g.apply({"params": p}, zz, noise_mode="const")
    with pytest.raises(ValueError, match="noise_mode"):
        g.apply({"params": p}, zz, noise_mode="fixed")


def test_official_buffers_map_to_our_layers_in_order():
    # TF G_synthesis: noise{j} [1, 1, r, r] for layers 4x4/Conv, 8x8/Conv0_up, 8x8/Conv1, ...
    res = [4, 8, 8, 16, 16]
    tf = [np.full((1, 1, r, r), j, np.float32) for j, r in enumerate(res)]
    out = sg.noise_const_from_official(tf, 16)
    names = ["b4_conv1", "b8_conv0", "b8_conv1", "b16_conv0", "b16_conv1"]
    assert list(out) == names == [n for n, _ in sg.noise_layers(16)]
    for j, (n, r) in enumerate(zip(names, res, strict=True)):
        assert out[n].shape == (r, r, 1) and np.all(out[n] == j)
    # PyTorch noise_const buffers are [r, r].
    torch_out = sg.noise_const_from_official([b[0, 0] for b in tf], 16)
    for n in names:
        np.testing.assert_array_equal(torch_out[n], out[n])
    with pytest.raises(ValueError, match="Expected 5"):
        sg.noise_const_from_official(tf[:4], 16)
    with pytest.raises(ValueError, match="b8_conv0"):
        sg.noise_const_from_official([tf[0], tf[0]] + tf[2:], 16)
