"""Converter: official FROM PyTorch checkpoint (`LResNet50E_IR_Occ`, the 3d variant) -> our params.

Reading never executes code from the file (`jaxpapers.convert.torch_pickle`: any global beyond
tensors and dicts, e.g. `os.system`, raises `UnsafeCheckpointError`); torch is not needed. Legacy
(pre-1.6, non-zip) files are refused.

Layout changes: conv (O, I, kh, kw) -> (kh, kw, I, O); Linear (out, in) -> (in, out); vectors and
Linear rows over a flattened NCHW map (fc.0, fc.2, regress.0, regress.2) are permuted from (C,H,W)
to our (H,W,C) flattening.  Unused official FPN weights (P4_2, P5_2, P6, P7_2) are dropped.

Usage:
  params, batch_stats = convert.load_official(path, config)  # config: configs/from_occlusion.py
"""

from __future__ import annotations

import zipfile

import numpy as np

from jaxpapers.convert import torch_pickle
from jaxpapers.layers.face_backbones import feature_hw

UnsafeCheckpointError = torch_pickle.UnsafeCheckpointError


def read_torch_zip(path: str) -> dict:
    """Reads a PyTorch checkpoint into nested dicts of NumPy arrays, executing no code."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a PyTorch zip checkpoint (torch >= 1.6 format); re-save "
            "it with torch.save(..., _use_new_zipfile_serialization=True)."
        )
    return torch_pickle.load(path)


def _conv(w):
    return np.transpose(w, (2, 3, 1, 0))


def _bn(sd, k, use_scale=True):
    p = {"bias": sd[f"{k}.bias"]}
    if use_scale:
        p["scale"] = sd[f"{k}.weight"]
    return p, {"mean": sd[f"{k}.running_mean"], "var": sd[f"{k}.running_var"]}


def _chw_to_hwc(v, c, h, w):
    return v.reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def _linear_chw(wt, c, h, w):
    out = wt.shape[0]
    return wt.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)


def official_to_params(state_dict: dict, classifier: dict, config) -> tuple[dict, dict]:
    """Maps the official `state_dict` (+ classifier) to ({'net', 'cls'} params, batch_stats)."""
    sd = {
        k.removeprefix("module."): np.asarray(v, np.float32)
        for k, v in state_dict.items()
        if not k.endswith("num_batches_tracked")
    }
    c = int(config.model.widths[-1])
    h, w = feature_hw(tuple(config.data.image_size))
    params: dict = {"backbone": {}, "head": {}, "fpn": {}, "mask_decoder": {}, "opp": {}}
    stats: dict = {"backbone": {}, "head": {}, "mask_decoder": {}, "opp": {}}
    bb, bbs = params["backbone"], stats["backbone"]
    bb["stem_conv"] = {"kernel": _conv(sd["conv1.weight"])}
    bb["stem_bn"], bbs["stem_bn"] = _bn(sd, "bn1")
    bb["stem_prelu"] = {"slope": sd["prelu1.weight"]}
    for s, depth in enumerate(config.model.depths):
        for u in range(depth):
            k, name = f"layer{s + 1}.{u}", f"stage{s + 1}_unit{u}"
            p, st = {}, {}
            for b in ("bn1", "bn2", "bn3"):
                p[b], st[b] = _bn(sd, f"{k}.{b}")
            p["conv1"] = {"kernel": _conv(sd[f"{k}.conv1.weight"])}
            p["conv2"] = {"kernel": _conv(sd[f"{k}.conv2.weight"])}
            p["prelu"] = {"slope": sd[f"{k}.prelu1.weight"]}
            if f"{k}.downsample.0.weight" in sd:
                p["down_conv"] = {"kernel": _conv(sd[f"{k}.downsample.0.weight"])}
                p["down_bn"], st["down_bn"] = _bn(sd, f"{k}.downsample.1")
            bb[name], bbs[name] = p, st
    for name in ("P5_1", "P4_1", "P3_1", "P3_2"):
        params["fpn"][name] = {
            "kernel": _conv(sd[f"fpn.{name}.weight"]),
            "bias": sd[f"fpn.{name}.bias"],
        }
    md, mds = params["mask_decoder"], stats["mask_decoder"]
    md["conv1"] = {"kernel": _conv(sd["mask.0.weight"])}
    md["prelu1"] = {"slope": sd["mask.1.weight"]}
    md["bn1"], mds["bn1"] = _bn(sd, "mask.2")
    md["conv2"] = {"kernel": _conv(sd["mask.3.weight"])}
    for ours, theirs, tree in (("head", "fc", params["head"]), ("opp", "regress", params["opp"])):
        bn_in, st_in = _bn(sd, f"{theirs}.0")
        tree["bn_in"] = {k: _chw_to_hwc(v, c, h, w) for k, v in bn_in.items()}
        stats[ours]["bn_in"] = {k: _chw_to_hwc(v, c, h, w) for k, v in st_in.items()}
        tree["fc"] = {"kernel": _linear_chw(sd[f"{theirs}.2.weight"], c, h, w)}
        if f"{theirs}.2.bias" in sd:
            tree["fc"]["bias"] = sd[f"{theirs}.2.bias"]
        tree["bn_out"], stats[ours]["bn_out"] = _bn(sd, f"{theirs}.3")
    if "weight" not in classifier:
        raise ValueError("The checkpoint has no classifier weight (CosMarginProduct.weight).")
    cls = {"centres": np.asarray(classifier["weight"], np.float32)}
    return {"net": params, "cls": cls}, stats


def load_official(path: str, config) -> tuple[dict, dict]:
    """Reads an official checkpoint ({'state_dict', 'classifier'} or a bare state dict)."""
    ckpt = read_torch_zip(path)
    if "state_dict" in ckpt:
        return official_to_params(ckpt["state_dict"], ckpt.get("classifier", {}), config)
    raise ValueError(
        f"{path}: expected a dict with 'state_dict' (and 'classifier'); keys {sorted(ckpt)[:10]}."
    )
