"""A zip member with a wrong CRC-32 is refused even when the reader uses only part of it.

``zipfile`` verifies a member's CRC only when a read reaches the member's end; the torch reader
keeps only the bytes its tensors use (a tensor viewing part of a storage), so it reads the rest
through too. A flipped byte inside the used part, or in the unused tail, is an error naming the
file, not silently wrong weights.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np
import pytest

from jaxpapers.convert import torch_pickle


class _Global:
    """Written as a GLOBAL opcode (module, name), whatever exists in this process."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # the pickler insists on callables in reduce tuples
        raise AssertionError("never called while writing")


class _Storage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _Tensor:
    """Pickled as torch's ``_rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"), self.args)


class _Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.numel)
        return None


def _save_global(pickler, obj):
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())


_Pickler.dispatch[_Global] = _save_global


def _torch_zip(path, storage: np.ndarray, used: int) -> int:
    """A torch.save-layout zip whose one tensor uses the first ``used`` of ``storage``'s
    elements; returns the file offset of the storage member's bytes."""
    st = _Storage("0", storage.size)
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"w": _Tensor(st, 0, (used,), (1,))})
    with zipfile.ZipFile(path, "w") as zf:  # stored (uncompressed), as torch.save writes
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", storage.astype(np.float32).tobytes())
        zf.writestr("archive/version", "3\n")
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("archive/data/0")
    with open(path, "rb") as f:  # local header: 30 bytes + name + extra field
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len)


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize("where", ["used_part", "unused_tail"])
def test_a_corrupt_partly_read_storage_member_is_refused(tmp_path, where):
    # The tensor uses 64 of the member's 16 KiB: more than zipfile reads ahead (4 KiB), so a
    # reader that stops after the used bytes never reaches the member's end and its CRC check.
    storage = np.arange(4096, dtype=np.float32)
    path = tmp_path / "ckpt.pt"
    start = _torch_zip(path, storage, used=16)
    np.testing.assert_array_equal(torch_pickle.load(str(path))["w"], storage[:16])  # intact
    _flip(path, start + (4 * 3 if where == "used_part" else 4 * 4000))
    with pytest.raises(ValueError, match="corrupt torch zip file.*CRC") as err:
        torch_pickle.load(str(path))
    assert str(path) in str(err.value)


def test_a_corrupt_pickle_member_is_refused(tmp_path):
    """A flipped byte that still unpickles: only the member's CRC can tell."""
    path = tmp_path / "ckpt.pt"
    _torch_zip(path, np.arange(4, dtype=np.float32), used=4)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("archive/data.pkl")
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    data_start = info.header_offset + 30 + int(name_len) + int(extra_len)
    # The device string, which the reader ignores.
    with open(path, "rb") as f:
        f.seek(data_start)
        pkl = f.read(info.compress_size)
    _flip(path, data_start + pkl.index(b"cpu"))
    with pytest.raises(ValueError, match="Bad CRC-32") as err:
        torch_pickle.load(str(path))
    assert str(path) in str(err.value)
