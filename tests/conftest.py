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
