"""Reads ``torch.save`` files (state dicts, nested dicts of tensors) WITHOUT torch, safely.

A pickle is code: a downloaded checkpoint must not be able to run any. The restricted unpickler
(`jaxpapers.safe_io`) admits only the globals a plain checkpoint needs (``collections.OrderedDict``,
the tensor/parameter rebuild functions and the ``torch.*Storage`` type tags, all mapped to numpy);
anything else raises :class:`UnsafeCheckpointError`. Both the zip format (torch >= 1.6) and the
legacy format (one pickle stream followed by the raw storages) are read. Shared by every
converter of the suite (FID Inception, BigGAN-PyTorch, FROM) and by the StyleGAN2-ADA reader.

Malformed files are refused before memory is touched: every tensor's (size, stride, offset) is
checked against its storage's declared length before a view is made, only the bytes the tensors
actually use are kept (the rest of a zip member is streamed through, unkept, so that its CRC-32
is checked: a corrupt member is an error), and every length field is checked against the real
size of the file (or zip member) first.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from jaxpapers import safe_io


class UnsafeCheckpointError(safe_io.UnsafeFileError):
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
# data.pkl of a real checkpoint is a few MB even for billion-parameter models; a bigger one is
# a decompression bomb.
MAX_PICKLE_BYTES = 256 << 20


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes are read only after the pickle told how many the tensors need."""

    def __init__(self, dtype: np.dtype, numel: int, key: str, where: str):
        if not isinstance(numel, int) or numel < 0:
            raise ValueError(f"{where}: storage {key!r} declares {numel!r} elements.")
        self.dtype, self.numel, self.key, self.array = dtype, numel, key, None
        self.need = 0  # elements the tensors viewing this storage reach


class _LazyTensor:
    def __init__(self, storage: _Storage, offset, size, stride, where: str):
        if not isinstance(storage, _Storage):
            raise ValueError(f"{where}: a tensor's storage is {type(storage).__name__}.")
        size, stride = tuple(size), tuple(stride)
        ints = (offset, *size, *stride)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise ValueError(f"{where}: tensor size/stride/offset must be integers, got {ints}.")
        if len(size) != len(stride) or offset < 0 or min(ints) < 0:
            raise ValueError(
                f"{where}: tensor view (offset {offset}, size {size}, stride {stride}) has a "
                "negative entry or mismatched ranks."
            )
        numel = math.prod(size)
        reach = sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        end = 0 if numel == 0 else offset + 1 + reach
        if end > storage.numel:
            raise ValueError(
                f"{where}: tensor view (offset {offset}, size {size}, stride {stride}) reaches "
                f"element {end} of storage {storage.key!r}, which holds {storage.numel}."
            )
        if numel > max(storage.numel, 1):
            # Zero strides (expanded tensors) could otherwise turn 4 bytes into any allocation.
            raise ValueError(
                f"{where}: tensor of {numel} elements views a storage of {storage.numel}."
            )
        storage.need = max(storage.need, end)
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.where = where

    def materialize(self) -> np.ndarray:
        base = self.storage.array
        if base is None or len(base) < self.storage.need:
            raise ValueError(f"{self.where}: a tensor's storage bytes are missing (truncated).")
        if math.prod(self.size) == 0:
            return np.zeros(self.size, base.dtype)
        item = base.dtype.itemsize
        # Bounds were checked in __init__ against the storage, and base holds `need` elements.
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], self.size, [s * item for s in self.stride], writeable=False
        )
        return np.array(view)


def tensor_globals(where: str) -> dict:
    """The globals a pickle of torch tensors may name, mapped to inert numpy rebuilders."""

    def rebuild_tensor(storage, storage_offset, size, stride, *unused):
        return _LazyTensor(storage, storage_offset, size, stride, where)

    def rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
        return data

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): safe_io.CONTAINER_GLOBALS[("collections", "OrderedDict")],
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    }
    for name in _STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


def _refuse_as_checkpoint_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UnsafeCheckpointError:
        raise
    except safe_io.UnsafeFileError as e:
        raise UnsafeCheckpointError(
            f"{e} A checkpoint may hold only tensors and dicts (loading this one could run code)."
        ) from e


def _unpickle(file, where: str, storage_for, extra=None):
    allowed = {**tensor_globals(where), **(extra or {})}
    return _refuse_as_checkpoint_error(
        safe_io.load_pickle, file, allowed, where=where, persistent_load=storage_for
    )


def _storage_pid(pid, where: str):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise ValueError(f"{where}: unexpected persistent id {str(pid)[:200]}")
    _, stype, key, _location, numel = pid[:5]
    if not isinstance(stype, _StorageType):
        raise ValueError(f"{where}: persistent id names storage type {stype!r}.")
    return stype, str(key), numel


