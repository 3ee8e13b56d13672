"""The one place where files from outside are unpickled, and where their paths are confined.

A pickle is a program: ``pickle.load`` on a downloaded file runs whatever callable the file
names. Every reader of the suite therefore goes through :class:`RestrictedUnpickler`, which
resolves only the globals the caller lists and refuses everything else *before* anything is
called. The NumPy and container stand-ins below are what plain NumPy/stdlib pickles need; they
check their arguments so that an allowed global cannot be turned into an arbitrary allocation
(``numpy.ndarray((10**12,))``, ``bytes(2**40)``) or an import (``_codecs.encode(s, 'x')``).

Rules for callers: pass file objects opened in binary mode (or bytes); never hand an allowed
global that executes code, imports, opens files or allocates from an argument it does not bound.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


class UnsafeFileError(pickle.UnpicklingError, ValueError):
    """A file names a global (callable/class) its format does not need, so it is refused."""


class _Token:
    """A non-callable stand-in for a class that a pickle may name only as an argument."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    def __setattr__(self, key, value):  # BUILD opcodes must not alter a shared token
        raise UnsafeFileError(f"a pickle tried to set {key!r} on {self!r}.")

    def __repr__(self) -> str:
        return f"<{self.name}>"


NDARRAY = _Token("numpy.ndarray")


def _np_reconstruct(subtype, shape, dtype):
    # NumPy pickles an array as _reconstruct(ndarray, (0,), b'b') followed by __setstate__ with
    # the real shape, dtype and bytes (which NumPy checks against each other).
    if subtype is not NDARRAY or tuple(shape) != (0,):
        raise UnsafeFileError(
            f"numpy _reconstruct({subtype!r}, {shape!r}) is not how NumPy pickles arrays."
        )
    return np.ndarray((0,), np.uint8)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype):
        raise UnsafeFileError("numpy scalar() without a dtype.")
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UnsafeFileError(f"numpy scalar of dtype {dtype} with {len(data or b'')} bytes.")
    return np.frombuffer(data, dtype)[0]


def _np_dtype(obj, align=False, copy=False):
    if not isinstance(obj, str):
        raise UnsafeFileError(f"numpy dtype({obj!r}): only dtype names appear in NumPy pickles.")
    return np.dtype(obj, align, copy)


def _np_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeFileError("numpy _frombuffer with an object or missing dtype.")
    return np.frombuffer(buf, dtype).reshape(shape, order=order).copy()


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    # Protocol 0-2 pickles store bytes as _codecs.encode(str, 'latin1'); any other codec name
    # would make the codec registry import a module.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeFileError(f"_codecs.encode with codec {encoding!r} is not allowed.")
    return text.encode("latin1", errors)


def _bytes(*args):
    if args and not isinstance(args[0], (bytes, bytearray)):
        raise UnsafeFileError("bytes() from a non-bytes argument is not allowed.")
    return bytes(*args[:1])


def _set(items=()):
    return set(items)


def _frozenset(items=()):
    return frozenset(items)


def _ordered_dict(items=()):
    return collections.OrderedDict(items)


# The globals plain NumPy arrays/scalars need (both the numpy 1.x and 2.x module names).
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core", "numpy._core"):
    NUMPY_GLOBALS[(f"{_mod}.multiarray", "_reconstruct")] = _np_reconstruct
    NUMPY_GLOBALS[(f"{_mod}.multiarray", "scalar")] = _np_scalar
    NUMPY_GLOBALS[(f"{_mod}.numeric", "_frombuffer")] = _np_frombuffer
NUMPY_GLOBALS[("numpy", "ndarray")] = NDARRAY
NUMPY_GLOBALS[("numpy", "dtype")] = _np_dtype

# Containers and the byte-string helpers of older protocols.
CONTAINER_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "bytes"): _bytes,
    ("_codecs", "encode"): _latin1_encode,
}


