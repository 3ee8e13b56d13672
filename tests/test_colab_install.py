"""The notebooks' install cell keeps a preinstalled JAX (as on Colab) and leaves a working suite.

A fresh venv gets an older jax/jaxlib than constraints.txt pins (Colab's own), then runs the
first code cell of a notebook with the suite installed from this working tree; jax must be the
same version afterwards and the classifier's smoke preset must run on it. Needs PyPI; slow.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from jaxpapers import testing

ROOT = pathlib.Path(__file__).resolve().parents[1]
PREINSTALLED_JAX = os.environ.get("JAXPAPERS_TEST_OLD_JAX", "0.7.2")  # setup.cfg's lower bound


def install_cell(twin: pathlib.Path) -> str:
    """The notebook's first Python cell (its install cell)."""
    return re.search(r"```python\n(.*?)```", twin.read_text(), re.S).group(1)


def _copy_tree(dst: pathlib.Path) -> None:
    testing.copy_checkout(str(ROOT), str(dst))


def test_install_cell_is_the_same_in_every_notebook():
    cells = {install_cell(p) for p in (ROOT / "notebooks").glob("*.md")}
    assert len(cells) == 1
    cell = cells.pop()
    assert "-c" in cell and '"jax", "jaxlib", "libtpu"' in cell  # the preinstalled JAX is held


@pytest.mark.slow
def test_install_cell_keeps_preinstalled_jax(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("JAXPAPERS_INSTALL", None)
    pip = [py, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-U", "pip"], check=True, env=env)
    old = PREINSTALLED_JAX
    subprocess.run([*pip, f"jax=={old}", f"jaxlib=={old}"], check=True, env=env)
    src = tmp_path / "src"
    _copy_tree(src)
    empty = tmp_path / "colab"
    empty.mkdir()
    env["JAXPAPERS_INSTALL"] = f"jaxpapers[video,face3d,notebook] @ file://{src}"
    cell = install_cell(ROOT / "notebooks" / "classifier.md")
    out = subprocess.run(
        [py, "-c", cell], cwd=empty, env=env, capture_output=True, text=True, timeout=3000
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert f"jax {old} on cpu" in out.stdout, out.stdout
    versions = subprocess.run(
        [py, "-c", "import jax, jaxlib, flax; print(jax.__version__, jaxlib.__version__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions == [old, old]
    # Installed again: the cell is a no-op once jaxpapers is importable.
    again = subprocess.run([py, "-c", cell], cwd=empty, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "pip" not in again.stderr
    run = subprocess.run(
        [py, "-c", "from jaxpapers import config_lib; print(config_lib.config_path('classifier'))"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    smoke = subprocess.run(
        [py, "-m", "jaxpapers.main", f"--config={run.stdout.strip()}:smoke", "--workdir=wd"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert smoke.returncode == 0, smoke.stderr[-4000:]
