"""Declared dependencies match the import graph; a non-editable install carries the configs."""

import ast
import configparser
import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

from jaxpapers import config_lib, testing

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Run with the reference implementation's own environment (torch), never by the suite.
NOT_SUITE = {"jaxpapers/methods/stra/official_dump.py"}
# Test-extra tools used as programs, not imports.
TOOLS = {"ipykernel", "pytest-xdist", "ruff", "setuptools", "wheel"}
# Needed at run time by a declared package that does not declare them itself on every Python:
# TFDS imports importlib_resources through etils, and writes array_record files.
INDIRECT = {"importlib-resources", "array-record"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(block: str) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in block.splitlines()]
    return [_norm(re.split(r"[<>=!~;\[ @]", ln, maxsplit=1)[0]) for ln in lines if ln]


def _declared() -> dict[str, list[str]]:
    """{'core': [...], '<extra>': [...]} from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {"core": _requirement_names(cfg["options"]["install_requires"])}
    for extra, block in cfg["options.extras_require"].items():
        out[extra] = _requirement_names(block)
    return out


def _imports(paths) -> set[str]:
    """Top-level names imported (absolute imports) or located with importlib.util.find_spec."""
    names = set()
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "find_spec"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value).split(".")[0])
    local = {p.stem for p in ROOT.iterdir()} | {"conftest"}  # jaxpapers, configs, tests, ...
    return {n for n in names if n not in sys.stdlib_module_names and n not in local}


def _suite_files():
    return [
        p for p in (ROOT / "jaxpapers").rglob("*.py") if str(p.relative_to(ROOT)) not in NOT_SUITE
    ]


def _dists(import_names: set[str]) -> dict[str, set[str]]:
    mapping = importlib.metadata.packages_distributions()
    missing = sorted(n for n in import_names if n not in mapping)
    assert not missing, f"imported but not installed here, cannot map to a distribution: {missing}"
    return {n: {_norm(d) for d in mapping[n]} for n in import_names}


def test_every_import_is_declared_and_every_declaration_is_used():
    declared = _declared()
    library = {d for extra, ds in declared.items() if extra != "test" for d in ds}
    used = _dists(_imports(_suite_files()))
    undeclared = {n: sorted(d) for n, d in used.items() if not d & library}
    assert not undeclared, f"imported by jaxpapers/ but not declared in setup.cfg: {undeclared}"
    used_dists = set().union(*used.values())
    unused = sorted(library - used_dists - INDIRECT)
    assert not unused, f"declared in setup.cfg but never imported by jaxpapers/: {unused}"

    test_used = set().union(*_dists(_imports((ROOT / "tests").rglob("*.py"))).values())
    unused_test = sorted(set(declared["test"]) - test_used - TOOLS)
    assert not unused_test, f"test extra declares packages the tests never import: {unused_test}"


def test_constraints_pin_every_declared_distribution():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exact versions only: {line!r}"
            pins[_norm(name)] = version
    declared = {d for ds in _declared().values() for d in ds}
    assert not sorted(declared - set(pins)), "declared but not pinned in constraints.txt"
    assert pins["jax"] == pins["jaxlib"]
    # The pins are what this environment runs (the suite was tested with exactly them).
    for name in ("jax", "flax", "optax", "orbax-checkpoint", "numpy"):
        assert importlib.metadata.version(name) == pins[name], name


def test_config_path_by_method_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # works from any directory
    path = config_lib.config_path("classifier")
    assert os.path.isabs(path) and path.endswith(os.path.join("configs", "classifier.py"))
    assert config_lib.load_config_file(path, "smoke").method == "classifier"
    with pytest.raises(ValueError, match="Unknown method 'nope'.*classifier"):
        config_lib.config_path("nope")


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def test_non_editable_install_runs_classifier_smoke_from_empty_dir(tmp_path):
    """pip install . (not -e, --no-deps) into a fresh venv that borrows this venv's packages.

    --no-build-isolation: the build uses the borrowed setuptools, so the test downloads nothing.
    """
    src = tmp_path / "src"
    testing.copy_checkout(str(ROOT), str(src))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A plain path entry: this venv's packages (pip, setuptools, jax, ...) without running its
    # .pth files, so the development checkout's editable jaxpapers stays invisible.
    pathlib.Path(purelib, "borrowed_deps.pth").write_text(_site_packages() + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
        check=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import jaxpapers, sys; from jaxpapers import config_lib; "
        "print(jaxpapers.__file__); print(config_lib.config_path('classifier'))"
    )
    out = subprocess.run(
        [py, "-c", code], cwd=empty, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].startswith(purelib) and out[1].startswith(purelib), out
    run = subprocess.run(
        [py, "-m", "jaxpapers.main", f"--config={out[1]}:smoke", "--workdir=wd"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "method=classifier preset=smoke" in run.stdout
    assert (empty / "wd" / "checkpoints").is_dir()
