"""Reads ``torch.save`` files (state dicts, nested dicts of tensors) WITHOUT torch, safely.

A pickle is code: a downloaded checkpoint must not be able to run any. The restricted unpickler
admits only the globals a plain checkpoint needs (``collections.OrderedDict``, the tensor/parameter
rebuild functions and the ``torch.*Storage`` type tags, all mapped to numpy); anything else
raises :class:`UnsafeCheckpointError`. Both the zip format (torch >= 1.6) and the legacy format
(one pickle stream followed by the raw storages) are read. Shared by every converter of the
suite (FID Inception, BigGAN-PyTorch, FROM).
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The checkpoint's pickle references something other than tensors and dicts."""


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
        raise UnsafeCheckpointError(
            f"refusing global {module}.{name}: a checkpoint may hold only tensors and dicts "
            "(loading this one could run code)."
        )

    def persistent_load(self, pid):
        return self._storage_loader(pid)


def _materialize_tree(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return {k: _materialize_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize_tree(v) for v in obj)
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
        raise UnsafeCheckpointError(f"refusing global {module}.{name} in a torch file header")


def _read_legacy(path: str) -> dict:
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != _LEGACY_MAGIC:
            raise ValueError(
                f"{path}: not a torch.save file (neither zip format nor legacy magic number)."
            )
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


def load(path: str, hint: str = "") -> Any:
    """The object a ``torch.save`` file holds, tensors as numpy arrays (nested dicts kept)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist. {hint}".strip())
    return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)


def read_state_dict(path: str, hint: str = "") -> dict[str, np.ndarray]:
    """A ``torch.save``d state dict as ``{name: numpy array}`` (a ``{'state_dict': ...}``
    wrapper is unwrapped; non-tensor entries are dropped)."""
    obj = load(path, hint)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (mapping name -> tensor), got {type(obj)}")
    return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
