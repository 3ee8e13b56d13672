"""Every config file and preset parses, locks, and names a method that honours the contract."""

import glob
import os

import pytest

from jaxpapers import config_lib, methods

CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
    if not p.endswith("__init__.py")  # configs/ is also the installed jaxpapers.configs package.
)


def _presets(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg_" + os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PRESETS


CASES = [(p, preset) for p in CONFIGS for preset in _presets(p)]


@pytest.mark.parametrize("path,preset", CASES, ids=[f"{os.path.basename(p)}:{s}" for p, s in CASES])
def test_preset_parses_and_names_a_method(path, preset):
    c = config_lib.load_config_file(path, preset)
    assert c.method == os.path.basename(path)[:-3], "config stem must equal config.method"
    methods.get(c.method)
    assert c.is_locked
    with pytest.raises(AttributeError):
        c.no_such_key_xyz = 1


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_config_has_smoke_and_default(path):
    assert {"smoke", "default"} <= set(_presets(path))


def test_unknown_preset_and_key_fail_clearly():
    with pytest.raises(ValueError, match="Unknown preset 'nope'"):
        config_lib.load_config_file("configs/classifier.py", "nope")
    with pytest.raises(KeyError, match="Unknown config key 'optim.lrr'"):
        config_lib.load_config_file("configs/classifier.py", "smoke,optim.lrr=0.1")


def test_overrides_are_typed():
    c = config_lib.load_config_file(
        "configs/classifier.py", "smoke,optim.lr=1,data.flip=true,seed=3"
    )
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert c.data.flip is True and c.seed == 3


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="Unknown method 'nope'.*classifier"):
        methods.get("nope")


def test_cosine_total_steps_defaults_to_run_length():
    c = config_lib.load_config_file("configs/classifier.py", "default")
    assert c.optim.total_steps == c.num_train_steps
