"""Converter round trip on a small pickle in the official TF StyleGAN2 layout, and refusal of
pickles that name anything beyond that format; the stylegan2-ada-pytorch converter against a
NumPy transcript of the official forward passes, and its refusals."""

import os
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.convert import stylegan2 as conv
from jaxpapers.convert import stylegan2_ada as ada
from jaxpapers.layers import stylegan2 as M
from jaxpapers.layers.stylegan2 import noise_layers

RES = 8
KW = dict(
    resolution=RES, img_channels=3, z_dim=8, w_dim=8, mapping_layers=2, fmap_base=32, fmap_max=8
)


def _to_tf_layer(p: dict, prefix: str, out: list) -> None:
    for k, v in p.items():
        out.append((f"{prefix}/{k}", np.asarray(v)))


def _generator_to_tf(params: dict, w_avg: np.ndarray):
    """Our G params -> (mapping vars, synthesis vars) with the official names and layouts."""
    mapping = []
    for name, p in params["mapping"].items():
        i = int(name[2:])
        mapping.append((f"Dense{i}/weight", np.asarray(p["weight"]) / conv.MAPPING_LR_MUL))
        mapping.append((f"Dense{i}/bias", np.asarray(p["bias"]) / conv.MAPPING_LR_MUL))
    syn = [("4x4/Const/const", np.asarray(params["synthesis"]["const"]).transpose(2, 0, 1)[None])]
    names = {"conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB"}
    for key, p in params["synthesis"].items():
        if key == "const":
            continue
        blk, layer = key.split("_")
        r = int(blk[1:])
        tf_layer = "Conv" if (r == 4 and layer == "conv1") else names[layer]
        _to_tf_layer(p, f"{r}x{r}/{tf_layer}", syn)
    # The stored noise inputs noise{j} [1, 1, r, r] in the official order (const noise mode).
    for j, (_, r) in enumerate(noise_layers(RES)):
        syn.append((f"noise{j}", np.full((1, 1, r, r), 0.5 + j, np.float32)))
    return mapping, syn, [("dlatent_avg", np.asarray(w_avg))]


def _discriminator_to_tf(params: dict):
    out = []
    names = {
        "fromrgb": "FromRGB",
        "conv0": "Conv0",
        "conv1": "Conv1_down",
        "skip": "Skip",
        "conv": "Conv",
        "fc": "Dense0",
    }
    for key, p in params.items():
        blk, layer = key.split("_")
        r = int(blk[1:])
        p = dict(p)
        if key == "b4_out":
            _to_tf_layer(p, "Output", out)
            continue
        if key == "b4_fc":
            c = params["b4_conv"]["weight"].shape[-1]
            w = np.asarray(p["weight"]).reshape(4, 4, c, -1).transpose(2, 0, 1, 3)
            p["weight"] = w.reshape(16 * c, -1)
        _to_tf_layer(p, f"{r}x{r}/{names[layer]}", out)
    return out


