"""Converter round trip on a small pickle in the official TF StyleGAN2 layout, and refusal of
pickles that name anything beyond that format."""

import os
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.convert import stylegan2 as conv
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
