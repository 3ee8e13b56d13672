"""StRA method contract: the standard jit test, config presets, fixbase freezing, evaluation."""

from __future__ import annotations

import functools
import importlib.util

import jax
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.methods import stra
from jaxpapers.methods.stra import steps
from jaxpapers.methods.stra.model import BLOCKS

CONFIG = "configs/stra.py"


@pytest.fixture(scope="module")
def smoke():
    return config_lib.load_config_file(CONFIG, "smoke")


@pytest.fixture(scope="module")
def jit_result(smoke, jit_check):
    return jit_check("stra", smoke)


def test_stra_train_step_jit(jit_result):
    _, metrics = jit_result
    assert all(np.isfinite(m["diversity"]) and m["diversity"] >= 0 for m in metrics)
    assert metrics[0]["diversity"] > 0  # the smoke model has a StRA stage, so L_div is live


def test_fixbase_freezes_closed_layers(smoke, jit_result):
    """smoke: fixbase_steps=1, so step 1 updates only layer2/neck/classifier; step 2 all."""
    final, _ = jit_result
    init_fn = jax.jit(functools.partial(steps.init_state, config=smoke))
    init = init_fn(jax.random.PRNGKey(smoke.seed))
    # After 2 steps the stem moved (step 2) but by exactly one Adam step of the stem's params.
    stem0 = np.asarray(init.params["conv1"]["kernel"])
    stem2 = np.asarray(jax.device_get(final.params["conv1"]["kernel"]))
    assert not np.allclose(stem0, stem2)
    # lr 1e-3: one Adam step moves each weight by at most ~lr, two steps by ~2 lr.
    assert np.max(np.abs(stem2 - stem0)) < 1.5e-3


def test_presets_parse():
    spec = importlib.util.spec_from_file_location("_stra_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for preset in module.PRESETS:
        c = module.get_config(preset)
        assert c.method == "stra" and c.model.block in BLOCKS
        assert len(c.data.image_shape) == 3
    c = module.get_config("default,model.block=cbam,div_weight=0.5")
    assert c.model.block == "cbam" and c.div_weight == 0.5
    with pytest.raises(ValueError, match="Unknown preset"):
        module.get_config("nope")


def test_evaluate_smoke(tmp_path, smoke, jit_result):
    final, _ = jit_result
    out = stra.evaluate(jax.device_get(final), smoke, str(tmp_path))
    assert 0.0 <= out["test_accuracy"] <= 1.0
    assert (tmp_path / "pool_maps.png").exists()


def test_check_official_tool_cli(tmp_path):
    """--help exits 0; a missing or foreign .npz is one line on stderr and exit status 2."""
    import subprocess
    import sys

    def run(*args):
        cmd = [sys.executable, "-m", "jaxpapers.tools.stra_check_official", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    help_ = run("--help")
    assert help_.returncode == 0 and "python -m jaxpapers.tools.stra_check_official" in help_.stdout
    assert "--npz" in help_.stdout
    missing = run(f"--npz={tmp_path / 'none.npz'}")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    foreign = run(f"--npz={tmp_path / 'other.npz'}")
    assert foreign.returncode == 2 and "block/x" in foreign.stderr
    assert foreign.stderr.startswith("jaxpapers.tools.stra_check_official: error: ")
