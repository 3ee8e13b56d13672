"""Converter: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` -> Flax FIDInceptionV3.

The file (a PyTorch state dict of the TF-2015 FID Inception, published on pytorch-fid's GitHub
release page ``fid_weights``) cannot be downloaded on our machines; the user provides it:

    python -m jaxpapers.convert.inception --src pt_inception-2015-12-05-6726825d.pth \
        --dst ~/.cache/jaxpapers/fid_inception_v3.npz

The PyTorch file is read WITHOUT torch: a restricted unpickler accepts only the globals a
state dict needs (OrderedDict, tensor rebuild functions, storage types) and never runs code
from the file. Both the zip format (torch >= 1.6) and the legacy format (one pickle stream
followed by raw storages, what the 2019 release uses) are supported.

Key mapping (PyTorch -> Flax): ``X.conv.weight`` (O,I,kh,kw) -> ``params/X/conv/kernel``
(kh,kw,I,O); ``X.bn.weight|bias`` -> ``params/X/bn/scale|bias``; ``X.bn.running_mean|var`` ->
``batch_stats/X/bn/mean|var``; ``fc.weight`` (1008,2048) -> ``params/fc/kernel`` (2048,1008).
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import struct
import tempfile
import zipfile
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax import traverse_util

from jaxpapers.evals.gan.inception import FIDInceptionV3

FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
CONVERTED_NAME = "fid_inception_v3.npz"
SOURCE_HINT = (
    "Get the FID Inception weights file '" + FILE_NAME + "' from the 'fid_weights' release of "
    "the GitHub project mseitzer/pytorch-fid (pytorch-fid downloads it to "
    "~/.cache/torch/hub/checkpoints/), copy it to this machine and pass its path "
    "(cfg.inception_weights / --inception_weights) or put it in "
    "$JAXPAPERS_CACHE (default ~/.cache/jaxpapers/)."
)

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported torch storage type torch.{name}")
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes may arrive after the pickle (legacy format)."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.array = dtype, numel, None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride

    def materialize(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise ValueError("torch file is truncated: a tensor's storage bytes are missing.")
        if not self.size:
            return np.array(base[self.offset])
        item = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], self.size, [s * item for s in self.stride]
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch state dicts without torch; any other global is refused."""

    def __init__(self, file, storage_loader):
        super().__init__(file)
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing global {module}.{name}: not part of a plain state dict of tensors."
        )

    def persistent_load(self, pid):
        return self._storage_loader(pid)


def _materialize_tree(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return {k: _materialize_tree(v) for k, v in obj.items()}
    return obj


def _read_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ValueError(f"{path}: zip file without data.pkl; not a torch.save file.")
        prefix = pkl[0][: -len("data.pkl")]

        def load_storage(pid):
            kind, stype, key, _location, numel = pid[:5]
            if kind != "storage":
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            st = _Storage(stype.dtype, numel)
            st.array = np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=stype.dtype)
            return st

        with zf.open(pkl[0]) as f:
            obj = _RestrictedUnpickler(f, load_storage).load()
        return _materialize_tree(obj)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in a torch file header")


def _read_legacy(path: str) -> dict:
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a torch.save file (bad magic number).")
        _PlainUnpickler(f).load()  # protocol version
        _PlainUnpickler(f).load()  # sys_info
        storages: dict[str, _Storage] = {}

        def load_storage(pid):
            kind, stype, key, _location, numel = pid[:5]
            view = pid[5] if len(pid) > 5 else None
            if kind != "storage":
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            if key not in storages:
                storages[key] = _Storage(stype.dtype, numel)
            if view is not None:
                raise ValueError(f"{path}: storage views are not supported by this reader.")
            return storages[key]

        obj = _RestrictedUnpickler(f, load_storage).load()
        keys = _PlainUnpickler(f).load()
        for key in keys:
            st = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            # The size header counts elements (older torch) or bytes (untyped storages).
            nbytes = count if count == st.numel * st.dtype.itemsize else count * st.dtype.itemsize
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"{path}: truncated storage {key}.")
            st.array = np.frombuffer(data, dtype=st.dtype)
        return _materialize_tree(obj)


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a ``torch.save``d state dict of tensors into numpy arrays, without torch."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist. {SOURCE_HINT}")
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (mapping name -> tensor), got {type(obj)}")
    return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}


