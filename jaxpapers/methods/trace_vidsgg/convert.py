"""Converters: official PyTorch checkpoints of TRACE's relation backbones -> our parameter trees.

Files are read without torch by the suite's restricted unpickler (``jaxpapers.convert.
torch_pickle``); a ``{'model': ...}`` (Detectron / TRACE) or ``{'state_dict': ...}`` (mmaction2)
wrapper is unwrapped. The key prefix is found automatically (``Prd_RCNN2D.``, ``Conv_Body.``,
``backbone.``, ``Prd_RCNN.``, ``module.`` or none), or given.

* ``resnet50_dc5_params``: TRACE's 2D body (``RESNETS.PRD_2D_PRETRAINED_WEIGHTS``, e.g.
  ``detection_models/ag/res50/COCO_pretrained/res50_1it.pth``, or a trained TRACE model's
  ``Prd_RCNN2D.*``) in Detectron's layout (``res1.conv1.weight``, ``res1.bn1.{weight,bias}``,
  ``res{2..5}.{j}.conv{1,2,3}.weight``, ``bn{1,2,3}``, ``downsample.{0,1}``; AffineChannel
  norms), or a torchvision ResNet-50 (``conv1.weight``, ``bn1.*``, ``layer{1..4}.{j}...``;
  ``fc.*`` is ignored).
* ``i3d_params``: the I3D-NL ResNet-50 (``RESNETS.VG_PRD_PRETRAINED_WEIGHTS``, mmaction2's
  ``i3d_nl_dot_product_r50_32x2x1_100e_kinetics400_rgb_20200814-7c30d5bb.pth``: keys
  ``backbone.conv1.conv.weight``, ``backbone.layer2.1.non_local_block.g.0.conv.weight`` ...;
  ``cls_head.*`` is ignored), or a trained TRACE model's ``Prd_RCNN.*``.

BatchNorms with running statistics are folded into our affine norms:
scale = w / sqrt(var + eps), bias = b - mean * scale (eps 1e-5, PyTorch's default). Kernels go
OI(D)HW -> (D)HWIO. Every parameter of our tree must be found with the right shape; a missing
key or a shape mismatch raises ``ValueError`` naming the key (keys we do not use are ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.convert import torch_pickle
from jaxpapers.layers import resnet
from jaxpapers.methods.trace_vidsgg import backbones

BN_EPS = 1e-5
_PREFIXES = ("Prd_RCNN2D.", "Conv_Body.", "backbone.", "Prd_RCNN.", "module.", "")


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """``{name: array}`` of a torch.save file (Detectron/TRACE ``model`` wrapper unwrapped)."""
    obj = torch_pickle.load(path, hint="Pass the official PyTorch checkpoint file.")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(obj)}.")
    return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}


def _find_prefix(sd: dict, anchor: str, where: str) -> str:
    for p in _PREFIXES:
        if p + anchor in sd:
            return p
    hits = [k[: -len(anchor)] for k in sd if k.endswith(anchor)]
    if hits:
        return sorted(hits, key=len)[0]
    raise ValueError(
        f"{where}: no key ending in {anchor!r}; not a checkpoint in the expected layout "
        f"(first keys: {sorted(sd)[:5]})."
    )


def _kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch conv (O, I, [D,] H, W) or linear (O, I) weight -> flax kernel."""
    if w.ndim == 2:
        return w.T
    return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))


def _norm(sd: dict, key: str) -> dict[str, np.ndarray]:
    """AffineChannel (weight, bias) or BN with running stats -> our folded {scale, bias}."""
    w, b = _get(sd, key + ".weight"), _get(sd, key + ".bias")
    if key + ".running_mean" in sd:
        mean, var = _get(sd, key + ".running_mean"), _get(sd, key + ".running_var")
        scale = w / np.sqrt(var + BN_EPS)
        return {"scale": scale, "bias": b - mean * scale}
    return {"scale": w, "bias": b}


def _get(sd: dict, key: str) -> np.ndarray:
    if key not in sd:
        raise ValueError(f"Checkpoint key {key!r} is missing.")
    return np.asarray(sd[key], np.float32)