@pytest.fixture()
def fake_dnnlib(monkeypatch):
    """A stand-in ``dnnlib.tflib.network.Network`` so the test can write a pickle of that type."""

    class Network:
        def __init__(self, variables, components=None, static_kwargs=None):
            self._s = dict(
                version=4,
                name="net",
                static_kwargs=static_kwargs or {},
                build_module_src="",
                build_func_name="f",
                variables=variables,
                components=components or {},
            )

        def __getstate__(self):
            return self._s

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    mods = {n: types.ModuleType(n) for n in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    mods["dnnlib.tflib.network"].Network = Network
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    return Network


def _make_pickle(Network, g, d, gs, w_avg):
    def gnet(params):
        mp, syn, top = _generator_to_tf(params, w_avg)
        return Network(
            top,
            {"mapping": Network(mp), "synthesis": Network(syn)},
            {"resolution": RES, "num_channels": 3},
        )

    return pickle.dumps((gnet(g), Network(_discriminator_to_tf(d)), gnet(gs)), protocol=4)


def test_round_trip_reproduces_params_and_images(fake_dnnlib, tmp_path):
    gen, dis = M.Generator(**KW), M.Discriminator(RES, 32, 8)
    z = jax.random.normal(jax.random.key(0), (4, 8))
    g = gen.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, z)["params"]
    gs = gen.init({"params": jax.random.key(3), "noise": jax.random.key(2)}, z)["params"]
    # Non-trivial biases/strengths so that a wrong mapping cannot pass by accident.
    g = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(9), a.shape), g)
    img = gen.apply({"params": g}, z, rngs={"noise": jax.random.key(4)})
    d = dis.init(jax.random.key(5), img)["params"]
    w_avg = np.linspace(-1, 1, 8).astype(np.float32)
    data = _make_pickle(fake_dnnlib, g, d, gs, w_avg)
    tree, info = conv.convert(data)
    t = tree["teacher"]
    assert info["resolution"] == RES and info["mapping_layers"] == 2
    for ours, got in ((g, t["g"]), (gs, t["g_ema"]), (d, t["d"])):
        assert jax.tree.structure(ours) == jax.tree.structure(got)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(got), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(t["w_avg"], w_avg)
    # The official noise buffers arrive as the 'noise_const' collection, layer by layer.
    assert list(t["noise_const"]) == [name for name, _ in noise_layers(RES)]
    for j, (name, r) in enumerate(noise_layers(RES)):
        np.testing.assert_array_equal(np.asarray(t["noise_const"][name]).ravel(), 0.5 + j)
        assert np.asarray(t["noise_const"][name]).size == r * r
    # The converted networks compute the same images and logits.
    img2 = gen.apply({"params": t["g"]}, z, rngs={"noise": jax.random.key(4)})
    np.testing.assert_allclose(img, img2, atol=1e-5)
    np.testing.assert_allclose(
        dis.apply({"params": d}, img), dis.apply({"params": t["d"]}, img), atol=1e-5
    )
    # The converted file becomes an init_from checkpoint (what tools/convert_stylegan2 writes).
    pkl = tmp_path / "net.pkl"
    pkl.write_bytes(data)
    conv.save(*conv.convert_file(str(pkl)), str(tmp_path / "out"))
    assert os.path.isdir(tmp_path / "out" / "checkpoints")
    assert (tmp_path / "out" / "arch.json").exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_foreign_classes():
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load"):
        conv.load_pickle(pickle.dumps(_Evil()))
    with pytest.raises(pickle.UnpicklingError, match="Refusing"):
        conv.load_pickle(pickle.dumps((jnp.zeros(2).__class__,)))
    with pytest.raises(ValueError, match="tuple"):
        conv.load_pickle(pickle.dumps((np.zeros(2), 1, 2)))


# --------------------------------------------------------------------- stylegan2-ada-pytorch


ADA_G = dict(
    z_dim=8,
    c_dim=0,
    w_dim=8,
    img_resolution=RES,
    img_channels=3,
    mapping_kwargs={"num_layers": 2},
    synthesis_kwargs={"channel_base": 64, "channel_max": 8, "num_fp16_res": 4, "conv_clamp": 256},
)
ADA_D = dict(
    c_dim=0,
    img_resolution=RES,
    img_channels=3,
    channel_base=64,
    channel_max=8,
    num_fp16_res=4,
    conv_clamp=256,
    epilogue_kwargs={"mbstd_group_size": 4},
)
SQRT2 = np.sqrt(2.0)
F2 = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0  # the official setup_filter([1, 3, 3, 1])


def _ada_net(seed=0, g_kw=ADA_G, d_kw=ADA_D):
    """Random tensors in the official layout (names, OIHW/[out, in] shapes, buffers)."""
    kwargs = {"G": g_kw, "G_ema": g_kw, "D": d_kw}
    s = ada.settings(ada.NetworkPickle({}, kwargs, {}), "<test>")
    rng = np.random.default_rng(seed)
    tensors = {}
    for key in ada.NETWORKS:
        for name, shape in ada.official_layout(s)["D" if key == "D" else "G"].items():
            v = rng.standard_normal(shape)
            if name.endswith("resample_filter"):
                v = F2
            elif name.endswith(("bias", "noise_strength")):
                v = 0.2 * v + (1.0 if name.endswith("affine.bias") else 0.0)
            tensors[f"{key}.{name}"] = np.asarray(v, np.float32)
    return ada.NetworkPickle(tensors, kwargs, {k: "Generator" for k in kwargs}, {})


def _lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * SQRT2


def _corr(x, w, pad=0, stride=1):
    """torch.nn.functional.conv2d (a correlation) of NCHW ``x`` with OIHW ``w``."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    h, wd = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = 0
    for a in range(k):
        for b in range(k):
            patch = x[
                :, :, a : a + stride * (h - 1) + 1 : stride, b : b + stride * (wd - 1) + 1 : stride
            ]
            out = out + np.einsum("nihw,oi->nohw", patch, w[:, :, a, b])
    return out


def _fir(x, pad, up=1, down=1, gain=1.0):
    """upfirdn2d's reference: zero insertion, padding, convolution with the 2-D filter."""
    n, c, h, w = x.shape
    if up > 1:
        z = np.zeros((n, c, h * up, w * up))
        z[:, :, ::up, ::up] = x
        x = z
    x = np.pad(x, ((0, 0), (0, 0), pad, pad))
    f = (F2 * gain)[::-1, ::-1][None, None]
    y = _corr(x.reshape(n * c, 1, *x.shape[2:]), f)
    return y.reshape(n, c, *y.shape[2:])[:, :, ::down, ::down]


