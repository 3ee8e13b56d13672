"""SIGKILL at random moments (a crash, an OOM kill, a lost node): re-running the same command
resumes, and the final metrics.jsonl and checkpoint arrays equal an uninterrupted run's.

The kill moments come from a seeded RNG, counted in the steps a launch has logged (before its
first step the process is only importing and compiling) plus a fraction of a second; every other
launch is killed at the first moment after that while a checkpoint is being written
(``ckpt_every=1``, async saves: an Orbax temporary step directory or a digest's temporary file
exists).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxpapers import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 10
ARGS = [
    f"--config=classifier:smoke,num_train_steps={STEPS},ckpt_every=1,log_every=1,keep_ckpts=2",
]


def _main(workdir: str) -> list[str]:
    return [sys.executable, "-m", "jaxpapers.main", *ARGS, f"--workdir={workdir}"]


def _start(workdir: str) -> subprocess.Popen:
    # The environment carries conftest's 8 fake devices and the shared compilation cache.
    return subprocess.Popen(
        _main(workdir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _rows(workdir: str) -> list[dict]:
    """metrics.jsonl as written (a line cut off by a kill is skipped, as on resume)."""
    path = os.path.join(workdir, "metrics.jsonl")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def _last_step(workdir: str) -> int:
    return max((r["step"] for r in _rows(workdir)), default=0)


def _saving(workdir: str) -> bool:
    """Whether a checkpoint write is in flight: Orbax's temporary step directory or the digest's
    temporary file exists."""
    ck = os.path.join(workdir, "checkpoints")
    names = os.listdir(ck) if os.path.isdir(ck) else []
    integ = os.path.join(ck, checkpoint.INTEGRITY_DIR)
    names += os.listdir(integ) if os.path.isdir(integ) else []
    return any("tmp" in n for n in names)


def _kill_when(proc, workdir: str, ready, deadline: float) -> bool:
    """SIGKILLs ``proc`` once ``ready()``; False if the run ended first."""
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return True


def _killed_launch(workdir: str, rng, during_save: bool) -> bool:
    """One launch of the command, SIGKILLed at a random moment: after a random number of its
    steps (in steps, so the moment does not depend on the machine's speed) plus a random
    fraction of a second, or with ``during_save`` at the first moment after that while a
    checkpoint is being written. True if the kill landed before the run finished."""
    before = _last_step(workdir)
    target = before + int(rng.integers(1, max(2, (STEPS - before) // 2 + 1)))
    proc = _start(workdir)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _last_step(workdir) < target:
        time.sleep(0.005)
    moment = time.time() + rng.uniform(0.0, 0.2)
    return _kill_when(
        proc,
        workdir,
        lambda: time.time() >= moment and (not during_save or _saving(workdir)),
        deadline,
    )


def _complete_steps(workdir: str) -> list[int]:
    """Checkpoint steps Orbax has finished (renamed from their temporary directory)."""
    ck = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(ck) if d.isdigit()) if os.path.isdir(ck) else []


def _final_arrays(workdir: str) -> tuple[int, list[np.ndarray]]:
    tree = checkpoint.restore_params(workdir)  # the latest step, verified against its digest
    return _complete_steps(workdir)[-1], [np.asarray(x) for x in jax.tree.leaves(tree)]


def _kill_and_resume(tmp_path, seed: int, kills: int) -> None:
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    ref = _start(full)  # the uninterrupted run, alongside
    rng = np.random.default_rng(seed)
    landed = 0
    for k in range(kills):
        landed += _killed_launch(killed, rng, during_save=k % 2 == 0)
    assert landed, "every launch finished before its kill; raise STEPS"
    saved = _complete_steps(killed)
    done = subprocess.run(_main(killed), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if saved:  # else the kill came before the first save completed: a fresh start
        assert f"step {saved[-1]}" in done.stdout.split("Resuming from")[1].splitlines()[0]
    out = ref.communicate(timeout=300)[0]
    assert ref.returncode == 0, out[-3000:]

    a, b = _rows(full), _rows(killed)
    assert [r["step"] for r in a] == list(range(1, STEPS + 1)) + [STEPS]  # train rows + eval
    assert a == b
    step_a, arrays_a = _final_arrays(full)
    step_b, arrays_b = _final_arrays(killed)
    assert step_a == step_b == STEPS
    assert len(arrays_a) == len(arrays_b) > 0
    for x, y in zip(arrays_a, arrays_b, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    with (
        open(os.path.join(full, "final_metrics.json")) as f1,
        open(os.path.join(killed, "final_metrics.json")) as f2,
    ):
        m1, m2 = json.load(f1), json.load(f2)
    assert {k: v for k, v in m1.items() if "seconds" not in k} == {
        k: v for k, v in m2.items() if "seconds" not in k
    }


def test_sigkill_at_a_random_moment_during_a_save_then_resume(tmp_path):
    _kill_and_resume(tmp_path, seed=0, kills=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_several_random_moments_then_resume(tmp_path, seed):
    _kill_and_resume(tmp_path, seed=seed, kills=5)
