"""Writes the teacher of a ``stylegan2_dgl`` run as a teacher file that a DGL job can ship.

    python -m jaxpapers.tools.export_teacher --workdir=TEACHER_RUN --out=fmnist_teacher.msgpack

Reads the run's ``config.json`` and its checkpoint (``--step``, default the latest; a run still
training works, its newest finished checkpoint is read) and writes ``OUT`` (flax msgpack of the
teacher's ``g``, ``d``, ``g_ema``, ``w_avg`` and the model settings) plus ``OUT`` with ``.json``
for its extension (the file's sha256, the model settings, the run's preset, step and commit).
Prints the sha256. A job loads it with ``--config.teacher.weights=OUT`` (a bare file name is
looked up in ``jaxpapers/methods/stylegan2_dgl/weights/``, where the default preset's
teacher ships).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "a stylegan2_dgl run directory", required=True)
    flags.DEFINE_string("out", None, "teacher file to write (.msgpack)", required=True)
    flags.DEFINE_integer("step", -1, "checkpoint step (-1: the latest)")


def export(workdir: str, out: str, step: int | None = None) -> str:
    """Writes the teacher file (and its JSON) of run ``workdir``; returns its sha256."""
    from jaxpapers import checkpoint, runs
    from jaxpapers.lib import dgl
    from jaxpapers.methods.stylegan2_dgl import steps

    if not out.endswith(".msgpack"):
        raise cli.BadInput(f"--out={out!r} must end in .msgpack (the shipped file type).")
    config = runs.read_config(workdir)
    if config.get("method") != "stylegan2_dgl":
        raise cli.BadInput(f"{workdir} is a {config.get('method')!r} run, not stylegan2_dgl.")
    tree = checkpoint.restore_params(workdir, step)
    teacher = tree.get("teacher") if isinstance(tree, dict) else None
    if not isinstance(teacher, dict) or any(f not in teacher for f in steps.TEACHER_FIELDS):
        raise cli.BadInput(f"the checkpoint in {workdir} has no teacher {steps.TEACHER_FIELDS}.")
    at = int(np.asarray(tree.get("step", -1)))
    if at < int(config.teacher.steps):
        print(f"note: step {at} < teacher.steps {config.teacher.steps}: a partly trained teacher")
    info = dict(
        source_run=os.path.basename(os.path.abspath(workdir)), step=at, preset=config.preset
    )
    info_path = os.path.join(workdir, "run_info.json")
    if os.path.isfile(info_path):
        with open(info_path) as f:
            info["git"] = json.load(f).get("git", {})
    fields = {f: jax.device_get(teacher[f]) for f in steps.TEACHER_FIELDS}
    return dgl.save_teacher_file(out, fields, config.model.to_dict(), info)


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    digest = export(F.workdir, F.out, None if F.step < 0 else F.step)
    print(f"Wrote {F.out} and {os.path.splitext(F.out)[0]}.json; sha256 {digest}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
