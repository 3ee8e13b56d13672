"""Library side of the notebooks: load a preset, run it, show its pictures and numbers.

Notebooks stay thin: every cell calls one of these functions. Works in a checkout and from an
installed package (Colab), where the configs ship as ``jaxpapers.configs``.
"""

from __future__ import annotations

import glob
import json
import os

from jaxpapers import config_lib, main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_path(method: str) -> str:
    return config_lib.config_path(method)


def preset(default: str = "default") -> str:
    """The preset: ``JAXPAPERS_NOTEBOOK_PRESET`` (the tests set 'smoke'), else ``default``."""
    return os.environ.get("JAXPAPERS_NOTEBOOK_PRESET", default)


def load(method: str, preset_name: str, **overrides):
    """The locked config of ``configs/<method>.py:<preset>`` with ``key=value`` overrides."""
    arg = ",".join([preset_name, *(f"{k}={v}" for k, v in overrides.items())])
    return config_lib.load_config_file(config_path(method), arg)


def run(config, workdir: str | None = None) -> dict:
    """Trains or analyses exactly as ``python -m jaxpapers.main`` does; returns its numbers."""
    # runs/ of the checkout, or of the current directory for an installed package (Colab).
    repo = REPO_ROOT if os.path.isdir(os.path.join(REPO_ROOT, "configs")) else os.getcwd()
    root = os.environ.get("JAXPAPERS_NOTEBOOK_WORKDIR", os.path.join(repo, "runs"))
    workdir = workdir or os.path.join(root, f"{config.method}_{config.preset}")
    result = main.run(config, workdir)
    result = dict(result or {})
    result["workdir"] = workdir
    return result


def pictures(workdir: str) -> list[str]:
    """The PNG files a run wrote (newest last)."""
    return sorted(
        glob.glob(os.path.join(workdir, "**", "*.png"), recursive=True), key=os.path.getmtime
    )


def show(result: dict, max_pictures: int = 4) -> None:
    """Displays the run's scalar results as a table and its pictures inline."""
    from IPython.display import Image, Markdown, display

    rows = [(k, v) for k, v in result.items() if isinstance(v, (int, float))]
    if rows:
        table = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4g} |" for k, v in rows)
        display(Markdown(table))
    for path in pictures(result["workdir"])[-max_pictures:]:
        display(Markdown(f"`{os.path.relpath(path, result['workdir'])}`"))
        display(Image(filename=path))


def final_metrics(workdir: str) -> dict:
    path = os.path.join(workdir, "final_metrics.json")
    with open(path) as f:
        return json.load(f)
