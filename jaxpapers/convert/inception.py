"""Converter: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` -> Flax FIDInceptionV3.

The file (a PyTorch state dict of the TF-2015 FID Inception, published on pytorch-fid's GitHub
release page ``fid_weights``) cannot be downloaded on our machines; the user provides it:

    python -m jaxpapers.tools.convert_inception --src pt_inception-2015-12-05-6726825d.pth \
        --dst ~/.cache/jaxpapers/fid_inception_v3.npz

The PyTorch file is read WITHOUT torch by ``jaxpapers.convert.torch_pickle`` (a restricted
unpickler that never runs code from the file; zip and legacy formats, the 2019 release is legacy).

Key mapping (PyTorch -> Flax): ``X.conv.weight`` (O,I,kh,kw) -> ``params/X/conv/kernel``
(kh,kw,I,O); ``X.bn.weight|bias`` -> ``params/X/bn/scale|bias``; ``X.bn.running_mean|var`` ->
``batch_stats/X/bn/mean|var``; ``fc.weight`` (1008,2048) -> ``params/fc/kernel`` (2048,1008).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from jaxpapers.convert import torch_pickle
from jaxpapers.layers.inception import FIDInceptionV3

FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
CONVERTED_NAME = "fid_inception_v3.npz"
SOURCE_HINT = (
    "Get the FID Inception weights file '" + FILE_NAME + "' from the 'fid_weights' release of "
    "the GitHub project mseitzer/pytorch-fid (pytorch-fid downloads it to "
    "~/.cache/torch/hub/checkpoints/), copy it to this machine and pass its path "
    "(cfg.inception_weights / --inception_weights) or put it in "
    "$JAXPAPERS_CACHE (default ~/.cache/jaxpapers/)."
)


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads the pytorch-fid state dict into numpy arrays, without torch (``torch_pickle``)."""
    return torch_pickle.read_state_dict(path, hint=SOURCE_HINT)


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
