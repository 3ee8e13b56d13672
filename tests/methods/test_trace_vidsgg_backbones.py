"""TRACE backbones: ResNet-50-DC5 / I3D-NL-R50 structure (parameter counts by formula), the
non-local block against NumPy, the converters from official state-dict layouts (round trips
through torch.save-format files written without torch, BN folding, clear errors), and the
``resnet`` backbone wired into the relation model."""

import collections
import io
import pickle
import sys
import types
import zipfile

import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.layers import resnet
from jaxpapers.methods.trace_vidsgg import backbones, convert, inputs, model, steps

TINY = dict(stage_sizes=(1, 2, 1, 1), width=4)


# ----------------------------------------------------------------------------- formulas ----


def resnet50_count(num_classes=1000):
    """ResNet-50 parameters by formula (convs + 2 per norm channel + fc)."""
    n = 3 * 64 * 49 + 2 * 64
    cin = 64
    for s, blocks in enumerate((3, 4, 6, 3)):
        p = 64 * 2**s
        for j in range(blocks):
            n += cin * p + 2 * p + p * p * 9 + 2 * p + p * 4 * p + 8 * p
            if j == 0:
                n += cin * 4 * p + 8 * p
            cin = 4 * p
    return n + (2048 * num_classes + num_classes if num_classes else 0)


def i3d_nl_r50_count():
    """I3D-NL ResNet-50 (mmaction2 config) parameters by formula."""
    n = 3 * 64 * 5 * 49 + 2 * 64
    cin = 64
    for s, blocks in enumerate((3, 4, 6, 3)):
        p = 64 * 2**s
        for j in range(blocks):
            kt = 3 if backbones.I3D_INFLATE[s][j] else 1
            n += cin * p * kt + 2 * p + p * p * 9 + 2 * p + p * 4 * p + 8 * p
            if j == 0:
                n += cin * 4 * p + 8 * p
            cin = 4 * p
            if backbones.I3D_NON_LOCAL[s][j]:
                c, i = 4 * p, 2 * p
                n += 3 * (c * i + i) + i * c + 2 * c  # g, theta, phi (+bias); conv_out + BN
    return n


def _count(module, shape):
    v = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape)))
    return sum(x.size for x in jax.tree.leaves(v["params"]))


def test_resnet50_parameter_count():
    assert resnet50_count() == 25_557_032  # torchvision resnet50
    m = resnet.ResNetBody(stage_sizes=(3, 4, 6, 3), num_classes=1000)
    assert _count(m, (1, 64, 64, 3)) == 25_557_032
    assert _count(resnet.resnet50_dc5(), (1, 64, 64, 3)) == resnet50_count(0) == 23_508_032


def test_i3d_parameter_count_and_shapes():
    assert _count(backbones.I3DResNet(), (1, 8, 32, 32, 3)) == i3d_nl_r50_count() == 34_578_240
    x = jax.ShapeDtypeStruct((1, 17, 224, 320, 3), jnp.float32)
    i3d, r50 = backbones.I3DResNet(), resnet.resnet50_dc5()
    out3 = jax.eval_shape(lambda a: i3d.apply(i3d.init(jax.random.PRNGKey(0), a), a), x)
    assert out3.shape == (1, 2, 14, 20, 2048)  # 17 frames -> 2 slices, output stride 16
    assert backbones.i3d_output_frames(17) == 2 and backbones.i3d_output_frames(32) == 4
    x2 = jax.ShapeDtypeStruct((1, 224, 320, 3), jnp.float32)
    out2 = jax.eval_shape(lambda a: r50.apply(r50.init(jax.random.PRNGKey(0), a), a), x2)
    assert out2.shape == (1, 14, 20, 2048)


