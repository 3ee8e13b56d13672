"""Compares our StRA modules with the official PyTorch ones on shared random weights.

    python -m jaxpapers.tools.stra_check_official --npz=/tmp/stra_official.npz

The .npz is written by ``benchmarks/compare_stra/torch_side.py``, run OUTSIDE the project in a
torch environment against the official code (see the StRA README, 'Check against the official
code'): it holds official state_dicts, inputs and outputs. Prints the max abs difference of every
compared output.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from jaxpapers.methods.stra.attention import LocalStructuralAttention
from jaxpapers.methods.stra.convert import from_torch
from jaxpapers.methods.stra.model import StRAResNet

PROG = "jaxpapers.tools.stra_check_official"


def define_flags() -> None:
    """Flags exist only when run as a program (importing the module defines none)."""
    flags.DEFINE_string("npz", None, "The .npz written by benchmarks/compare_stra/torch_side.py.")


def _sd(data, prefix: str) -> dict[str, np.ndarray]:
    n = len(prefix) + 3
    return {k[n:]: data[k] for k in data.files if k.startswith(prefix + "sd/")}


def _nchw_diff(ours, theirs) -> float:
    return float(np.abs(np.asarray(ours).transpose(0, 3, 1, 2) - theirs).max())


def compare_block(data) -> dict[str, float]:
    """One ``LocalAttn`` + ``MoE`` block (C=512, 8 heads) in eval and train mode."""
    x = jnp.asarray(data["block/x"].transpose(0, 2, 3, 1))
    blk = LocalStructuralAttention(features=512, groups=8, kernel_size=3, stride=1, ratio=4)
    tmpl = blk.init(jax.random.key(0), x, train=False)
    var = from_torch(_sd(data, "block/"), tmpl)
    y, div, _ = blk.apply(var, x, train=False)
    res = {"block_eval_out": _nchw_diff(y, data["block/y_eval"])}
    res["block_eval_div"] = float(np.abs(np.asarray(div) - data["block/div_eval"]).max())
    (y, div, _), _ = blk.apply(var, x, train=True, mutable=["batch_stats"])
    res["block_train_out"] = _nchw_diff(y, data["block/y_train"])
    res["block_train_div"] = float(np.abs(np.asarray(div) - data["block/div_train"]).max())
    res["block_out_scale"] = float(np.abs(data["block/y_eval"]).max())
    return res


def compare_network(data) -> dict[str, float]:
    """The whole StRA-ResNet-50 re-ID model (751 ids), eval-mode feature (``--full`` dumps only)."""
    xi = jnp.asarray(data["net/x"].transpose(0, 2, 3, 1))
    net = StRAResNet(num_classes=751)
    tmpl = jax.eval_shape(lambda: net.init(jax.random.key(0), xi, train=False))
    var = from_torch(_sd(data, "net/"), tmpl)
    _, feat = net.apply(var, xi, train=False)
    ref = data["net/feat_eval"]
    return {
        "net_eval_feature": float(np.abs(np.asarray(feat) - ref).max()),
        "net_feature_scale": float(np.abs(ref).max()),
    }


def compare(path: str) -> dict[str, float]:
    """Max abs differences of each compared output."""
    with np.load(path) as data:
        if "block/x" not in data.files:
            raise ValueError(f"{path} lacks 'block/x': not a benchmarks/compare_stra dump.")
        res = compare_block(data)
        if "net/x" in data.files:
            res.update(compare_network(data))
    return res


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    """--help: the docstring and flags, exit 0; bad input: one line on stderr, exit 2."""
    if any(a in ("--help", "-h", "--helpshort") for a in argv[1:]):
        print(__doc__.strip() + "\n\n" + flags.FLAGS.main_module_help())
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        _fail(f"{e} (see --help)")
    if len(rest) > 1:
        _fail(f"unexpected arguments {rest[1:]}; pass the file as --npz=PATH")
    path = flags.FLAGS.npz
    if not path or not os.path.isfile(path):
        _fail(f"--npz={path!r} is not a file (benchmarks/compare_stra/torch_side.py writes it)")
    try:
        res = compare(path)
    except (ValueError, KeyError, OSError) as e:
        _fail(str(e))
    for k, v in res.items():
        print(f"{k}: {v:.3g}")


if __name__ == "__main__":
    define_flags()
    main(sys.argv)