def _fill(expected: dict, lookup: Callable[[tuple], np.ndarray]) -> dict:
    """Our nested params from ``lookup(path)``, checked leaf by leaf against ``expected``."""
    out = {}
    for path, leaf in tu.flatten_dict(expected).items():
        val = lookup(path)
        if val.shape != tuple(leaf.shape):
            raise ValueError(
                f"Shape mismatch for {'/'.join(path)}: checkpoint gives {val.shape}, "
                f"the model expects {tuple(leaf.shape)}."
            )
        out[path] = jnp.asarray(val, leaf.dtype)
    return tu.unflatten_dict(out)


def _abstract_params(module, x_shape) -> dict:
    v = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(x_shape)))
    return v["params"]


# ------------------------------------------------------------------------------------- 2D ----


def _torch_key_2d(path: tuple, layout: str) -> str:
    """Our ResNetBody path (without leaf) -> state-dict module name in ``layout``."""
    head, rest = path[0], list(path[1:])
    if head in ("conv1", "bn1"):
        return ("res1." + head) if layout == "detectron" else head
    stage, j = head[3:].split("_")  # res{s}_{j}
    name = rest[0]
    name = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(name, name)
    if layout == "detectron":
        return f"res{stage}.{j}.{name}"
    return f"layer{int(stage) - 1}.{j}.{name}"


def resnet50_dc5_params(
    sd: dict[str, np.ndarray],
    stage_sizes: Sequence[int] = (3, 4, 6, 3),
    width: int = 64,
    prefix: str | None = None,
) -> dict:
    """Params of ``resnet.ResNetBody(stage_sizes, width, norm='affine')`` from a state dict."""
    detectron = any(k.endswith("res1.conv1.weight") for k in sd)
    layout = "detectron" if detectron else "torchvision"
    anchor = "res1.conv1.weight" if detectron else "conv1.weight"
    if prefix is None:
        prefix = _find_prefix(sd, anchor, "ResNet-50 checkpoint")
    body = resnet.ResNetBody(stage_sizes=tuple(stage_sizes), width=width, norm="affine")
    expected = _abstract_params(body, (1, 64, 64, 3))

    def lookup(path):
        mod = prefix + _torch_key_2d(path[:-1], layout)
        if path[-1] == "kernel":
            return _kernel(_get(sd, mod + ".weight"))
        return _norm(sd, mod)[path[-1]]

    return _fill(expected, lookup)


# ------------------------------------------------------------------------------------- 3D ----


def _torch_key_3d(path: tuple) -> str:
    """Our I3DResNet path (without leaf) -> mmaction2 module name."""
    out = []
    for part in path:
        if part.startswith("layer") and "_" in part:
            out.append(part.replace("_", "."))
        elif part in ("g", "phi"):  # sub_sample wraps them in nn.Sequential(conv, pool)
            out.append(part + ".0.conv")
        elif part == "theta":
            out.append("theta.conv")
        else:
            out.append(part)
    return ".".join(out)


def i3d_params(
    sd: dict[str, np.ndarray], module: backbones.I3DResNet | None = None, prefix: str | None = None
) -> dict:
    """Params of ``backbones.I3DResNet`` (default: official I3D-NL-R50-DC5) from a state dict."""
    module = module or backbones.I3DResNet()
    if prefix is None:
        prefix = _find_prefix(sd, "conv1.conv.weight", "I3D checkpoint")
    expected = _abstract_params(module, (1, 8, 32, 32, 3))

    def lookup(path):
        mod = prefix + _torch_key_3d(path[:-1])
        leaf = path[-1]
        if leaf == "kernel":
            return _kernel(_get(sd, mod + ".weight"))
        if path[-2] == "bn":
            return _norm(sd, mod)[leaf]
        return _get(sd, mod + "." + leaf)  # conv bias of g / theta / phi

    return _fill(expected, lookup)


def load_resnet50_dc5(path: str, **kw) -> dict:
    return resnet50_dc5_params(read_checkpoint(path), **kw)


def load_i3d(path: str, **kw) -> dict:
    return i3d_params(read_checkpoint(path), **kw)