def convert_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
    """Maps pytorch-fid Inception keys to Flax ``{'params': ..., 'batch_stats': ...}``."""
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[-1] == "num_batches_tracked":
            continue
        if parts[0] == "AuxLogits":
            continue  # the FID graph has no auxiliary head; torchvision files may carry one
        path, leaf = tuple(parts[:-1]), parts[-1]
        value = np.asarray(value, np.float32)
        if path[-1] == "conv" and leaf == "weight":
            flat[("params", *path, "kernel")] = value.transpose(2, 3, 1, 0)
        elif path[-1] == "bn" and leaf in ("weight", "bias"):
            flat[("params", *path, "scale" if leaf == "weight" else "bias")] = value
        elif path[-1] == "bn" and leaf in ("running_mean", "running_var"):
            flat[("batch_stats", *path, "mean" if leaf == "running_mean" else "var")] = value
        elif path == ("fc",) and leaf == "weight":
            flat[("params", "fc", "kernel")] = value.T
        elif path == ("fc",) and leaf == "bias":
            flat[("params", "fc", "bias")] = value
        else:
            raise ValueError(f"unexpected key {key!r} for the FID Inception-v3 state dict.")
    return traverse_util.unflatten_dict(flat)


def check_variables(variables: dict[str, Any], scale: float = 1.0) -> None:
    """Raises a ValueError listing missing/unexpected/misshapen entries vs the Flax model."""
    model = FIDInceptionV3(scale=scale)
    ref = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 299, 299, 3), np.float32))
    want = {k: v.shape for k, v in traverse_util.flatten_dict(ref, sep="/").items()}
    got = {k: np.shape(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}
    missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    bad = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    if missing or extra or bad:
        raise ValueError(
            "Inception weights do not match the FID Inception-v3: "
            f"missing {missing[:5]} ({len(missing)}), unexpected {extra[:5]} ({len(extra)}), "
            f"wrong shapes {[(k, got[k], want[k]) for k in bad[:5]]} ({len(bad)})."
        )


def save_variables(variables: dict[str, Any], dst: str) -> None:
    """Writes variables as a flat ``.npz`` ('params/Mixed_5b/...' keys), atomically."""
    flat = traverse_util.flatten_dict(variables, sep="/")
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), suffix=".npz")
    os.close(fd)
    np.savez(tmp, **{k: np.asarray(v) for k, v in flat.items()})
    os.replace(tmp, dst)


def load_variables(path: str, scale: float = 1.0) -> dict[str, Any]:
    """Loads converted ``.npz`` variables, or converts a ``.pth`` on the fly; checks shapes."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Inception weights not found at {path!r}. {SOURCE_HINT}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            variables = traverse_util.unflatten_dict({k: data[k] for k in data.files}, sep="/")
    else:
        variables = convert_state_dict(read_torch_state_dict(path))
    check_variables(variables, scale)
    return variables


def default_locations() -> list[str]:
    """Where ``find_weights`` looks when no path is configured (converted file first)."""
    cache = os.environ.get("JAXPAPERS_CACHE", os.path.expanduser("~/.cache/jaxpapers"))
    torch_hub = os.path.expanduser("~/.cache/torch/hub/checkpoints")
    return [
        os.path.join(cache, CONVERTED_NAME),
        os.path.join(cache, FILE_NAME),
        os.path.join(torch_hub, FILE_NAME),
    ]


def find_weights(path: str = "") -> str:
    """Returns the configured path or the first existing default; raises with instructions."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Inception weights not found at {path!r}. {SOURCE_HINT}")
        return path
    for candidate in default_locations():
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        "The Inception feature network needs the FID Inception-v3 weights and none were "
        f"found (looked in {default_locations()}). Random weights are never used. {SOURCE_HINT}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", required=True, help=f"path to {FILE_NAME}")
    parser.add_argument("--dst", default=default_locations()[0], help="output .npz")
    args = parser.parse_args(argv)
    variables = convert_state_dict(read_torch_state_dict(args.src))
    check_variables(variables)
    save_variables(variables, args.dst)
    n = sum(v.size for v in traverse_util.flatten_dict(variables).values())
    print(f"converted {n} values from {args.src} -> {args.dst}")


if __name__ == "__main__":
    main()
