"""Converts an official TensorFlow StyleGAN2 pickle into an ``init_from`` run, without TF.

    python -m jaxpapers.tools.convert_stylegan2 --pkl stylegan2-ffhq-config-f.pkl --out TEACHER_DIR

Reads the pickle with the restricted unpickler of ``jaxpapers.convert.stylegan2`` and writes an
Orbax checkpoint (``TEACHER_DIR/checkpoints``, usable as ``--config.init_from=TEACHER_DIR``) and
``arch.json``.
"""

from __future__ import annotations

import json
import os

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("pkl", None, "Official StyleGAN2 TF pickle.")
    flags.DEFINE_string("out", None, "Output directory (init_from target).")
    flags.mark_flags_as_required(["pkl", "out"])


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    from jaxpapers.convert import stylegan2

    if not os.path.isfile(F.pkl):
        raise FileNotFoundError(f"No such file: {F.pkl}")
    with open(F.pkl, "rb") as f:
        tree, info = stylegan2.convert(f.read())
    stylegan2.save(tree, info, F.out)
    summary = json.dumps({k: v for k, v in info.items() if k != "static_kwargs"})
    print(f"Wrote {F.out}: {summary}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
