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

_PKL = flags.DEFINE_string("pkl", None, "Official StyleGAN2 TF pickle.")
_OUT = flags.DEFINE_string("out", None, "Output directory (init_from target).")
flags.mark_flags_as_required(["pkl", "out"])


def main(argv) -> None:
    del argv
    from jaxpapers.convert import stylegan2

    if not os.path.isfile(_PKL.value):
        raise FileNotFoundError(f"No such file: {_PKL.value}")
    with open(_PKL.value, "rb") as f:
        tree, info = stylegan2.convert(f.read())
    stylegan2.save(tree, info, _OUT.value)
    summary = json.dumps({k: v for k, v in info.items() if k != "static_kwargs"})
    print(f"Wrote {_OUT.value}: {summary}")


if __name__ == "__main__":
    cli.run(main, __doc__)
