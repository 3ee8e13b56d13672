"""The suite's main job as two ``jax.distributed`` processes on loopback.

Both processes run ``python -m jaxpapers.main`` with the environment the launch scripts set
(``JAXPAPERS_DISTRIBUTED=1`` plus an explicit coordinator, two CPU devices each), share one
workdir, get a SIGTERM on ONE host only (a preemption notice reaching the hosts at different
times), must both stop at the same step with one checkpoint, and are then restarted and resume.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from jaxpapers import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=configs/classifier.py:smoke,log_every=1,ckpt_every=0,eval_every=0"


def _launch(workdir: str, steps: int) -> list[subprocess.Popen]:
    env = dict(os.environ)
    # As launched by a user: no test-session compile cache shared between the hosts.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cmd = [sys.executable, "-m", "jaxpapers.main", f"{CONFIG},num_train_steps={steps}"]
    return testing.launch_processes(cmd + [f"--workdir={workdir}"], cwd=ROOT, env=env)


def _train_steps(workdir: str) -> list[int]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["step"] for r in rows if any(k.startswith("train/") for k in r)]


def test_main_two_processes_sigterm_on_one_host_then_resume(tmp_path):
    workdir = str(tmp_path / "run")
    procs = _launch(workdir, steps=100_000)
    deadline = time.time() + 400
    while time.time() < deadline:  # Wait until training runs, then preempt host 1 only.
        if os.path.exists(os.path.join(workdir, "metrics.jsonl")) and _train_steps(workdir):
            break
        if any(p.poll() is not None for p in procs):
            outs = [p.communicate(timeout=60)[0] if p.poll() is not None else "" for p in procs]
            raise AssertionError(f"a process died before training: {[o[-3000:] for o in outs]}")
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGTERM)
    outs = testing.finish_processes(procs)
    stops = [re.search(r"Stopped by SIGTERM at step (\d+)", o) for o in outs]
    assert all(stops), [o[-2000:] for o in outs]
    stopped = int(stops[0].group(1))
    assert int(stops[1].group(1)) == stopped  # Both hosts agreed on the step.
    steps = [d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
    assert steps == [str(stopped)]  # (the folder also holds integrity/, the steps' digests)
    assert not os.path.exists(os.path.join(workdir, "final_metrics.json"))

    final = stopped + 3
    outs = testing.finish_processes(_launch(workdir, steps=final))
    for out in outs:
        assert f"step {stopped}" in out and "Resuming from" in out, out[-2000:]
    sums = [re.search(r"process (\d)/2: final state checksum (\w+)", o) for o in outs]
    assert all(sums) and {s.group(1) for s in sums} == {"0", "1"}, [o[-2000:] for o in outs]
    assert sums[0].group(2) == sums[1].group(2), "the hosts' states differ"
    # Only process 0 writes metrics: every step after the resume is logged exactly once.
    steps = _train_steps(workdir)
    assert [s for s in steps if s > stopped] == list(range(stopped + 1, final + 1)), steps
    assert json.load(open(os.path.join(workdir, "final_metrics.json")))
    assert str(final) in os.listdir(os.path.join(workdir, "checkpoints"))
