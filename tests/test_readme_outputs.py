"""Every file a method README lists under "What a run writes" is one the method's code writes.

A grep-level check: in a listed name (``strip_step<step>.png``, ``videos/<still>_<mode>.mp4``)
the ``<...>`` parts are placeholders, and every other part that holds a letter or digit must occur
verbatim in the method's source or in the shared writers it calls (``jaxpapers/evals``, the
workdir record of ``jaxpapers/metrics.py``).
"""

from __future__ import annotations

import glob
import os
import re

import pytest

from jaxpapers import methods

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "jaxpapers")
# Their READMEs are kept elsewhere (the GAN methods document their own outputs).
SKIP = {"stylegan2_dgl", "biggan_dgl"}
FILE = re.compile(r"`([^`\s]+\.(?:png|mp4|json|md|npz|msgpack))`")


def _section(text: str) -> str:
    start = text.index("## What a run writes")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def _sources(name: str) -> str:
    files = glob.glob(os.path.join(PKG, "methods", name, "**", "*.py"), recursive=True)
    files += glob.glob(os.path.join(PKG, "evals", "**", "*.py"), recursive=True)
    files.append(os.path.join(PKG, "metrics.py"))
    return "\n".join(open(f, encoding="utf-8").read() for f in files)


def _missing_parts(listed: str, code: str) -> list[str]:
    parts = [p for comp in listed.split("/") for p in re.split(r"<[^>]*>", comp)]
    return [p for p in parts if re.search(r"[A-Za-z0-9]", p) and p not in code]


@pytest.mark.parametrize("name", [n for n in methods.names() if n not in SKIP])
def test_readme_lists_only_files_the_code_writes(name):
    with open(os.path.join(PKG, "methods", name, "README.md"), encoding="utf-8") as f:
        section = _section(f.read())
    listed = FILE.findall(section)
    assert listed, f"{name}/README.md lists no file under 'What a run writes'"
    code = _sources(name)
    bad = {n: m for n in listed if (m := _missing_parts(n, code))}
    assert not bad, f"{name}/README.md lists files its code does not write: {bad}"


def test_the_check_catches_a_renamed_picture():
    code = 'path = os.path.join(workdir, f"strip_step{step}.png")'
    assert _missing_parts("strip_step<step>.png", code) == []
    assert _missing_parts("strips_<step>.png", code) == ["strips_"]
    assert _missing_parts("videos/swap.mp4", code) == ["videos", "swap.mp4"]
