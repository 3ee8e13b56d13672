"""End to end through ``python -m jaxpapers.main``: SIGTERM mid-run, resume, identical metrics."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
    "--config=configs/classifier.py:smoke,num_train_steps=80,ckpt_every=1000,log_every=1",
    "--config.model.width=16",
    "--config.batch_size=64",
]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _main(workdir, extra=()):
    return [sys.executable, "-m", "jaxpapers.main", *ARGS, *extra, f"--workdir={workdir}"]


def _rows(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    rows = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.setdefault(r["step"], {}).update(r)  # A resumed run re-writes later steps.
    return rows


def test_sigterm_then_resume_matches_uninterrupted(tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    ref = subprocess.Popen(
        _main(full), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    proc = subprocess.Popen(
        _main(killed),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and max(_rows(killed), default=0) < 3:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    stopped = [line for line in out.splitlines() if "Stopped by SIGTERM" in line]
    if not stopped:
        pytest.fail(f"the run finished before SIGTERM landed; output tail: {out[-2000:]}")
    assert os.path.isdir(os.path.join(killed, "checkpoints"))
    resumed = subprocess.run(
        _main(killed), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    assert ref.wait(timeout=240) == 0
    a, b = _rows(full), _rows(killed)
    assert max(a) == max(b) == 80
    for step in (80, 40, 10):
        assert a[step]["train/loss"] == b[step]["train/loss"], (step, a[step], b[step])
    with (
        open(os.path.join(full, "final_metrics.json")) as f1,
        open(os.path.join(killed, "final_metrics.json")) as f2,
    ):
        m1, m2 = json.load(f1), json.load(f2)
    assert m1["eval/test_accuracy"] == m2["eval/test_accuracy"]


def test_corrupt_checkpoint_gives_clear_error_and_is_kept(tmp_path):
    work = str(tmp_path / "w")
    ok = subprocess.run(
        _main(work, ["--config.num_train_steps=2"]),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    ckdir = os.path.join(work, "checkpoints", "2")
    victims = [
        os.path.join(d, f)
        for d, _, fs in os.walk(ckdir)
        for f in fs
        if "ocdbt" in d or f.startswith("d")
    ]
    assert victims
    for v in victims:
        with open(v, "r+b") as f:
            f.truncate(max(0, os.path.getsize(v) // 3))
    bad = subprocess.run(
        _main(work, ["--config.num_train_steps=4"]),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert bad.returncode != 0
    assert "cannot be restored" in bad.stderr + bad.stdout
    assert os.path.isdir(ckdir), "the corrupt checkpoint must not be deleted or overwritten"


def test_sigterm_on_a_checkpoint_step_stops_cleanly(tmp_path):
    """With ``ckpt_every=1`` the stop lands on a step the cadence has just saved; the stop must
    not save that step a second time (orbax raises StepAlreadyExistsError) and must resume."""
    import threading

    from jaxpapers import config_lib, trainer

    cfg_path = os.path.join(ROOT, "configs", "classifier.py")
    config = config_lib.load_config_file(cfg_path, "smoke")
    with config.unlocked():
        config.num_train_steps, config.ckpt_every, config.log_every = 400, 1, 1
    work = str(tmp_path / "w")

    def send_when_running():
        deadline = time.time() + 240
        while time.time() < deadline and max(_rows(work), default=0) < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_when_running, daemon=True).start()
    result = trainer.train(config, work)
    if "stopped_at" not in result:
        pytest.fail(f"the run finished before SIGTERM landed: {result}")
    stopped = result["stopped_at"]
    assert 2 <= stopped < 400
    with config.unlocked():
        config.num_train_steps = stopped + 2
    resumed = trainer.train(config, work)
    assert "stopped_at" not in resumed
    assert max(_rows(work)) == stopped + 2


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    """SIGINT (Ctrl-C, a notebook's interrupt) stops training like SIGTERM, at the next step,
    with a checkpoint of that step; the exit status is the shell's Ctrl-C status."""
    workdir = str(tmp_path / "run")
    proc = subprocess.Popen(
        _main(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 240
    while time.time() < deadline and max(_rows(workdir), default=0) < 3:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    stopped = [line for line in out.splitlines() if "Stopped by SIGINT at step" in line]
    if not stopped:
        pytest.fail(f"the run finished before SIGINT landed; output tail: {out[-2000:]}")
    assert proc.returncode == 130, out[-2000:]
    step = stopped[0].split("at step ")[1].split(";")[0]
    assert os.path.isdir(os.path.join(workdir, "checkpoints", step))
    assert not os.path.exists(os.path.join(workdir, "final_metrics.json"))
