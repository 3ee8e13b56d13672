"""Import rules of the package, checked on the source (AST) of every module under jaxpapers/.

(a) No method imports another method (``jaxpapers.methods.<b>`` from ``methods/<a>/``, b != a).
(b) Layers: a module imports only its own layer and the layers ``ALLOWED`` lists for it, and the
    ``ALLOWED`` graph itself is acyclic. The layers, bottom to top:

    core       jaxpapers/*.py except the application modules (rng, checkpoint, batching, optim,
               parallel, config_lib, viz, metrics, state)
    layers     jaxpapers/layers/           shared Flax blocks
    convert    jaxpapers/convert/          weight-file readers/converters
    lib.face3d jaxpapers/lib/face3d/       3D face geometry (used by data/face_video)
    data       jaxpapers/data/             data sets and the loader
    lib        jaxpapers/lib/ (the rest)   shared algorithms
    evals      jaxpapers/evals/            shared evaluators
    methods    jaxpapers/methods/<name>/   the papers (rule (a) between them)
    app        the application modules: trainer (drives a method: it reads the registry and the
               data), testing, runs, notebook, main, the package ``__init__`` and the registry
               ``jaxpapers/methods/__init__.py`` (``methods.get``, used by the application only)
    tools      jaxpapers/tools/            command lines
"""

from __future__ import annotations

import ast
import functools
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "jaxpapers")

APP_MODULES = {"trainer", "testing", "runs", "notebook", "main"}
BELOW_METHODS = {"core", "layers", "convert", "lib.face3d", "data", "lib", "evals"}
# importer layer -> the other layers it may import (its own layer is always allowed).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "layers": {"core"},
    "convert": {"core", "layers"},
    "lib.face3d": {"core", "layers"},
    "data": {"core", "lib.face3d"},
    "lib": {"core", "layers", "lib.face3d", "data"},
    "evals": {"core", "layers", "convert", "lib.face3d", "data", "lib"},
    "methods": BELOW_METHODS,
    "app": BELOW_METHODS | {"methods"},
    "tools": BELOW_METHODS | {"methods", "app"},
}

# Imports that break the layering, each with its reason, as (importing module, imported name).
# Only modules inside methods/ may appear; an entry that no longer occurs fails the test below.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def modules() -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                out[module_name(os.path.join(dirpath, f))] = os.path.join(dirpath, f)
    return out


def imports(path: str, name: str) -> set[str]:
    """Every jaxpapers module a file imports (lazy ones in functions too), resolved to modules."""
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import x`: x is a submodule or a name in pkg; keep the longest module.
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {f for f in found if f == "jaxpapers" or f.startswith("jaxpapers.")}


def resolve(target: str, known: set[str]) -> str:
    """The module a dotted import target names (drops a trailing attribute name)."""
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "app"  # the package __init__ (jaxpapers.load)
    top = parts[1]
    if top == "methods":
        return "methods" if len(parts) > 2 else "app"  # the registry is used by the app only
    if top == "lib":
        return "lib.face3d" if parts[2:3] == ["face3d"] else "lib"
    if top in ("layers", "convert", "data", "evals", "tools"):
        return top
    return "app" if top in APP_MODULES else "core"


@functools.cache
def edges() -> list[tuple[str, str]]:
    mods = modules()
    known = set(mods)
    return sorted(
        (name, resolve(t, known)) for name, path in mods.items() for t in imports(path, name)
    )


def test_allowed_layer_graph_is_acyclic():
    done: set[str] = set()
    while done != set(ALLOWED):
        ready = {k for k, deps in ALLOWED.items() if k not in done and deps <= done}
        assert ready, f"cycle among {set(ALLOWED) - done}"
        done |= ready


def test_scan_sees_the_known_imports():
    """The scanner itself: relative and `from x import y` forms resolve to modules."""
    found = set(edges())
    assert ("jaxpapers.trainer", "jaxpapers.methods") in found
    assert ("jaxpapers.evals.gan.feature_nets", "jaxpapers.layers.inception") in found
    assert layer("jaxpapers.lib.face3d.render") == "lib.face3d"
    assert layer("jaxpapers.methods") == "app" and layer("jaxpapers.methods.rat.steps") == "methods"


def _violations() -> set[tuple[str, str]]:
    bad = set()
    for src, dst in edges():
        a, b = layer(src), layer(dst)
        if a == "methods" and dst.startswith("jaxpapers.methods."):
            if src.split(".")[2] != dst.split(".")[2]:
                bad.add((src, dst))  # rule (a)
            continue
        if a != b and b not in ALLOWED[a]:
            bad.add((src, dst))  # rule (b)
    return bad


def test_import_rules():
    bad = _violations()
    new = sorted(bad - KNOWN_VIOLATIONS)
    assert not new, "imports against the layering (see this file's docstring):\n" + "\n".join(
        f"  {s} -> {d}" for s, d in new
    )


def test_known_violations_are_inside_methods_and_still_real():
    for src, _ in KNOWN_VIOLATIONS:
        assert src.startswith("jaxpapers.methods."), src
    stale = sorted(KNOWN_VIOLATIONS - _violations())
    assert not stale, f"fixed; remove from KNOWN_VIOLATIONS: {stale}"


@pytest.mark.parametrize(
    "src,dst",
    [
        ("jaxpapers.evals.robust", "jaxpapers.trainer"),
        ("jaxpapers.data.loader", "jaxpapers.evals.gan.metrics"),
        ("jaxpapers.layers.resnet", "jaxpapers.lib.augment"),
        ("jaxpapers.checkpoint", "jaxpapers.data"),
        ("jaxpapers.methods.rat.steps", "jaxpapers.tools.robust"),
    ],
)
def test_rule_catches(src, dst):
    a, b = layer(src), layer(dst)
    assert a != b and b not in ALLOWED[a]
