"""BigGAN-PyTorch ``G.pth`` / ``D.pth`` (/ ``G_ema.pth``) -> a ``biggan_dgl`` teacher checkpoint.

    python -m jaxpapers.tools.convert_biggan --config=configs/biggan_dgl.py:imagenet128 \\
        --g=G.pth --d=D.pth [--g_ema=G_ema.pth] --out=TEACHER_DIR

Writes an Orbax checkpoint usable as ``--config.init_from=TEACHER_DIR`` with
``--config.teacher.steps=0``. The files are read without torch and without executing code from
them (``jaxpapers.convert.torch_pickle``); the config's ``model.*`` must match the checkpoint.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags are defined only when run as a program: importing several tools (tests) into one
    process would otherwise define ``--config`` / ``--out`` twice."""
    flags.DEFINE_string(
        "config",
        "configs/biggan_dgl.py:imagenet128",
        "config file[:preset,k=v] whose model.* matches the checkpoint",
    )
    flags.DEFINE_string("g", None, "G.pth (BigGAN-PyTorch state dict)", required=True)
    flags.DEFINE_string("d", None, "D.pth", required=True)
    flags.DEFINE_string("g_ema", "", "G_ema.pth (optional; else G is used)")
    flags.DEFINE_string("out", None, "output directory (the init_from target)", required=True)


def convert(config_arg: str, g: str, d: str, g_ema: str, out: str) -> str:
    """Converts and writes the checkpoint; returns the output directory."""
    from jaxpapers import checkpoint, config_lib
    from jaxpapers.methods.biggan_dgl import convert as C

    for path in (g, d) + ((g_ema,) if g_ema else ()):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such file: {path}")
    file, _, arg = config_arg.partition(":")
    cfg = config_lib.load_config_file(file, arg or None)
    tree = C.convert_teacher(cfg, g, d, g_ema)
    os.makedirs(out, exist_ok=True)
    ck = checkpoint.Checkpointer(os.path.join(out, "checkpoints"), keep=1, async_save=False)
    ck.save(0, tree, force=True)
    ck.close()
    return out


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    F = flags.FLAGS
    try:
        out = convert(F.config, F.g, F.d, F.g_ema, F.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"convert_biggan: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"Wrote {out} (use --config.init_from={out} --config.teacher.steps=0)")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
