"""Each notebook's Markdown twin executes headless on the CPU with the smoke preset."""

import glob
import os

import jupytext
import nbclient
import numpy as np
import pytest
from PIL import Image

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


def _generated_faces(root: str) -> None:
    """An ORL-layout folder (40 identities x 10 small grey images) of generated faces: the face
    methods' smoke presets read $JAXPAPERS_DATA_DIR/att_faces instead of downloading Olivetti."""
    rng = np.random.default_rng(0)
    for k in range(1, 41):
        os.makedirs(os.path.join(root, f"s{k}"))
        base = rng.integers(0, 256, (28, 23))
        for j in range(1, 11):
            img = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(root, f"s{k}", f"{j}.pgm"))


@pytest.mark.parametrize("twin", PARAMS)
def test_notebook_twin_executes(twin, tmp_path, monkeypatch):
    _generated_faces(str(tmp_path / "data" / "att_faces"))
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
