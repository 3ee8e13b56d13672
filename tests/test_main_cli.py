"""``python -m jaxpapers.main`` as a user meets it: discovery (--list, --help, bare method names)
and config mistakes, each one line on stderr with exit status 2 before anything is built."""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 10.0


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    # This checkout's package, also when the command runs from another directory.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _main(*args, cwd=ROOT):
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "jaxpapers.main", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, time.time() - t0


def _jax_start_seconds() -> float:
    """What a bare JAX start-up costs on this machine now (the device check needs one)."""
    t0 = time.time()
    code = "import jax; jax.device_count()"
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True, timeout=120)
    return time.time() - t0


BAD = {
    "unknown key (flag)": (["--config=classifier:smoke", "--config.nope=1"], "'nope'"),
    "unknown key (preset arg)": (["--config=classifier:smoke,nope=1"], "'nope'"),
    "unknown nested key": (["--config=classifier:smoke", "--config.optim.lrr=1"], "optim.lrr"),
    "wrong type": (["--config=classifier:smoke", "--config.batch_size=abc"], "batch_size"),
    "float for int": (["--config=classifier:smoke", "--config.num_train_steps=2.5"], "int"),
    "bad bool": (["--config=classifier:smoke", "--config.data.flip=maybe"], "boolean"),
    "unknown preset": (["--config=classifier:nope"], "Unknown preset 'nope'"),
    "unknown method": (["--config=nope"], "Unknown method 'nope'"),
    "missing file": (["--config=configs/nope.py:smoke"], "does not exist"),
    "batch 0": (["--config=classifier:smoke", "--config.batch_size=0"], "batch_size=0"),
    "batch negative": (["--config=rat:smoke,batch_size=-8"], "batch_size=-8"),
    "log_every 0": (["--config=classifier:smoke", "--config.log_every=0"], "log_every=0"),
    "eval_every negative": (["--config=classifier:smoke", "--config.eval_every=-1"], "eval_every"),
    "ckpt_every negative": (["--config=classifier:smoke", "--config.ckpt_every=-5"], "ckpt_every"),
    "negative steps": (["--config=stra:smoke", "--config.num_train_steps=-1"], "num_train_steps"),
    "override without =": (["--config=classifier:smoke", "--config.seed"], "--config.<key>="),
    "no config": ([], "--config"),
    "unknown flag": (["--config=classifier:smoke", "--nope=1"], "nope"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_config_error_is_one_line_exit_2(case, tmp_path):
    args, needle = BAD[case]
    proc, seconds = _main(*args, f"--workdir={tmp_path / 'w'}")
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
    assert not (tmp_path / "w").exists(), "nothing may be written for a bad config"


def test_batch_not_divisible_by_devices_fails_before_building(tmp_path):
    proc, seconds = _main(
        "--config=classifier:smoke", "--config.batch_size=12", f"--workdir={tmp_path}/w"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not divisible by the 8 devices" in lines[0], proc.stderr
    assert "--config.batch_size=16" in lines[0]
    # Counting devices starts JAX; nothing beyond that may happen (no model, no data).
    assert seconds < max(LIMIT_S, 2 * _jax_start_seconds()), f"{seconds:.1f} s"
    assert not (tmp_path / "w").exists()


def _presets(method):
    from jaxpapers import main

    return main.config_presets(method)


@pytest.mark.parametrize("flag", ["--list", "--help"])
def test_list_and_help_name_every_method_and_preset(flag):
    from jaxpapers import methods

    proc, seconds = _main(flag)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in methods.names():
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), "")
        assert line, f"{name} missing from {flag} output"
        assert "[train]" in line or "[analysis]" in line, line
        presets = _presets(name)
        assert {"default", "smoke"} <= set(presets)
        assert f"presets: {', '.join(presets)}" in out
    assert "Regional Adversarial Training" in out  # the docstring line of methods/rat
    assert seconds < LIMIT_S


def test_method_name_resolves_from_any_directory(tmp_path):
    """``--config=<method>:<preset>`` finds configs/<method>.py of the repo, not of the cwd; a
    valid config gets past validation (here up to an invalid override checked later)."""
    proc, _ = _main("--config=classifier:smoke", "--config.log_every=-3", cwd=str(tmp_path))
    assert proc.returncode == 2 and "log_every=-3" in proc.stderr, proc.stderr


def test_load_config_accepts_name_path_and_overrides():
    from jaxpapers import config_lib, main

    by_name = main.load_config("classifier:smoke", {"seed": "3"})
    by_path = main.load_config(os.path.join(ROOT, "configs", "classifier.py") + ":smoke,seed=3")
    assert by_name.to_dict() == by_path.to_dict()
    assert by_name.seed == 3 and by_name.is_locked
    # A later command-line num_train_steps also stretches the run-length schedules.
    c = main.load_config("classifier", {"num_train_steps": "300"})
    assert c.optim.total_steps == 300
    c = main.load_config("classifier", {"num_train_steps": "300", "optim.total_steps": "600"})
    assert c.optim.total_steps == 600
    c = main.load_config("classifier", {"num_train_steps": "300", "optim.accum_steps": "2"})
    assert c.optim.total_steps == 150  # schedules count optimizer updates
    with pytest.raises(config_lib.ConfigError, match="expects type int"):
        main.load_config("classifier:smoke", {"batch_size": "1.5"})
    # eval_every=0 and ckpt_every=0 keep their meaning ("only at the end").
    c = main.load_config("classifier:smoke", {"eval_every": "0", "ckpt_every": "0"})
    assert c.eval_every == 0 and c.ckpt_every == 0
