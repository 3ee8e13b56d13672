"""Official-checkpoint converter: safe reading of a torch zip file the test writes (no torch),
refusal of code-executing pickles, key coverage, layout transforms."""

import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.layers.face_backbones import feature_hw
from jaxpapers.lib import occlusion
from jaxpapers.methods.from_occlusion import convert, model, steps


def _official_state_dict(config, rng):
    """Random tensors with the official LResNet_Occ key names and PyTorch shapes."""
    m = config.model
    w0, w1, w2, w3, w4 = m.widths
    f, e = m.fpn_features, m.embed_dim
    h, w = feature_hw(tuple(config.data.image_size))
    p = occlusion.num_patterns(config.occlusion.grid)
    sd = OrderedDict()

    def bn(k, n):
        for s in ("weight", "bias", "running_mean"):
            sd[f"{k}.{s}"] = rng.normal(size=n)
        sd[f"{k}.running_var"] = rng.uniform(0.5, 2, size=n)
        sd[f"{k}.num_batches_tracked"] = np.array(7)

    sd["conv1.weight"] = rng.normal(size=(w0, 3, 3, 3))
    bn("bn1", w0)
    sd["prelu1.weight"] = rng.normal(size=w0)
    widths = [w0, w1, w2, w3, w4]
    for s, depth in enumerate(m.depths):
        for u in range(depth):
            cin, cout, k = (
                widths[s] if u == 0 else widths[s + 1],
                widths[s + 1],
                f"layer{s + 1}.{u}",
            )
            bn(f"{k}.bn1", cin)
            sd[f"{k}.conv1.weight"] = rng.normal(size=(cout, cin, 3, 3))
            bn(f"{k}.bn2", cout)
            sd[f"{k}.prelu1.weight"] = rng.normal(size=cout)
            sd[f"{k}.conv2.weight"] = rng.normal(size=(cout, cout, 3, 3))
            bn(f"{k}.bn3", cout)
            if u == 0:
                sd[f"{k}.downsample.0.weight"] = rng.normal(size=(cout, cin, 1, 1))
                bn(f"{k}.downsample.1", cout)
    for name, cin, k in (
        ("P5_1", w4, 1),
        ("P4_1", w3, 1),
        ("P3_1", w2, 1),
        ("P3_2", f, 3),
        ("P5_2", f, 3),
        ("P4_2", f, 3),
        ("P6", w4, 3),
        ("P7_2", f, 3),
    ):
        sd[f"fpn.{name}.weight"] = rng.normal(size=(f, cin, k, k))
        sd[f"fpn.{name}.bias"] = rng.normal(size=f)
    sd["mask.0.weight"] = rng.normal(size=(f, f, 3, 3))
    sd["mask.1.weight"] = rng.normal(size=f)
    bn("mask.2", f)
    sd["mask.3.weight"] = rng.normal(size=(w4, f, 3, 3))
    bn("regress.0", w4 * h * w)
    sd["regress.2.weight"] = rng.normal(size=(p, w4 * h * w))
    bn("regress.3", p)
    bn("fc.0", w4 * h * w)
    sd["fc.2.weight"] = rng.normal(size=(e, w4 * h * w))
    sd["fc.2.bias"] = rng.normal(size=e)
    bn("fc.3", e)
    return OrderedDict((k, np.asarray(v, np.float32)) for k, v in sd.items())


def _write_torch_zip(path, obj, monkeypatch):
    """Writes obj in PyTorch's zip layout with fake `torch` globals (torch is not installed)."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*a):
        raise AssertionError("never called at write time")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_mod.FloatStorage, torch_mod._utils = FloatStorage, utils_mod
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)
    storages = {}

    class Storage:
        def __init__(self, arr):
            self.key, self.arr = str(len(storages)), arr
            storages[self.key] = arr

    class Tensor:
        def __init__(self, arr):
            self.arr = np.ascontiguousarray(arr, np.float32)

        def __reduce__(self):
            stride = tuple(s // 4 for s in self.arr.strides)
            return (
                _rebuild_tensor_v2,
                (Storage(self.arr.reshape(-1)), 0, self.arr.shape, stride, False, OrderedDict()),
            )

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                return ("storage", FloatStorage, o.key, "cpu", o.arr.size)
            return None

    wrap = jax.tree.map(Tensor, obj, is_leaf=lambda x: isinstance(x, np.ndarray))
    buf = io.BytesIO()
    P(buf, protocol=2).dump(wrap)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for k, a in storages.items():
            z.writestr(f"archive/data/{k}", a.tobytes())


def test_read_convert_and_layouts(tmp_path, monkeypatch):
    config = config_lib.load_config_file("configs/from_occlusion.py", "smoke")
    rng = np.random.RandomState(0)
    sd = _official_state_dict(config, rng)
    sd = OrderedDict(("module." + k, v) for k, v in sd.items())  # DataParallel prefix
    cls = {"weight": rng.normal(size=(30, 8)).astype(np.float32)}
    path = os.path.join(tmp_path, "model_p5_w1.pth.tar")
    _write_torch_zip(path, {"state_dict": sd, "classifier": cls}, monkeypatch)
    params, stats = convert.load_official(path, config)
    # Same tree structure and shapes as our initialised state.
    abstract = jax.eval_shape(lambda k: steps.init_state(k, config), jax.random.key(0))
    want = jax.tree.map(lambda a: a.shape, abstract.params)
    assert jax.tree.map(lambda a: a.shape, params) == want
    assert jax.tree.map(lambda a: a.shape, stats) == jax.tree.map(
        lambda a: a.shape, abstract.batch_stats
    )
    # Conv layout (O,I,kh,kw) -> (kh,kw,I,O).
    k = params["net"]["backbone"]["stage2_unit0"]["conv1"]["kernel"]
    np.testing.assert_array_equal(k, sd["module.layer2.0.conv1.weight"].transpose(2, 3, 1, 0))
    # Flattened head: torch Linear on an NCHW flatten == ours on the NHWC flatten.
    c, (h, w) = config.model.widths[-1], feature_hw(tuple(config.data.image_size))
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    torch_out = x.transpose(0, 3, 1, 2).reshape(2, -1) @ sd["module.fc.2.weight"].T
    ours = x.reshape(2, -1) @ params["net"]["head"]["fc"]["kernel"]
    np.testing.assert_allclose(ours, torch_out, rtol=1e-4, atol=1e-4)
    mean_t = sd["module.fc.0.running_mean"].reshape(c, h, w)
    np.testing.assert_array_equal(
        stats["head"]["bn_in"]["mean"].reshape(h, w, c), mean_t.transpose(1, 2, 0)
    )
    # The converted weights run.
    net = model.build_net(config)
    out = jax.jit(lambda v, x: net.apply(v, x))(
        {"params": params["net"], "batch_stats": stats}, jnp.zeros((1, 32, 24, 3))
    )
    assert np.all(np.isfinite(out["emb_masked"]))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_code_executing_pickle(tmp_path):
    path = os.path.join(tmp_path, "evil.pth")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": _Evil()}, protocol=2))
    with pytest.raises(convert.UnsafeCheckpointError, match="system"):
        convert.read_torch_zip(path)
    legacy = os.path.join(tmp_path, "legacy.pth")
    with open(legacy, "wb") as f:
        f.write(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="zip"):
        convert.read_torch_zip(legacy)
