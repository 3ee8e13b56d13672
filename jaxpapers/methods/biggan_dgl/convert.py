"""BigGAN-PyTorch state dicts (``G.pth``, ``G_ema.pth``, ``D.pth``) -> our Flax variable trees.

Reads ``torch.save`` files **without torch and without executing code from the file**
(``jaxpapers.convert.torch_pickle``: any global beyond tensors and dicts, e.g. ``os.system``,
raises ``UnsafeCheckpointError``).

Name mapping (BigGAN-PyTorch ``BigGAN.py`` module tree -> ours): ``blocks.{i}.0.X`` ->
``block{i}/X``, ``blocks.{i}.1.X`` -> ``attn{i}/X`` (attention sits in the same ModuleList),
``bnK.gain|bias.weight`` -> ``bnK/gain|bias/kernel``, ``bnK.stored_mean|var`` ->
``batch_stats/.../bnK/bn/mean|var``, ``output_layer.0`` -> ``output_bn``, ``output_layer.2`` ->
``output_conv``, ``shared.weight`` / ``embed.weight`` -> ``embedding``, ``u0``/``sv0`` ->
``spectral/.../u|sv``. Conv weights OIHW -> HWIO, linear weights [out, in] -> [in, out].

Command line: ``python -m jaxpapers.tools.convert_biggan`` (writes an ``init_from`` checkpoint).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from jaxpapers.convert import torch_pickle

UnsafeCheckpointError = torch_pickle.UnsafeCheckpointError


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A ``torch.save``d state dict as ``{name: numpy array}`` (``torch_pickle``, no torch)."""
    return torch_pickle.read_state_dict(path)


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
        raise ValueError(
            f"{'/'.join(path)}: checkpoint shape {value.shape} != ours {ref.shape};"
            " does the config match the checkpoint's (ch, resolution, classes)?"
        )
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
            raise ValueError(
                f"Checkpoint key {key!r} -> {coll}/{'/'.join(path)} has no "
                "counterpart in our model (config mismatch?)."
            )
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
    ge = convert(read_state_dict(g_ema_path), {"params": ref.g, **ref.g_vars}) if g_ema_path else g
    split = lambda v: (v["params"], {c: v[c] for c in steps.G_COLS})
    (gp, gv), (ep, ev) = split(g), split(ge)
    return {
        "teacher": {
            "g": gp,
            "g_vars": gv,
            "d": d["params"],
            "d_vars": {"spectral": d["spectral"]},
            "g_ema": ep,
            "g_ema_vars": ev,
        }
    }