class EasyDictStub(dict):
    """Inert stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _fresh(value):
    """A per-unpickler copy of an allowed global, so that a BUILD opcode aimed at the global
    itself (setting ``__defaults__`` of a function, attributes of a class) changes only this
    load's copy, never the process-wide object other files are read with."""
    if isinstance(value, type):
        return type(value.__name__, (value,), {"__module__": value.__module__})
    if callable(value) and not isinstance(value, _Token):

        def call(*args, **kwargs):
            return value(*args, **kwargs)

        call.__name__ = getattr(value, "__name__", "call")
        return call
    return value


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed[(module, name)]`` and nothing else.

    ``where`` names the file in errors. ``persistent_load`` (optional) resolves persistent ids
    (torch storages); without it a persistent id is refused. ``encoding='latin1'`` lets NumPy
    arrays pickled by Python 2 load (their bytes arrive as str).
    """

    def __init__(
        self,
        file,
        allowed: Mapping[tuple[str, str], Any],
        *,
        where: str,
        persistent_load: Callable[[Any], Any] | None = None,
        encoding: str = "latin1",
    ):
        super().__init__(file, encoding=encoding)
        self._allowed = {k: _fresh(v) for k, v in allowed.items()}
        self._where, self._persistent = where, persistent_load

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        raise UnsafeFileError(
            f"{self._where}: refusing global {module}.{name}: this file format does not need it "
            "and loading it could run code."
        )

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafeFileError(f"{self._where}: unexpected persistent id in the pickle.")
        return self._persistent(pid)


def load_pickle(
    source,
    allowed: Mapping[tuple[str, str], Any],
    *,
    where: str = "",
    persistent_load: Callable[[Any], Any] | None = None,
) -> Any:
    """Unpickles a path, bytes or binary file with :class:`RestrictedUnpickler`.

    Refused globals raise :class:`UnsafeFileError`; malformed data (truncated streams, absurd
    declared lengths, bad NumPy state) raise ``ValueError``; both name the file.
    """
    if isinstance(source, (str, os.PathLike)):
        where = where or os.fspath(source)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{where} does not exist.")
        with open(source, "rb") as f:
            return load_pickle(f, allowed, where=where, persistent_load=persistent_load)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    where = where or "<pickle>"
    try:
        return RestrictedUnpickler(
            source, allowed, where=where, persistent_load=persistent_load
        ).load()
    except UnsafeFileError as e:
        if str(e).startswith(where):
            raise
        raise type(e)(f"{where}: {e}") from None  # a stand-in's own check
    except ValueError as e:
        if str(e).startswith(where):  # a reconstructor's own check, already naming the file
            raise
        raise ValueError(f"{where}: not a valid pickle of this format ({e}).") from e
    except (MemoryError, RecursionError, OverflowError) as e:
        raise ValueError(f"{where}: malformed pickle ({type(e).__name__}).") from e
    except Exception as e:  # noqa: BLE001 - the C unpickler raises many types on bad input.
        raise ValueError(
            f"{where}: not a valid pickle of this format ({type(e).__name__}: {e})."
        ) from e


def load_numpy_pickle(path: str, extra: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """A pickle of plain containers, NumPy arrays and scalars (nothing else is admitted)."""
    return load_pickle(path, {**NUMPY_GLOBALS, **CONTAINER_GLOBALS, **(extra or {})})


def confined_join(root: str, rel: str, *, what: str = "path") -> str:
    """``root/rel`` when ``rel`` is a relative path that stays inside ``root``; else ValueError.

    The check is lexical (absolute paths, ``..`` components, NUL bytes): a listed file name must
    not reach outside the data set's folder, while symlinks the user placed inside it are honoured.
    """
    if not rel or "\0" in rel or os.path.isabs(rel) or (os.altsep and rel.startswith(os.altsep)):
        raise ValueError(f"{what} {rel!r} is not a relative path inside {root!r}.")
    parts = rel.replace(os.altsep or os.sep, os.sep).split(os.sep)
    if any(p in ("..",) for p in parts) or os.path.splitdrive(rel)[0]:
        raise ValueError(f"{what} {rel!r} escapes {root!r} ('..' is not allowed).")
    return os.path.join(root, rel)
