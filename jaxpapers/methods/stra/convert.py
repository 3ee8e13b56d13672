"""Converter from the official PyTorch StRA state_dict (shenao-zhang/StRA) to our Flax variables.

Works on a plain ``{name: numpy array}`` dict (e.g. ``torch.load(...)`` turned into numpy, or an
``.npz``), so the project needs no torch. Names map by rule; every template leaf must be filled
and every torch tensor used (except ``num_batches_tracked``), so a mismatch fails loudly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

# Official module path -> our module path (applied in order).
_RULES = (
    (r"^layer(\d+)\.(\d+)\.", r"layer\1_\2/"),
    (r"downsample\.0", "downsample_conv"),
    (r"downsample\.1", "downsample_bn"),
    (r"mask_conv\.0", "mask_conv1"),
    (r"mask_conv\.1", "mask_bn1"),
    (r"mask_conv\.3", "mask_conv2"),
    (r"mask_conv\.4", "mask_bn2"),
    (r"moe\.gap_weight\.0", "moe/gap_conv1"),
    (r"moe\.gap_weight\.1", "moe/gap_bn1"),
    (r"moe\.gap_weight\.3", "moe/gap_conv2"),
    (r"moe\.gap_weight\.4", "moe/gap_bn2"),
    (r"moe\.bn2", "moe/bn2"),
    (r"moe\.bn", "moe/bn"),
    (r"^global_avg_pool\.1", "neck_conv"),
    (r"^global_avg_pool\.2", "neck_bn"),
    (r"conv2\.", "conv2/"),
)


def _target(name: str) -> tuple[str, str, str] | None:
    """(collection, module path, leaf name) for one torch tensor name, None if ignored."""
    module, _, leaf = name.rpartition(".")
    if leaf == "num_batches_tracked":
        return None
    for pattern, repl in _RULES:
        module = re.sub(pattern, repl, module)
    module = module.replace(".", "/")
    if leaf in ("running_mean", "running_var"):
        return "batch_stats", module, "mean" if leaf == "running_mean" else "var"
    return "params", module, leaf


def _convert(arr: np.ndarray, leaf: str, template: Any) -> np.ndarray:
    """Transposes a torch tensor into Flax layout (conv OIHW -> HWIO, linear OI -> IO)."""
    if arr.ndim == 4:
        arr = arr.transpose(2, 3, 1, 0)
        if len(template.shape) == 2:  # 1x1 conv on a pooled vector, stored as Dense
            arr = arr[0, 0]
    elif arr.ndim == 2:
        arr = arr.T
    if arr.shape != template.shape:
        raise ValueError(
            f"Shape mismatch for {leaf}: torch gives {arr.shape}, ours {template.shape}."
        )
    return arr.astype(template.dtype)


def from_torch(
    state_dict: Mapping[str, np.ndarray], variables: Mapping[str, Any], strict: bool = True
) -> dict:
    """Returns a copy of ``variables`` ({'params', 'batch_stats'}) filled from ``state_dict``.

    Args:
      state_dict: official names -> arrays (torch layout).
      variables: a template from ``model.init`` (or ``jax.eval_shape`` of it) with the same
        architecture.
      strict: False = the official ``init_pretrained_weights``: copy only tensors whose name and
        shape match (e.g. torchvision ImageNet ResNet-50 weights into StRA-ResNet-50) and keep
        the template's (initialised) values elsewhere; ``variables`` must then hold arrays.

    Raises:
      KeyError: (strict) a torch tensor has no place in the template or a leaf was not filled.
    """
    flat = {
        c: traverse_util.flatten_dict(dict(variables[c]), sep="/")
        for c in ("params", "batch_stats")
        if c in variables
    }
    out = {c: {} for c in flat}
    for name, arr in state_dict.items():
        tgt = _target(name)
        if tgt is None:
            continue
        coll, module, leaf = tgt
        if coll == "params":
            # A 1-d 'weight' is a BatchNorm scale; conv and linear weights have ndim >= 2.
            leaf = "bias" if leaf == "bias" else ("scale" if np.ndim(arr) == 1 else "kernel")
        key = f"{module}/{leaf}"
        if coll not in flat or key not in flat[coll]:
            if not strict:
                continue
            raise KeyError(f"Official tensor {name!r} maps to {coll}:{key}, absent in our model.")
        try:
            out[coll][key] = _convert(np.asarray(arr), key, flat[coll][key])
        except ValueError:
            if strict:
                raise
    if not strict:
        for c in flat:
            out[c] = {**flat[c], **out[c]}
    for c in flat:
        missing = sorted(set(flat[c]) - set(out[c]))
        if missing:
            raise KeyError(f"Not filled from the state_dict ({c}): {missing[:8]} ...")
    return {c: traverse_util.unflatten_dict(out[c], sep="/") for c in out}
