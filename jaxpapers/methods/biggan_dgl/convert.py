"""BigGAN-PyTorch state dicts (``G.pth``, ``G_ema.pth``, ``D.pth``) -> our Flax variable trees.

Reads the ``torch.save`` zip format **without torch and without executing code from the file**:
``data.pkl`` is unpickled with a restricted unpickler that resolves only ``OrderedDict``,
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and the ``torch.*Storage`` type
tags (mapped to numpy); any other global (e.g. ``os.system``) raises ``UnsafeCheckpointError``.
Storages are read from ``<archive>/data/<key>`` as little-endian arrays.

Name mapping (BigGAN-PyTorch ``BigGAN.py`` module tree -> ours): ``blocks.{i}.0.X`` ->
``block{i}/X``, ``blocks.{i}.1.X`` -> ``attn{i}/X`` (attention sits in the same ModuleList),
``bnK.gain|bias.weight`` -> ``bnK/gain|bias/kernel``, ``bnK.stored_mean|var`` ->
``batch_stats/.../bnK/bn/mean|var``, ``output_layer.0`` -> ``output_bn``, ``output_layer.2`` ->
``output_conv``, ``shared.weight`` / ``embed.weight`` -> ``embedding``, ``u0``/``sv0`` ->
``spectral/.../u|sv``. Conv weights OIHW -> HWIO, linear weights [out, in] -> [in, out].
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import zipfile
from typing import Any

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle references something other than tensors and dicts."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
    itemsize = storage.dtype.itemsize
    if not size:
        return np.array(storage[offset])
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size),
                                           tuple(s * itemsize for s in stride))
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


def _rebuild_parameter(data, requires_grad=False, hooks=None, *_):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self._zip, self._prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"Refusing to load {module}.{name}: the checkpoint would run code beyond plain "
            "tensors/dicts. Only BigGAN-PyTorch state dicts (torch.save of state_dict()) load.")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"Unexpected persistent id {pid!r}.")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"Unknown storage type {storage_type!r}.")
        raw = self._zip.read(f"{self._prefix}/data/{key}")
        return np.frombuffer(raw, dtype=storage_type.dtype)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A ``torch.save``d state dict (zip format) as ``{name: numpy array}``."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a torch zip checkpoint (legacy non-zip torch.save "
                         "files are not supported; re-save with torch >= 1.6).")
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise ValueError(f"{path!r}: expected one */data.pkl, found {pkls}.")
        prefix = pkls[0][: -len("/data.pkl")]
        obj = _Unpickler(zf.read(pkls[0]), zf, prefix).load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, expected a state dict.")
    return {k: np.asarray(v) for k, v in obj.items() if isinstance(v, np.ndarray)}


def _our_path(key: str) -> tuple[str, tuple[str, ...]]:
    """(collection, path) of our variable for one BigGAN-PyTorch state-dict key."""
    parts = key.split(".")
    m = re.fullmatch(r"blocks\.(\d+)\.([01])\.(.*)", key)
    if m:
        i, which, rest = m.groups()
        parts = [f"block{i}" if which == "0" else f"attn{i}"] + rest.split(".")
    elif parts[0] == "output_layer":
        parts = [{"0": "output_bn", "2": "output_conv"}[parts[1]]] + parts[2:]
    leaf = parts[-1]
    if leaf in ("u0", "sv0"):
        return "spectral", tuple(parts[:-1]) + ({"u0": "u", "sv0": "sv"}[leaf],)
    if leaf in ("stored_mean", "stored_var"):
        bn = parts[:-1] + (["bn"] if parts[0] != "output_bn" else [])
        return "batch_stats", tuple(bn) + ({"stored_mean": "mean", "stored_var": "var"}[leaf],)
    if parts[0] == "output_bn":
        return "params", ("output_bn", leaf)  # gain / bias vectors
    if parts[-2] in ("gain", "bias") and leaf == "weight" and len(parts) >= 3:
        return "params", tuple(parts[:-1]) + ("kernel",)  # ccbn linear (or embedding)
    if leaf == "weight" and parts[0] in ("shared", "embed"):
        return "params", (parts[0], "embedding")
    if leaf == "weight":
        return "params", tuple(parts[:-1]) + ("kernel",)
    return "params", tuple(parts)


def _to_ours(value: np.ndarray, path: tuple[str, ...], ref: Any) -> np.ndarray:
    """One checkpoint array in our layout; ``ref`` gives the expected shape/dtype."""
    if path[-1] == "kernel" and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif path[-1] == "kernel" and value.ndim == 2 and value.shape[::-1] == ref.shape:
        value = value.T  # Linear [out, in] -> [in, out]
    elif path[-1] == "u":
        value = value.reshape(-1)
    elif len(ref.shape) == 0:
        value = value.reshape(())
    if value.shape != tuple(ref.shape):
        raise ValueError(f"{'/'.join(path)}: checkpoint shape {value.shape} != ours {ref.shape};"
                         " does the config match the checkpoint's (ch, resolution, classes)?")
    return value.astype(ref.dtype)


def convert(state_dict: dict[str, np.ndarray], ref_vars: dict[str, Any]) -> dict[str, Any]:
    """Our variables from a state dict, strictly matched against ``ref_vars`` (our init or its
    ``jax.eval_shape``: params / batch_stats / spectral); every entry must be present."""
    import flax.traverse_util as tu

    flat_ref = {c: tu.flatten_dict(dict(ref_vars[c])) for c in ref_vars}
    out = {c: {} for c in ref_vars}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        coll, path = _our_path(key)
        if path[-1] == "kernel" and path not in flat_ref.get(coll, {}):
            path = path[:-1] + ("embedding",)  # non-hierarchical ccbn: per-layer class tables
        if coll not in flat_ref or path not in flat_ref[coll]:
            raise ValueError(f"Checkpoint key {key!r} -> {coll}/{'/'.join(path)} has no "
                             "counterpart in our model (config mismatch?).")
        out[coll][path] = _to_ours(np.asarray(value), path, flat_ref[coll][path])
    for c, ref in flat_ref.items():
        missing = sorted("/".join(p) for p in ref if p not in out[c])
        if missing:
            raise ValueError(f"Checkpoint lacks {len(missing)} {c} entries, e.g. {missing[:5]}.")
    return {c: tu.unflatten_dict(out[c]) for c in out}


def convert_teacher(config, g_path: str, d_path: str, g_ema_path: str = "") -> dict[str, Any]:
    """``{'teacher': {g, g_vars, d, d_vars, g_ema, g_ema_vars}}`` for ``load_init``."""
    import jax

    from jaxpapers.methods.biggan_dgl import steps

    ref = jax.eval_shape(lambda: steps.init_gan(jax.random.key(0), config, "teacher"))
    g = convert(read_state_dict(g_path), {"params": ref.g, **ref.g_vars})
    d = convert(read_state_dict(d_path), {"params": ref.d, **ref.d_vars})
    ge = convert(read_state_dict(g_ema_path), {"params": ref.g, **ref.g_vars}) if g_ema_path \
        else g
    split = lambda v: (v["params"], {c: v[c] for c in steps.G_COLS})
    (gp, gv), (ep, ev) = split(g), split(ge)
    return {"teacher": {"g": gp, "g_vars": gv, "d": d["params"], "d_vars": {"spectral":
                        d["spectral"]}, "g_ema": ep, "g_ema_vars": ev}}


def main(argv: list[str] | None = None) -> None:
    """CLI: writes an Orbax checkpoint usable as ``--config.init_from=OUT`` (teacher.steps=0)."""
    import argparse
    import os

    from jaxpapers import checkpoint, config_lib

    ap = argparse.ArgumentParser(description="BigGAN-PyTorch state dicts -> biggan_dgl teacher")
    ap.add_argument("--config", default="configs/biggan_dgl.py:imagenet128",
                    help="config file[:preset,...] whose model.* matches the checkpoint")
    ap.add_argument("--g", required=True, help="G.pth")
    ap.add_argument("--d", required=True, help="D.pth")
    ap.add_argument("--g_ema", default="", help="G_ema.pth (optional; else G is used)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    file, _, arg = a.config.partition(":")
    cfg = config_lib.load_config_file(file, arg or None)
    tree = convert_teacher(cfg, a.g, a.d, a.g_ema)
    os.makedirs(a.out, exist_ok=True)
    ck = checkpoint.Checkpointer(os.path.join(a.out, "checkpoints"), keep=1, async_save=False)
    ck.save(0, tree, force=True)
    ck.close()
    print(f"Wrote {a.out} (use --config.init_from={a.out} --config.teacher.steps=0)")


if __name__ == "__main__":
    main()
