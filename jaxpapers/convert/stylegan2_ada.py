"""Reads stylegan2-ada-pytorch / stylegan3 network pickles WITHOUT torch and WITHOUT their code.

The ``.pkl`` files NVIDIA serves (``network-snapshot-*.pkl``, ``stylegan3-t-ffhq-1024x1024.pkl``)
are a plain pickle of ``dict(G=..., D=..., G_ema=..., augment_pipe=..., training_set_kwargs=...)``
whose networks were wrapped by ``torch_utils.persistence``: each module is pickled as
``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version, module_src,
class_name, state)``, where ``module_src`` is the *source code* of the network module (the
official loader executes it) and ``state`` the module's ``__dict__`` (``_parameters``,
``_buffers``, ``_modules``, ``_init_kwargs``, ...). Tensors inside are plain-pickled torch
tensors: ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` (wrapped by
``_rebuild_parameter`` for parameters) with ``storage = torch.storage._load_from_bytes(b)``, ``b``
a legacy-format ``torch.save`` of that storage.

This reader never executes ``module_src``: persistent objects become inert
:class:`PersistentModule` records, and the restricted unpickler admits only the globals listed
above (plus checked NumPy/container reconstructors for the NumPy attributes StyleGAN3 keeps);
anything else is refused. It returns the parameters and buffers of G, D and G_ema as a flat
``{'G.mapping.fc0.weight': array, 'G_ema.synthesis.b4.conv1.noise_const': array, ...}``
(torch ``state_dict`` names, prefixed by the network's key), in the official layouts (OIHW
kernels, [out, in] dense weights); mapping them onto this suite's StyleGAN2 trees is a converter's
job.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from jaxpapers import safe_io
from jaxpapers.convert import torch_pickle

NETWORKS = ("G", "D", "G_ema")
_TENSOR = safe_io._Token("torch.Tensor")
_PARAMETER = safe_io._Token("torch.nn.parameter.Parameter")


@dataclasses.dataclass
class PersistentModule:
    """An inert record of one ``torch_utils.persistence`` object (its source is never run)."""

    class_name: str
    state: dict
    module_src: str  # kept only so a caller can inspect it; nothing here executes it


@dataclasses.dataclass
class NetworkPickle:
    tensors: dict[str, np.ndarray]  # 'G.mapping.fc0.weight' -> array (params and buffers)
    init_kwargs: dict[str, dict]  # 'G' -> constructor kwargs (z_dim, w_dim, img_resolution, ...)
    class_names: dict[str, str]  # 'G' -> 'Generator'


def _allowed(where: str) -> dict[tuple[str, str], Any]:
    def reconstruct_persistent_obj(meta):
        if not (
            isinstance(meta, dict)
            and meta.get("type") == "class"
            and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)
        ):
            raise ValueError(f"{where}: a persistent object's meta is not a class record.")
        src = meta.get("module_src")
        return PersistentModule(
            meta["class_name"], meta["state"], src if isinstance(src, str) else ""
        )

    def load_from_bytes(data):
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"{where}: an embedded storage is {type(data).__name__}, not bytes.")
        st = torch_pickle.read_legacy(io.BytesIO(bytes(data)), f"{where} (embedded storage)")
        if not isinstance(st, torch_pickle._Storage):
            raise ValueError(f"{where}: an embedded torch.save holds no storage.")
        return st

    def rebuild_from_type_v2(func, new_type, args, state):
        # torch >= 1.12 wraps tensors of subclasses this way; only plain tensors/parameters here.
        if new_type not in (_TENSOR, _PARAMETER) or state:
            raise safe_io.UnsafeFileError(f"{where}: tensor subclass {new_type!r} is not allowed.")
        return func(*args)

    def rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
        return data

    return {
        **safe_io.NUMPY_GLOBALS,
        **safe_io.CONTAINER_GLOBALS,
        **torch_pickle.tensor_globals(where),
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): safe_io.EasyDictStub,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("torch._utils", "_rebuild_from_type_v2"): rebuild_from_type_v2,
        ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter_with_state,
        ("torch", "Tensor"): _TENSOR,
        ("torch._tensor", "Tensor"): _TENSOR,
        ("torch.nn.parameter", "Parameter"): _PARAMETER,
    }


def _collect(mod: PersistentModule, prefix: str, out: dict, where: str) -> None:
    state = mod.state
    for group in ("_parameters", "_buffers"):
        items = state.get(group) or {}
        if not isinstance(items, dict):
            raise ValueError(f"{where}: {prefix}{group} is not a dict.")
        for name, value in items.items():
            if value is None:
                continue
            value = torch_pickle.materialize_tree(value)
            if not isinstance(value, np.ndarray):
                raise ValueError(
                    f"{where}: {prefix}{name} is {type(value).__name__}, not a tensor."
                )
            out[prefix + str(name)] = value
    for name, sub in (state.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentModule):
            raise ValueError(f"{where}: submodule {prefix}{name} is not a persistent module.")
        _collect(sub, f"{prefix}{name}.", out, where)


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load(path: str) -> NetworkPickle:
    """Parameters/buffers of G, D and G_ema of an official network pickle (nothing executed)."""
    obj = safe_io.load_pickle(path, _allowed(path))
    if not isinstance(obj, dict) or not all(k in obj for k in NETWORKS):
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: expected a dict with {NETWORKS} (official layout), got {have}.")
    tensors: dict[str, np.ndarray] = {}
    kwargs, classes = {}, {}
    for key in NETWORKS:
        net = obj[key]
        if not isinstance(net, PersistentModule):
            raise ValueError(f"{path}: {key} is not a torch_utils.persistence network.")
        _collect(net, key + ".", tensors, path)
        kwargs[key] = _plain(net.state.get("_init_kwargs") or {})
        classes[key] = net.class_name
    return NetworkPickle(tensors=tensors, init_kwargs=kwargs, class_names=classes)


def read_params(path: str) -> dict[str, np.ndarray]:
    """``{'G.…', 'D.…', 'G_ema.…': array}``: every parameter and buffer (incl. ``noise_const``)."""
    return load(path).tensors