def _tensors(obj, out: list) -> list:
    if isinstance(obj, _LazyTensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _tensors(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensors(v, out)
    return out


def materialize_tree(obj):
    """Replaces every lazy tensor of a loaded tree by its numpy array (storages must be read)."""
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, materialize_tree(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(materialize_tree(v) for v in obj)
    return obj


class _BoundedReader(io.RawIOBase):
    """A read-only stream that refuses to deliver more than ``limit`` bytes (inflation bombs)."""

    def __init__(self, raw, limit: int, where: str):
        self._raw, self._left, self._where = raw, limit, where

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left <= 0:
            extra = self._raw.read(1)
            if extra:
                raise ValueError(f"{self._where}: pickle larger than {MAX_PICKLE_BYTES} bytes.")
            return 0
        data = self._raw.read(min(len(b), self._left))
        self._left -= len(data)
        b[: len(data)] = data
        return len(data)


def _drain(stream) -> None:
    """Reads ``stream`` (a zip member) to its end in chunks, keeping nothing.

    ``zipfile`` checks a member's CRC-32 only when a read reaches the member's end, so a reader
    that stops early (tensors using part of a storage, bytes after a pickle's STOP) would accept
    corrupt bytes silently; at the end a wrong CRC raises ``zipfile.BadZipFile``. The cost is
    reading the member's declared size once (``torch.save`` stores members uncompressed: at most
    the file's own size), with memory bounded by the chunk.
    """
    while stream.read(1 << 20):
        pass


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ValueError(f"{path}: zip file without data.pkl; not a torch.save file.")
        prefix = pkl[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}

        def storage_for(pid):
            stype, key, numel = _storage_pid(pid, path)
            if key not in storages:
                storages[key] = _Storage(stype.dtype, numel, key, path)
            return storages[key]

        with zf.open(pkl[0]) as raw:
            reader = io.BufferedReader(_BoundedReader(raw, MAX_PICKLE_BYTES, path))
            obj = _unpickle(reader, path, storage_for)
            _drain(reader)  # bytes after the pickle's STOP: read so that the CRC is checked
        _tensors(obj, [])
        for key, st in storages.items():
            name = f"{prefix}data/{key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise ValueError(f"{path}: storage member {name} is missing.") from None
            nbytes = st.need * st.dtype.itemsize
            if info.file_size < nbytes:
                raise ValueError(
                    f"{path}: storage {name} holds {info.file_size} bytes, its tensors need "
                    f"{nbytes}."
                )
            with zf.open(info) as m:
                data = m.read(nbytes)  # only what the tensors use is kept ...
                _drain(m)  # ... but the whole member is read, so that its CRC is checked
            if len(data) != nbytes:
                raise ValueError(f"{path}: storage {name} is truncated.")
            st.array = np.frombuffer(data, dtype=st.dtype)
        return materialize_tree(obj)


def read_legacy(f, where: str, *, extra_globals=None) -> Any:
    """The object of a legacy-format ``torch.save`` stream ``f`` (lazy tensors materialized).

    A bare storage as the object (what ``torch.storage._load_from_bytes`` holds inside plain
    pickles of tensors) is returned as a :class:`_Storage` with its bytes read.
    """
    start = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(start)
    plain = {}
    header = [safe_io.load_pickle(f, plain, where=where) for _ in range(3)]
    if header[0] != _LEGACY_MAGIC:
        raise ValueError(f"{where}: not a torch.save file (neither zip format nor legacy magic).")
    storages: dict[str, _Storage] = {}

    def storage_for(pid):
        stype, key, numel = _storage_pid(pid, where)
        if len(pid) > 5 and pid[5] is not None:
            raise ValueError(f"{where}: storage views are not supported by this reader.")
        if key not in storages:
            storages[key] = _Storage(stype.dtype, numel, key, where)
        return storages[key]

    obj = _unpickle(f, where, storage_for, extra_globals)
    _tensors(obj, [])
    if isinstance(obj, _Storage):
        obj.need = obj.numel
    keys = safe_io.load_pickle(f, plain, where=where)
    if not isinstance(keys, list):
        raise ValueError(f"{where}: storage key list is missing.")
    for key in keys:
        st = storages.get(str(key))
        if st is None:
            raise ValueError(f"{where}: storage key {key!r} was not declared by the pickle.")
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{where}: truncated storage {key}.")
        (count,) = struct.unpack("<q", head)
        # The size header counts elements (older torch) or bytes (untyped storages).
        item = st.dtype.itemsize
        if count == st.numel * item:
            nbytes = count
        elif count == st.numel:
            nbytes = count * item
        else:
            raise ValueError(
                f"{where}: storage {key} size field {count} disagrees with its declared "
                f"{st.numel} elements."
            )
        left = end - f.tell()
        if nbytes > left:
            raise ValueError(
                f"{where}: storage {key} declares {nbytes} bytes, the file has {left} left."
            )
        data = f.read(st.need * item)
        if len(data) != st.need * item:
            raise ValueError(f"{where}: truncated storage {key}.")
        f.seek(nbytes - len(data), os.SEEK_CUR)
        st.array = np.frombuffer(data, dtype=st.dtype)
    return materialize_tree(obj)


def load(path: str, hint: str = "") -> Any:
    """The object a ``torch.save`` file holds, tensors as numpy arrays (nested dicts kept)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist. {hint}".strip())
    if zipfile.is_zipfile(path):
        try:
            return _read_zip(path)
        except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as e:
            raise ValueError(f"{path}: corrupt torch zip file ({e}).") from e
    with open(path, "rb") as f:
        return read_legacy(f, path)


def read_state_dict(path: str, hint: str = "") -> dict[str, np.ndarray]:
    """A ``torch.save``d state dict as ``{name: numpy array}`` (a ``{'state_dict': ...}``
    wrapper is unwrapped; non-tensor entries are dropped)."""
    obj = load(path, hint)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (mapping name -> tensor), got {type(obj)}")
    return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
