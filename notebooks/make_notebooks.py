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

INSTALL = """```python
# Installs the suite on a fresh Colab runtime (TPU, GPU or CPU); does nothing in a checkout.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("jaxpapers") is None:
    repo = os.environ.get("JAXPAPERS_REPO")  # the git URL of your copy of this repository
    if not repo:
        raise RuntimeError("Set JAXPAPERS_REPO to the git URL of the jaxpapers repository.")
    subprocess.run(["git", "clone", "--depth=1", repo, "jaxpapers"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "jaxpapers"], check=True)
    sys.path.insert(0, os.path.abspath("jaxpapers"))
import jax
print(jax.devices())
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


def method_notebook(name: str, doc: str) -> str:
    return f"""{HEADER}
# `{name}` — {doc}

The preset is `default` (the CPU preset) unless `JAXPAPERS_NOTEBOOK_PRESET` says otherwise (the
tests run `smoke`). Paper presets: see `configs/{name}.py`.

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
