"""Compares our StRA modules with the official PyTorch ones on shared random weights.

The .npz comes from a script run OUTSIDE the project against the official code (see README,
'Check against the official code'): it holds official state_dicts, inputs and outputs.
Usage: python -m jaxpapers.methods.stra.check_official /tmp/stra_official.npz
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.methods.stra.attention import LocalStructuralAttention
from jaxpapers.methods.stra.convert import from_torch
from jaxpapers.methods.stra.model import StRAResNet


def _sd(data, prefix: str) -> dict[str, np.ndarray]:
    n = len(prefix) + 3
    return {k[n:]: data[k] for k in data.files if k.startswith(prefix + "sd/")}


def main(path: str) -> dict[str, float]:
    """Prints and returns the max abs differences of each compared output."""
    data = np.load(path)
    res = {}
    x = jnp.asarray(data["block/x"].transpose(0, 2, 3, 1))
    blk = LocalStructuralAttention(features=512, groups=8, kernel_size=3, stride=1, ratio=4)
    tmpl = blk.init(jax.random.key(0), x, train=False)
    var = from_torch(_sd(data, "block/"), tmpl)
    y, div, _ = blk.apply(var, x, train=False)
    res["block_eval_out"] = float(
        np.abs(np.asarray(y).transpose(0, 3, 1, 2) - data["block/y_eval"]).max()
    )
    res["block_eval_div"] = float(np.abs(np.asarray(div) - data["block/div_eval"]).max())
    (y, div, _), _ = blk.apply(var, x, train=True, mutable=["batch_stats"])
    res["block_train_out"] = float(
        np.abs(np.asarray(y).transpose(0, 3, 1, 2) - data["block/y_train"]).max()
    )
    res["block_train_div"] = float(np.abs(np.asarray(div) - data["block/div_train"]).max())
    res["block_out_scale"] = float(np.abs(data["block/y_eval"]).max())
    if "net/x" in data.files:
        xi = jnp.asarray(data["net/x"].transpose(0, 2, 3, 1))
        net = StRAResNet(num_classes=751)
        tmpl = jax.eval_shape(lambda: net.init(jax.random.key(0), xi, train=False))
        var = from_torch(_sd(data, "net/"), tmpl)
        _, feat = net.apply(var, xi, train=False)
        ref = data["net/feat_eval"]
        res["net_eval_feature"] = float(np.abs(np.asarray(feat) - ref).max())
        res["net_feature_scale"] = float(np.abs(ref).max())
    for k, v in res.items():
        print(f"{k}: {v:.3g}")
    return res


if __name__ == "__main__":
    main(sys.argv[1])
