"""Command line: ``python -m jaxpapers.main --config=configs/<method>.py[:preset] [--workdir=DIR]``.

Overrides: ``--config.key=value`` (configs are locked: unknown keys fail). Without ``--workdir``
a per-method default under ``runs/`` is used and printed. Re-running the same command resumes.
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from jaxpapers import methods, trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/<method>.py[:preset,k=v]", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (default runs/<method>_<preset>)."
)


def default_workdir(config) -> str:
    return os.path.join("runs", f"{config.method}_{config.get('preset', 'default')}")


def run(config, workdir: str | None = None) -> dict:
    """Dispatches on ``config.method``: train methods go through the trainer, analyses run."""
    method = methods.get(config.method)
    workdir = workdir or default_workdir(config)
    print(
        f"method={config.method} preset={config.get('preset', '')} "
        f"workdir={os.path.abspath(workdir)}",
        flush=True,
    )
    if method.kind == "analysis":
        trainer.write_config(config, workdir)
        return method.run(config, workdir)
    return trainer.train(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines drown the progress line.
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config=configs/<method>.py is required.")
    run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
