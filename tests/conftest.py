"""Eight fake CPU devices for every test (must run before JAX initialises its backend)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402

# XLA compile time dominates the suite on CPU, and the standard jit test builds the same programs
# twice (determinism check); a persistent compilation cache shared by the test session (and its
# subprocesses through the environment) compiles each program once.
_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxpapers_test_xla_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

assert jax.device_count() == 8, "conftest must run before anything initialises JAX"

import pytest  # noqa: E402

from jaxpapers import testing  # noqa: E402


@pytest.fixture(scope="session")
def jit_check():
    """``testing.check_train_step_jit`` once per (method, config, steps) for the whole session.

    The contract test (tests/test_methods.py, over every method) and a method's own tests assert
    on the same two-step run: building, compiling and running each smoke step twice (it runs
    twice already, for the determinism check) was a large share of the cold suite.
    """
    results = {}

    def check(name: str, config, steps: int = 2):
        key = (name, config.to_json(), steps)
        if key not in results:
            results[key] = testing.check_train_step_jit(name, config, steps)
        return results[key]

    return check


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``main.run`` of a method's ``smoke`` preset (plus ``extra`` overrides), once per session.

    Returns ``(workdir, flat numbers)``. Several tests read the same finished smoke run (its
    files, its numbers, ``jaxpapers.load`` of it); they must only read the workdir. Face presets
    read generated ORL faces (no download).
    """
    from jaxpapers import config_lib, main

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    faces = tmp_path_factory.mktemp("smoke_data")
    testing.write_orl_faces(str(faces / "att_faces"))
    done = {}

    def run(name: str, extra: str = "") -> tuple[str, dict]:
        if (name, extra) not in done:
            path = os.path.join(root, "configs", f"{name}.py")
            config = config_lib.load_config_file(path, "smoke" + extra)
            workdir = str(tmp_path_factory.mktemp(f"smoke_{name}"))
            before = os.environ.get("JAXPAPERS_DATA_DIR")
            os.environ["JAXPAPERS_DATA_DIR"] = str(faces)
            try:
                done[name, extra] = (workdir, main.run(config, workdir))
            finally:
                if before is None:
                    del os.environ["JAXPAPERS_DATA_DIR"]
                else:
                    os.environ["JAXPAPERS_DATA_DIR"] = before
        return done[name, extra]

    return run


# The longest test files start first, so that the two worker processes of the README's command
# (``-n 2 --dist loadfile``: whole files per worker) finish together instead of one worker
# starting the overview notebook (several minutes, one test) when the other is nearly done.
# pytest-xdist would hand out the files with the most tests first; `pytest_configure` keeps this
# collection order instead.
LONGEST_FIRST = (
    "tests/test_notebooks.py",
    "tests/test_methods.py",
    "tests/test_distributed.py",
    "tests/test_runs.py",
    "tests/methods/test_biggan_dgl.py",
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist present
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