def test_non_local_matches_numpy():
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 6, 8)).astype(np.float32)
    m = backbones.NonLocal3d()
    v = m.init(jax.random.PRNGKey(1), x)
    p = jax.tree.map(np.asarray, v["params"])
    p["conv_out"]["bn"]["scale"] = np.full(8, 0.7, np.float32)  # (zero BN would hide the branch)
    y = np.asarray(m.apply({"params": p}, x))

    def conv(name, a):
        k = p[name]["kernel"].reshape(a.shape[-1], -1)
        return a @ k + p[name].get("bias", 0)

    def pool(a):  # (1, 2, 2) max-pool
        b, t, h, w, c = a.shape
        return a.reshape(b, t, h // 2, 2, w // 2, 2, c).max((3, 5))

    g = pool(conv("g", x)).reshape(2, -1, 4)
    th = conv("theta", x).reshape(2, -1, 4)
    ph = pool(conv("phi", x)).reshape(2, -1, 4)
    att = th @ ph.transpose(0, 2, 1) / ph.shape[1]
    z = (att @ g).reshape(2, 2, 4, 6, 4) @ p["conv_out"]["conv"]["kernel"].reshape(4, 8)
    ref = x + z * p["conv_out"]["bn"]["scale"] + p["conv_out"]["bn"]["bias"]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- converters ----


def _write_torch_zip(path, obj):
    """torch.save's zip layout with stand-in torch globals (no torch); tensors = np arrays."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    storage_cls = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage, utils_mod._rebuild_tensor_v2 = storage_cls, _rebuild_tensor_v2
    arrays = []

    class Ref:
        def __init__(self, key, n):
            self.key, self.n = key, n

    class Tensor:
        def __init__(self, arr):
            self.arr, self.key = np.ascontiguousarray(arr, "<f4"), str(len(arrays))
            arrays.append(self.arr)

        def __reduce__(self):
            a = self.arr
            stride = tuple(s // a.itemsize for s in a.strides)
            args = (Ref(self.key, a.size), 0, a.shape, stride, False, collections.OrderedDict())
            return (_rebuild_tensor_v2, args)

    class P(pickle.Pickler):
        def persistent_id(self, o):
            return ("storage", storage_cls, o.key, "cpu", o.n) if isinstance(o, Ref) else None

    def wrap(o):
        if isinstance(o, dict):
            return collections.OrderedDict((k, wrap(v)) for k, v in o.items())
        return Tensor(o)

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
    try:
        buf = io.BytesIO()
        P(buf, protocol=2).dump(wrap(obj))
    finally:
        for k, v in saved.items():
            sys.modules.pop(k) if v is None else sys.modules.__setitem__(k, v)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for i, a in enumerate(arrays):
            zf.writestr(f"archive/data/{i}", a.tobytes())
        zf.writestr("archive/version", "3\n")


def _torch_kernel(k):
    return (
        k.T if k.ndim == 2 else np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))
    )


def _random_params(module, shape, seed=0):
    v = module.init(jax.random.PRNGKey(seed), jnp.zeros(shape))
    flat = tu.flatten_dict(jax.tree.map(np.asarray, v["params"]))
    rng = np.random.default_rng(seed)
    return {k: (rng.normal(size=a.shape) * 0.5).astype(np.float32) for k, a in flat.items()}


def _export(flat, key_fn, bn_stats, rng):
    """Our flat params -> a state dict (BN as AffineChannel or with random running stats)."""
    sd = {}
    for path, a in flat.items():
        mod, leaf = key_fn(path[:-1]), path[-1]
        if leaf == "kernel":
            sd[mod + ".weight"] = _torch_kernel(a)
        elif leaf in ("scale", "bias") and (path[-2] == "bn" or "bn" in path[-2]):
            if leaf == "bias":
                continue
            scale, bias = a, flat[path[:-1] + ("bias",)]
            if bn_stats:
                mean = rng.normal(size=a.shape).astype(np.float32)
                var = rng.uniform(0.5, 2.0, size=a.shape).astype(np.float32)
                std = np.sqrt(var + convert.BN_EPS)
                sd[mod + ".weight"], sd[mod + ".bias"] = scale * std, bias + mean * scale
                sd[mod + ".running_mean"], sd[mod + ".running_var"] = mean, var
            else:
                sd[mod + ".weight"], sd[mod + ".bias"] = scale, bias
        else:
            sd[mod + "." + leaf] = a
    return sd


def _assert_same(flat, params):
    got = tu.flatten_dict(jax.tree.map(np.asarray, params))
    assert set(got) == set(flat)
    for k in flat:
        np.testing.assert_allclose(got[k], flat[k], rtol=1e-5, atol=1e-5, err_msg=str(k))


@pytest.mark.parametrize("layout", ["detectron", "torchvision"])
def test_resnet_converter_round_trip(tmp_path, layout):
    body = resnet.ResNetBody(**TINY, res5_dilation=2, norm="affine")
    flat = _random_params(body, (1, 32, 32, 3))
    key = lambda p: convert._torch_key_2d(p, layout)  # noqa: E731
    sd = _export(flat, key, bn_stats=layout == "torchvision", rng=np.random.default_rng(1))
    if layout == "detectron":  # a trained TRACE model: {'model': {'Prd_RCNN2D.res1...', ...}}
        obj = {"model": {"Prd_RCNN2D." + k: v for k, v in sd.items()}}
        obj["model"]["Conv_Body.res1.conv1.weight"] = np.zeros((4, 3, 7, 7))  # the detector's
    else:
        obj = dict(sd, **{"fc.weight": np.zeros((10, 32)), "fc.bias": np.zeros(10)})
    path = str(tmp_path / "r50.pth")
    _write_torch_zip(path, obj)
    params = convert.load_resnet50_dc5(path, **TINY)
    _assert_same(flat, params)
    x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype(np.float32)
    ours = body.apply({"params": params}, x)
    ref = body.apply({"params": tu.unflatten_dict(flat)}, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_i3d_converter_round_trip_and_errors(tmp_path):
    module = backbones.I3DResNet(**TINY)
    flat = _random_params(module, (1, 5, 32, 32, 3))
    assert any("non_local_block" in k for k in flat)  # layer2_1 carries a non-local block
    sd = _export(flat, convert._torch_key_3d, bn_stats=True, rng=np.random.default_rng(3))
    assert "layer2.1.non_local_block.g.0.conv.weight" in sd  # mmcv's sub-sampled g
    assert "layer2.1.non_local_block.conv_out.bn.running_var" in sd
    obj = {"state_dict": {"backbone." + k: v for k, v in sd.items()}}
    obj["state_dict"]["cls_head.fc_cls.weight"] = np.zeros((400, 32))
    path = str(tmp_path / "i3d.pth")
    _write_torch_zip(path, obj)
    _assert_same(flat, convert.load_i3d(path, module=module))

    bad = dict(sd)
    del bad["layer1.0.conv2.conv.weight"]
    with pytest.raises(ValueError, match=r"layer1\.0\.conv2\.conv\.weight.*missing"):
        convert.i3d_params(bad, module=module)
    bad = dict(sd, **{"layer1.0.conv1.conv.weight": np.zeros((4, 4, 1, 1, 1), np.float32)})
    with pytest.raises(ValueError, match="Shape mismatch for layer1_0/conv1/conv/kernel"):
        convert.i3d_params(bad, module=module)
    with pytest.raises(ValueError, match="no key ending in"):
        convert.i3d_params({"foo.weight": np.zeros(3)}, module=module)


# ---------------------------------------------------------------------------- the model ----


def _resnet_cfg(extra=""):
    arg = (
        "smoke,model.backbone=resnet,model.resnet_width=4,"
        "model.clip_len=5,data.clip_len=5,model.temporal_head=avgpool_fc,"
        "model.temporal_scale=0.5,model.freq_bias_from_data=False" + extra
    )
    cfg = config_lib.load_config_file("configs/trace_vidsgg.py", arg)
    cfg.model.resnet_stages = TINY["stage_sizes"]  # (a tuple cannot go through the arg string)
    return cfg


def test_resnet_backbone_in_model_and_weight_loading(tmp_path):
    cfg = _resnet_cfg()
    spec = inputs.input_spec(cfg)
    assert spec["frames"].shape == (8, 5, 32, 32, 3) and spec["obj_feat"].shape == (8, 4, 16)
    net = model.build_model(cfg)
    batch = {k: jnp.zeros(s.shape, s.dtype) for k, s in spec.items()}
    variables = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), batch, train=False))
    out = jax.eval_shape(lambda v: net.apply(v, batch, train=False), variables)
    assert out["rel_logits"].shape == (8, 4, 4, cfg.model.num_predicates)
    params = variables["params"]
    assert "rel_body_2d" in params and "rel_body_3d" in params
    # Official checkpoints named in the config are converted into the backbone slots.
    stages = TINY["stage_sizes"]
    r2 = _random_params(
        resnet.ResNetBody(stage_sizes=stages, width=4, res5_dilation=2), (1, 32, 32, 3)
    )
    i3 = _random_params(backbones.I3DResNet(**TINY), (1, 5, 32, 32, 3))
    p2, p3 = str(tmp_path / "r50.pth"), str(tmp_path / "i3d.pth")
    key2 = lambda p: convert._torch_key_2d(p, "detectron")  # noqa: E731
    _write_torch_zip(p2, _export(r2, key2, False, None))
    _write_torch_zip(p3, _export(i3, convert._torch_key_3d, True, np.random.default_rng(0)))
    cfg_w = _resnet_cfg(f",model.resnet2d_weights={p2},model.i3d_weights={p3}")
    loaded = steps.prepare(cfg_w)
    assert set(loaded) == {"rel_body_2d", "rel_body_3d"}
    _assert_same(r2, loaded["rel_body_2d"])
    _assert_same(i3, loaded["rel_body_3d"])
    # init_state puts them into the backbone slots; a tree of another architecture fails early.
    st = jax.jit(lambda k, p: steps.init_state(k, cfg_w, prepared=p))(jax.random.PRNGKey(0), loaded)
    _assert_same(r2, jax.device_get(st.params["rel_body_2d"]))
    with pytest.raises(ValueError, match="rel_body_3d does not match"):
        steps.init_state(
            jax.random.PRNGKey(0), cfg_w, prepared={"rel_body_3d": loaded["rel_body_2d"]}
        )


def test_paper_presets_use_the_real_backbones():
    for preset in ("action_genome", "vidvrd"):
        cfg = config_lib.load_config_file("configs/trace_vidsgg.py", preset)
        m = cfg.model
        assert m.backbone == "resnet" and tuple(m.resnet_stages) == (3, 4, 6, 3)
        assert m.resnet_width == 64 and m.clip_len == 17 and m.temporal_head == "avgpool_fc"
        assert inputs.input_spec(cfg)["frames"].shape == (8, 17, 800, 1333, 3)
    cfg = config_lib.load_config_file(
        "configs/trace_vidsgg.py", "action_genome,model.freq_bias_from_data=False"
    )
    st = jax.eval_shape(lambda k: steps.init_state(k, cfg, prepared={}), jax.random.PRNGKey(0))
    count = lambda t: sum(x.size for x in jax.tree.leaves(t))  # noqa: E731
    assert count(st.params["rel_body_2d"]) == resnet50_count(0)
    assert count(st.params["rel_body_3d"]) == i3d_nl_r50_count()


@pytest.mark.slow
def test_resnet_backbone_train_step_jit(monkeypatch):
    import inspect

    from jaxpapers import testing, trainer

    if "prepared" not in inspect.signature(trainer.init).parameters:
        # trainer.init as the method contract has it (until the trainer calls prepare itself).
        def init(method, config, mesh):
            prepared = method.prepare(config)
            fn = lambda key, p: method.init_state(key, config, prepared=p)  # noqa: E731
            key = jax.random.PRNGKey(config.seed)
            shardings = trainer.state_shardings(method, jax.eval_shape(fn, key, prepared), mesh)
            return jax.jit(fn, out_shardings=shardings)(key, prepared), shardings

        monkeypatch.setattr(trainer, "init", init)
    _, metrics = testing.check_train_step_jit("trace_vidsgg", _resnet_cfg())
    assert float(metrics[-1]["entries"]) > 0


# ------------------------------------------- NumPy forward of the official PyTorch layouts ----


def _np_conv(x, w, stride, pad, dil=1):
    """PyTorch ConvNd (cross-correlation, symmetric zero padding) on (N, C, *S), w (O, C, *K)."""
    nd = w.ndim - 2
    stride, pad, dil = ((v,) * nd if np.isscalar(v) else tuple(v) for v in (stride, pad, dil))
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    out_sz = [
        (x.shape[2 + i] - dil[i] * (w.shape[2 + i] - 1) - 1) // stride[i] + 1 for i in range(nd)
    ]
    y = np.zeros((x.shape[0], w.shape[0], *out_sz), np.float64)
    for k in np.ndindex(*w.shape[2:]):
        sl = tuple(
            slice(k[i] * dil[i], k[i] * dil[i] + stride[i] * (out_sz[i] - 1) + 1, stride[i])
            for i in range(nd)
        )
        y += np.einsum("nc...,oc->no...", x[(slice(None), slice(None)) + sl], w[(...,) + k])
    return y


def _np_maxpool(x, kernel, stride, pad):
    nd = len(kernel)
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad], constant_values=-np.inf)
    out_sz = [(x.shape[2 + i] - kernel[i]) // stride[i] + 1 for i in range(nd)]
    y = np.full(x.shape[:2] + tuple(out_sz), -np.inf)
    for k in np.ndindex(*kernel):
        sl = tuple(
            slice(k[i], k[i] + stride[i] * (out_sz[i] - 1) + 1, stride[i]) for i in range(nd)
        )
        y = np.maximum(y, x[(slice(None), slice(None)) + sl])
    return y


def _np_bn(sd, key, x):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    w, b = sd[key + ".weight"].reshape(shape), sd[key + ".bias"].reshape(shape)
    if key + ".running_mean" in sd:
        m, v = sd[key + ".running_mean"].reshape(shape), sd[key + ".running_var"].reshape(shape)
        return (x - m) / np.sqrt(v + 1e-5) * w + b
    return x * w + b  # AffineChannel2d


def _relu(x):
    return np.maximum(x, 0)


def _np_detectron_resnet(sd, x, stages, res5_dilation):
    """Detectron ResNet_convX_body.forward (STRIDE_1X1 False) from its state dict."""
    y = _relu(_np_bn(sd, "res1.bn1", _np_conv(x, sd["res1.conv1.weight"], 2, 3)))
    y = _np_maxpool(y, (3, 3), (2, 2), (1, 1))
    for s, n in enumerate(stages):
        dil = res5_dilation if s == len(stages) - 1 else 1
        for j in range(n):
            p = f"res{s + 2}.{j}."
            stride = (1 if s == 0 or dil > 1 else 2) if j == 0 else 1
            z = _relu(_np_bn(sd, p + "bn1", _np_conv(y, sd[p + "conv1.weight"], 1, 0)))
            z = _relu(_np_bn(sd, p + "bn2", _np_conv(z, sd[p + "conv2.weight"], stride, dil, dil)))
            z = _np_bn(sd, p + "bn3", _np_conv(z, sd[p + "conv3.weight"], 1, 0))
            if p + "downsample.0.weight" in sd:
                y = _np_bn(
                    sd, p + "downsample.1", _np_conv(y, sd[p + "downsample.0.weight"], stride, 0)
                )
            y = _relu(z + y)
    return y


def _np_mmaction_i3d(sd, x, stages):
    """mmaction2 ResNet3d.forward (the TRACE I3D-NL DC5 config) from its state dict."""

    def cm(key, v, stride=1, pad=0, dil=1, act=True):
        v = _np_bn(sd, key + ".bn", _np_conv(v, sd[key + ".conv.weight"], stride, pad, dil))
        return _relu(v) if act else v

    def non_local(key, v):
        n, c = v.shape[:2]
        conv = lambda name, a: (
            _np_conv(a, sd[f"{key}.{name}.conv.weight"], 1, 0)
            + sd[  # noqa: E731
                f"{key}.{name}.conv.bias"
            ].reshape(1, -1, 1, 1, 1)
        )
        pool = lambda a: _np_maxpool(a, (1, 2, 2), (1, 2, 2), (0, 0, 0))  # noqa: E731
        g = pool(conv("g.0", v)).reshape(n, c // 2, -1).transpose(0, 2, 1)
        th = conv("theta", v).reshape(n, c // 2, -1).transpose(0, 2, 1)
        ph = pool(conv("phi.0", v)).reshape(n, c // 2, -1)
        pw = th @ ph / ph.shape[-1]
        y = (pw @ g).transpose(0, 2, 1).reshape(n, c // 2, *v.shape[2:])
        return v + cm(key + ".conv_out", y, act=False)

    y = cm("conv1", x, (2, 2, 2), (2, 3, 3))
    y = _np_maxpool(y, (1, 3, 3), (2, 2, 2), (0, 1, 1))
    strides, dils = (1, 2, 2, 1), (1, 1, 1, 2)
    for i, n in enumerate(stages):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            ss = strides[i] if j == 0 else 1
            d = dils[i]
            infl = backbones.I3D_INFLATE[i][j]
            z = cm(p + ".conv1", y, 1, (1, 0, 0) if infl else 0)
            z = cm(p + ".conv2", z, (1, ss, ss), (0, d, d), (1, d, d))
            z = cm(p + ".conv3", z, act=False)
            if p + ".downsample.conv.weight" in sd:
                y = cm(p + ".downsample", y, (1, ss, ss), act=False)
            y = _relu(z + y)
            if backbones.I3D_NON_LOCAL[i][j]:
                y = non_local(p + ".non_local_block", y)
        if i == 0:
            y = _np_maxpool(y, (2, 1, 1), (2, 1, 1), (0, 0, 0))
    return y


def test_converted_resnet_matches_numpy_detectron_forward():
    body = resnet.ResNetBody(**TINY, res5_dilation=2, norm="affine")
    flat = _random_params(body, (1, 33, 37, 3), seed=4)
    sd = _export(flat, lambda p: convert._torch_key_2d(p, "detectron"), False, None)
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = np.random.default_rng(5).normal(size=(1, 3, 33, 37))
    ref = _np_detectron_resnet(sd, x, TINY["stage_sizes"], 2)
    ours = body.apply({"params": convert.resnet50_dc5_params(sd, **TINY)}, x.transpose(0, 2, 3, 1))
    assert (
        ours.shape == ref.transpose(0, 2, 3, 1).shape == (1, 3, 3, 128)
    )  # stride 16, 4 * 8 * width
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), rtol=2e-3, atol=2e-3)


def test_converted_i3d_matches_numpy_mmaction_forward():
    module = backbones.I3DResNet(**TINY)
    flat = _random_params(module, (1, 9, 32, 32, 3), seed=6)
    sd = _export(flat, convert._torch_key_3d, True, np.random.default_rng(7))
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = np.random.default_rng(8).normal(size=(1, 3, 9, 35, 33))
    ref = _np_mmaction_i3d(sd, x, TINY["stage_sizes"])
    ours = module.apply(
        {"params": convert.i3d_params(sd, module=module)}, x.transpose(0, 2, 3, 4, 1)
    )
    assert ours.shape == ref.transpose(0, 2, 3, 4, 1).shape
    assert ours.shape[1] == backbones.i3d_output_frames(9) == 1
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 4, 1), rtol=2e-3, atol=2e-3)
