"""Each notebook's Markdown twin executes headless on the CPU with the smoke preset."""

import glob
import os

import jupytext
import nbclient
import pytest

from jaxpapers import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWINS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.md")))
# The overview runs every method's smoke preset; per-method notebooks are the same calls for one
# method, so they are 'slow' (over a minute each) and the overview stands for them in CI.
PARAMS = [
    pytest.param(
        p,
        marks=() if os.path.basename(p) == "overview.md" else pytest.mark.slow,
        id=os.path.basename(p),
    )
    for p in TWINS
]


@pytest.mark.parametrize("twin", PARAMS)
def test_notebook_twin_executes(twin, tmp_path, monkeypatch):
    testing.write_orl_faces(str(tmp_path / "data" / "att_faces"))
    monkeypatch.setenv("JAXPAPERS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JAXPAPERS_NOTEBOOK_PRESET", "smoke")
    monkeypatch.setenv("JAXPAPERS_NOTEBOOK_WORKDIR", str(tmp_path))
    nb = jupytext.read(twin)
    ipynb = twin[:-3] + ".ipynb"
    assert os.path.exists(ipynb), f"{ipynb} missing: run python notebooks/make_notebooks.py"
    paired = jupytext.read(ipynb)
    assert [c.source for c in paired.cells] == [c.source for c in nb.cells], (
        "ipynb and md twin differ"
    )
    assert all(not c.get("outputs") for c in paired.cells if c.cell_type == "code"), (
        "outputs not stripped"
    )
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
