"""BigGAN-PyTorch state-dict converter: round trip through a torch-format zip, unsafe refusal."""

import collections
import io
import os
import pickle
import sys
import types
import zipfile

import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.biggan_dgl import convert
from jaxpapers.methods.biggan_dgl import model as M


def _torch_key(coll: str, path: tuple) -> str:
    """Our variable path -> the BigGAN-PyTorch state-dict key (inverse of convert._our_path)."""
    parts = list(path)
    head = parts[0]
    if head.startswith("block"):
        parts = ["blocks", head[5:], "0"] + parts[1:]
    elif head.startswith("attn"):
        parts = ["blocks", head[4:], "1"] + parts[1:]
    elif head == "output_bn":
        parts = ["output_layer", "0"] + parts[1:]
    elif head == "output_conv":
        parts = ["output_layer", "2"] + parts[1:]
    leaf = parts[-1]
    if coll == "spectral":
        parts[-1] = {"u": "u0", "sv": "sv0"}[leaf]
    elif coll == "batch_stats":
        parts = [p for p in parts[:-1] if p != "bn"] + [
            {"mean": "stored_mean", "var": "stored_var"}[leaf]
        ]
    elif leaf in ("kernel", "embedding"):
        parts[-1] = "weight"
    return ".".join(parts)


def _torch_value(coll: str, path: tuple, x: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and x.ndim == 4:
        return x.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if path[-1] == "kernel" and x.ndim == 2:
        return x.T
    if coll == "spectral":
        return x.reshape(1, -1) if path[-1] == "u" else x.reshape(1)
    return x


def _write_torch_zip(path: str, state: dict) -> None:
    """Writes ``state`` in torch.save's zip layout with stand-in torch globals (no torch)."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = (
        "torch._utils",
        "_rebuild_tensor_v2",
    )
    storage_cls = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage, utils_mod._rebuild_tensor_v2 = storage_cls, _rebuild_tensor_v2

    class Ref:
        def __init__(self, key, n):
            self.key, self.n = key, n

    class Tensor:
        def __init__(self, arr, key):
            self.arr, self.key = arr, key

        def __reduce__(self):
            a = self.arr
            stride = tuple(s // a.itemsize for s in a.strides)
            return (
                _rebuild_tensor_v2,
                (Ref(self.key, a.size), 0, a.shape, stride, False, collections.OrderedDict()),
            )

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", storage_cls, obj.key, "cpu", obj.n) if isinstance(obj, Ref) else None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
    try:
        arrays = {k: np.ascontiguousarray(v, "<f4") for k, v in state.items()}
        od = collections.OrderedDict(
            (k, Tensor(a, str(i))) for i, (k, a) in enumerate(arrays.items())
        )
        buf = io.BytesIO()
        P(buf, protocol=2).dump(od)
    finally:
        for k, v in saved.items():
            sys.modules.pop(k) if v is None else sys.modules.__setitem__(k, v)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for i, a in enumerate(arrays.values()):
            zf.writestr(f"archive/data/{i}", a.tobytes())
        zf.writestr("archive/version", "3\n")


def _export(variables) -> dict:
    out = {}
    for coll in ("params", "batch_stats", "spectral"):
        for path, x in tu.flatten_dict(dict(variables.get(coll, {}))).items():
            out[_torch_key(coll, path)] = _torch_value(coll, path, np.asarray(x))
    return out


@pytest.mark.parametrize("net", ["G", "D"])
def test_converter_round_trip(net, tmp_path):
    y = jnp.array([0, 3])
    if net == "G":
        m = M.Generator(
            resolution=32,
            ch=2,
            dim_z=8,
            shared_dim=4,
            num_classes=5,
            out_channels=1,
            attention="16",
        )
        init = lambda k: m.init(jax.random.key(k), jnp.zeros((2, 8)), y, train=True)
    else:
        m = M.Discriminator(resolution=32, ch=2, num_classes=5, attention="16")
        init = lambda k: m.init(jax.random.key(k), jnp.zeros((2, 32, 32, 1)), y, train=True)
    src, ref = init(0), init(1)
    sd = _export(src)
    assert ("linear.u0" in sd) and ("blocks.0.0.conv1.weight" in sd)
    f = os.path.join(tmp_path, f"{net}.pth")
    _write_torch_zip(f, sd)
    back = convert.convert(convert.read_state_dict(f), {c: ref[c] for c in ref})
    for coll in src:
        for a, b in zip(jax.tree.leaves(src[coll]), jax.tree.leaves(back[coll]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="lacks"):
        convert.convert(
            {k: v for k, v in convert.read_state_dict(f).items() if "conv1" not in k},
            {c: ref[c] for c in ref},
        )


def test_converter_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    f = os.path.join(tmp_path, "evil.pth")
    with zipfile.ZipFile(f, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(convert.UnsafeCheckpointError, match="refusing global"):
        convert.read_state_dict(f)


def test_cli_writes_a_teacher_that_load_init_accepts(tmp_path):
    from jaxpapers import checkpoint, config_lib
    from jaxpapers.methods import biggan_dgl
    from jaxpapers.methods.biggan_dgl import steps
    from jaxpapers.tools import convert_biggan

    cfg = config_lib.load_config_file("configs/biggan_dgl.py", "smoke,teacher.steps=0")
    src = steps.init_gan(jax.random.key(5), cfg, "teacher")
    g_sd = _export({"params": src.g, **src.g_vars})
    d_sd = _export({"params": src.d, **src.d_vars})
    _write_torch_zip(str(tmp_path / "G.pth"), g_sd)
    _write_torch_zip(str(tmp_path / "D.pth"), d_sd)
    out = str(tmp_path / "teacher")
    convert_biggan.convert(
        "configs/biggan_dgl.py:smoke,teacher.steps=0",
        str(tmp_path / "G.pth"),
        str(tmp_path / "D.pth"),
        "",
        out,
    )
    state = steps.init_state(jax.random.key(0), cfg)
    state = biggan_dgl.load_init(state, checkpoint.restore_params(out), cfg)
    for name in ("g", "g_vars", "d", "d_vars", "g_ema"):
        want = getattr(src, name) if name != "g_ema" else src.g
        for a, b in zip(
            jax.tree.leaves(want), jax.tree.leaves(getattr(state.teacher, name)), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