def _fc(x, t, name, lr_mul=1.0, act=False):
    w = t[name + ".weight"] * (lr_mul / np.sqrt(t[name + ".weight"].shape[1]))
    y = x @ w.T + t[name + ".bias"] * lr_mul
    return _lrelu(y) if act else y


def _synthesis_layer(x, wv, t, name, up=False, torgb=False, clamp=None):
    """The official SynthesisLayer / ToRGBLayer (per-sample weights, noise_mode='const'; bias_act
    clips the activated output to +-clamp)."""
    w = t[name + ".weight"]
    styles = _fc(wv, t, name + ".affine")
    if torgb:
        styles = styles / np.sqrt(np.prod(w.shape[1:]))
    ws = w[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if not torgb:
        ws = ws / np.sqrt(np.square(ws).sum(axis=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
    out = []
    for n in range(len(x)):
        if up:  # conv_transpose2d(stride 2) with the stored kernel, then the [1,3,3,1] blur
            h, k = x.shape[2], w.shape[-1]
            y = np.zeros((1, w.shape[0], 2 * h + k - 2, 2 * h + k - 2))
            for a in range(k):
                for b in range(k):
                    y[:, :, a : a + 2 * h : 2, b : b + 2 * h : 2] += np.einsum(
                        "nihw,oi->nohw", x[n : n + 1], ws[n, :, :, a, b]
                    )
            out.append(_fir(y, (1, 1), gain=4.0))
        else:
            out.append(_corr(x[n : n + 1], ws[n], pad=w.shape[-1] // 2))
    y = np.concatenate(out) + t[name + ".bias"][None, :, None, None]
    if not torgb:
        y = _lrelu(y + t[name + ".noise_const"] * t[name + ".noise_strength"])
    return y if clamp is None else np.clip(y, -clamp, clamp)


def _official_g(t, z, psi, clamp=None):
    """stylegan2-ada-pytorch's Generator.forward(z, None, psi, noise_mode='const'), NHWC."""
    x = z / np.sqrt(np.mean(np.square(z), axis=1, keepdims=True) + 1e-8)
    for i in range(ADA_G["mapping_kwargs"]["num_layers"]):
        x = _fc(x, t, f"mapping.fc{i}", 0.01, act=True)
    w = t["mapping.w_avg"] + psi * (x - t["mapping.w_avg"])
    x = np.repeat(t["synthesis.b4.const"][None], len(z), axis=0)
    x = _synthesis_layer(x, w, t, "synthesis.b4.conv1", clamp=clamp)
    img = _synthesis_layer(x, w, t, "synthesis.b4.torgb", torgb=True, clamp=clamp)
    for r in range(3, int(np.log2(RES)) + 1):
        b = f"synthesis.b{2**r}"
        x = _synthesis_layer(x, w, t, b + ".conv0", up=True, clamp=clamp)
        x = _synthesis_layer(x, w, t, b + ".conv1", clamp=clamp)
        img = _fir(img, (2, 1), up=2, gain=4.0) + _synthesis_layer(
            x, w, t, b + ".torgb", torgb=True, clamp=clamp
        )
    return img.transpose(0, 2, 3, 1)


def _conv_layer(x, t, name, down=False, act=True, gain=1.0, clamp=None):
    """The official Conv2dLayer (equalized lr; down: blur then stride 2; bias_act clips the
    output, after the gain, to +-clamp * gain)."""
    w = t[name + ".weight"] / np.sqrt(np.prod(t[name + ".weight"].shape[1:]))
    if down and w.shape[-1] == 1:
        y = _corr(_fir(x, (1, 1), down=2), w)
    elif down:
        y = _corr(_fir(x, (2, 2)), w, stride=2)
    else:
        y = _corr(x, w, pad=w.shape[-1] // 2)
    if name + ".bias" in t:
        y = y + t[name + ".bias"][None, :, None, None]
    y = (_lrelu(y) if act else y) * gain
    return y if clamp is None else np.clip(y, -clamp * gain, clamp * gain)


def _official_d(t, img, clamp=None):
    """stylegan2-ada-pytorch's resnet Discriminator.forward(img, None) on NHWC images (the skips
    are built without conv_clamp)."""
    x = _conv_layer(img.transpose(0, 3, 1, 2), t, f"b{RES}.fromrgb", clamp=clamp)
    for r in range(int(np.log2(RES)), 2, -1):
        y = _conv_layer(x, t, f"b{2**r}.skip", down=True, act=False, gain=np.sqrt(0.5))
        x = _conv_layer(x, t, f"b{2**r}.conv0", clamp=clamp)
        x = y + _conv_layer(x, t, f"b{2**r}.conv1", down=True, gain=np.sqrt(0.5), clamp=clamp)
    n, c, h, w = x.shape
    g = min(4, n)
    y = x.reshape(g, -1, 1, c, h, w)
    y = np.sqrt(np.square(y - y.mean(0)).mean(0) + 1e-8).mean(axis=(2, 3, 4))
    x = np.concatenate([x, np.tile(y.reshape(-1, 1, 1, 1), (g, 1, h, w))], axis=1)
    x = _conv_layer(x, t, "b4.conv", clamp=clamp)
    x = _fc(x.reshape(n, -1), t, "b4.fc", act=True)
    return _fc(x, t, "b4.out")[:, 0]


@pytest.mark.parametrize("clamp", [256.0, 0.5])
def test_ada_conversion_reproduces_the_official_networks(clamp):
    """Converted G_ema images (const noise, psi 1 and 0.7) and D logits equal a NumPy transcript
    of the official forward passes on the same tensors (the up-conv kernel flip, the affine
    bias offset, the mapping lr multiplier and the NCHW fc flattening included); conv_clamp
    256 (the official training's, inactive here) and 0.5 (clips most activations)."""
    net = _edit(
        _ada_net(),
        g={"synthesis_kwargs": dict(ADA_G["synthesis_kwargs"], conv_clamp=clamp)},
        d={"conv_clamp": clamp},
    )
    tree, info = ada.convert(net)
    t = tree["teacher"]
    assert info["model"] == dict(
        KW,
        mbstd_group_size=4,
        mbstd_num_features=1,
        resample_filter=[1, 3, 3, 1],
        w_avg_beta=0.995,
        conv_clamp=clamp,
    )
    per = {k: {} for k in ada.NETWORKS}
    for name, v in net.tensors.items():
        key, _, rest = name.partition(".")
        per[key][rest] = v.astype(np.float64)
    gen, dis = M.Generator(**KW, conv_clamp=clamp), M.Discriminator(RES, 32, 8, conv_clamp=clamp)
    z = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    variables = {"params": t["g_ema"], "noise_const": {"synthesis": t["noise_const"]}}
    for psi in (1.0, 0.7):
        ws = gen.apply({"params": t["g_ema"]}, z, t["w_avg"], psi, method=gen.mapping)
        img = np.asarray(gen.apply(variables, ws, "const", method=gen.synthesis))
        want = _official_g(per["G_ema"], z.astype(np.float64), psi, clamp)
        assert float(np.abs(want).max()) > 0.1
        np.testing.assert_allclose(img, want, atol=2e-4, rtol=1e-4)
        unclipped = _official_g(per["G_ema"], z.astype(np.float64), psi)
        assert (float(np.abs(unclipped - want).max()) > 0.1) == (clamp < 1)
    logits = np.asarray(dis.apply({"params": t["d"]}, img))
    want = _official_d(per["D"], img.astype(np.float64), clamp)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
    unclipped = _official_d(per["D"], img.astype(np.float64))
    assert (float(np.abs(unclipped - want).max()) > 1e-2) == (clamp < 1)
    # The raw G is converted too (its own tensors), and w_avg / the noise buffers are G_ema's.
    np.testing.assert_allclose(
        t["g"]["mapping"]["fc1"]["weight"], per["G"]["mapping.fc1.weight"].T * 0.01, rtol=1e-6
    )
    np.testing.assert_array_equal(t["w_avg"], net.tensors["G_ema.mapping.w_avg"])
    assert list(t["noise_const"]) == [name for name, _ in noise_layers(RES)]
    for name, r in noise_layers(RES):
        buf = net.tensors[f"G_ema.synthesis.{name.replace('_', '.')}.noise_const"]
        np.testing.assert_array_equal(t["noise_const"][name], buf.reshape(r, r, 1))


def _edit(net, g=None, d=None, drop=(), add=None, args=None):
    kw = {"G": dict(ADA_G, **(g or {})), "D": dict(ADA_D, **(d or {}))}
    kw["G_ema"] = kw["G"]
    tensors = {k: v for k, v in net.tensors.items() if k not in drop}
    tensors.update(add or {})
    return ada.NetworkPickle(tensors, kw, net.class_names, args or {})


REFUSALS = {
    "clamp_mismatch": (dict(d={"conv_clamp": None}), "D's conv_clamp .None. differs from G's"),
    "clamp_negative": (dict(d={"conv_clamp": -1}), "conv_clamp = -1 is not None or a number > 0"),
    "stylegan3": (dict(add={"G_ema.synthesis.L0_36_512.weight": np.ones(3)}), "StyleGAN3"),
    "conditional": (dict(g={"c_dim": 10}), "conditional network .c_dim=10"),
    "g_architecture": (
        dict(g={"synthesis_kwargs": dict(ADA_G["synthesis_kwargs"], architecture="resnet")}),
        "G synthesis architecture = 'resnet'",
    ),
    "d_architecture": (dict(d={"architecture": "orig"}), "D architecture = 'orig'"),
    "mbstd_group_1": (dict(d={"epilogue_kwargs": {"mbstd_group_size": 1}}), "mbstd_group_size = 1"),
    "unknown_setting": (dict(g={"mapping_kwargs": {"num_layers": 2, "foo": 1}}), "unknown G"),
    "d_width": (dict(d={"channel_max": 16}), "D's channel_max"),
    "positional": (dict(args={"D": [0, 8]}), "positional"),
    "extra_tensor": (dict(add={"D.b8.conv0.extra": np.ones(2)}), "D.b8.conv0.extra has no"),
    "missing_tensor": (dict(drop=("G.synthesis.b8.conv0.noise_const",)), "noise_const is missing"),
    "shape": (dict(add={"D.b4.out.bias": np.ones(2, np.float32)}), r"D.b4.out.bias has shape"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_ada_unsupported_networks_are_refused_with_one_line(case):
    edits, match = REFUSALS[case]
    with pytest.raises(ada.Unsupported, match=match) as e:
        ada.convert(_edit(_ada_net(), **edits), "net.pkl")
    assert "\n" not in str(e.value) and str(e.value).startswith("net.pkl: ")


def test_ada_widths_our_networks_cannot_hold_are_refused():
    """channel_base / 4 < channel_max: ada's D fc is channel_base/4 wide, the TF (and our) D's
    min(channel_base/2, channel_max): a valid official network with no counterpart here."""
    syn = dict(ADA_G["synthesis_kwargs"], channel_base=16)
    g, d = dict(ADA_G, synthesis_kwargs=syn), dict(ADA_D, channel_base=16)
    with pytest.raises(ada.Unsupported, match="D b4_fc/bias converts to shape"):
        ada.convert(_ada_net(g_kw=g, d_kw=d))


def test_ada_whole_batch_minibatch_std_maps_to_a_group_no_batch_reaches():
    """legacy.py's conversions of TF pickles have mbstd_group_size=None (one group = the batch):
    ours takes min(group, batch), so any group size >= the batch is the same computation."""
    d = dict(ADA_D, epilogue_kwargs={"mbstd_group_size": None})
    tree, info = ada.convert(_ada_net(d_kw=d))
    assert info["model"]["mbstd_group_size"] == ada.WHOLE_BATCH
    img = np.random.default_rng(2).standard_normal((6, RES, RES, 3)).astype(np.float32)
    whole = M.Discriminator(RES, 32, 8, mbstd_group_size=ada.WHOLE_BATCH)
    six = M.Discriminator(RES, 32, 8, mbstd_group_size=6)
    p = {"params": tree["teacher"]["d"]}
    np.testing.assert_array_equal(whole.apply(p, img), six.apply(p, img))


def test_ada_stylegan3_repository_flat_kwargs():
    """stylegan3's networks_stylegan2.Generator takes the synthesis kwargs flat (and tracks w_avg
    with beta 0.998 by default): the same tensors convert to the same trees."""
    flat = {k: v for k, v in ADA_G.items() if k != "synthesis_kwargs"}
    flat.update(ADA_G["synthesis_kwargs"], fused_modconv_default="inference_only")
    net = _ada_net()
    kwargs = {"G": flat, "G_ema": flat, "D": ADA_D}
    tree, info = ada.convert(ada.NetworkPickle(net.tensors, kwargs, net.class_names, {}))
    want_tree, want_info = ada.convert(net)
    assert info["model"] == dict(want_info["model"], w_avg_beta=0.998)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(want_tree), strict=True):
        np.testing.assert_array_equal(a, b)
