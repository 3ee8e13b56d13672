"""SIGTERM / SIGINT during an analysis method (granular_avalanche, a tiny shear simulation):
the run saves at the end of the chunk it is in, says how to resume, and re-running the same
call resumes; the final summary, tracks and metrics equal an uninterrupted run's.

In-process (``jaxpapers.main.run``, what the command line calls) so the compiled DEM is shared
by every launch; a timer thread sends the signal to this process at a moment drawn from a
seeded RNG (a number of DEM chunks plus a fraction of a second). The test's own handlers absorb
a signal that lands outside the simulations (where the method keeps the default actions). The
command line itself (exit status, printed line) is covered by the slow test at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from configs import granular_avalanche as cfg_mod
from jaxpapers import main, stopping

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Fewer preparation chunks than the smoke preset; ckpt_every=10 leaves most chunks between
# periodic saves, so a stop must save its own record.
SPEC = "smoke,sim.prep_time=2.0,sim.ckpt_every=10"
TIMING = ("sim_seconds", "seconds")  # wall-clock numbers, different in every run


def _config():
    return cfg_mod.get_config(SPEC)


def _untimed(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.endswith(TIMING)}


def _record(workdir: str) -> dict:
    """Everything the analysis leaves that must not depend on interruptions."""
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = {tag: _untimed(s) for tag, s in json.load(f).items()}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [_untimed(json.loads(line)) for line in f if line.strip()]
    with open(os.path.join(workdir, "final_metrics.json")) as f:
        final = _untimed(json.load(f))
    tracks = {}
    for tag in ("rough", "smooth"):
        with np.load(os.path.join(workdir, f"tracks_{tag}.npz")) as z:
            tracks.update({f"{tag}/{k}": z[k] for k in z.files})
    return dict(summary=summary, rows=rows, final=final, tracks=tracks)


def _assert_same(a: dict, b: dict) -> None:
    # NaN summary values (no large drops in a tiny run) compare equal through json.dumps.
    assert json.dumps(a["summary"], sort_keys=True) == json.dumps(b["summary"], sort_keys=True)
    assert json.dumps(a["rows"], sort_keys=True) == json.dumps(b["rows"], sort_keys=True)
    assert json.dumps(a["final"], sort_keys=True) == json.dumps(b["final"], sort_keys=True)
    assert a["tracks"].keys() == b["tracks"].keys()
    for k in a["tracks"]:
        np.testing.assert_array_equal(a["tracks"][k], b["tracks"][k], err_msg=k)


@pytest.fixture
def absorb_late_signals():
    """While the test runs, SIGTERM/SIGINT outside a run's window are recorded, not fatal."""
    late = []
    previous = {
        s: signal.signal(s, lambda n, f: late.append(n)) for s in (signal.SIGTERM, signal.SIGINT)
    }
    yield late
    for s, h in previous.items():
        signal.signal(s, h)


def _launch(workdir: str, monkeypatch, sig=None, after: int = 0, delay: float = 0.0):
    """``main.run`` of the config; with ``sig``, a timer sends it to this process ``delay``
    seconds after this launch has finished ``after`` DEM chunks (0: after the launch starts).
    Returns (result, chunks finished in this launch)."""
    chunks, timers = [0], []

    def arm():
        timers.append(threading.Timer(delay, os.kill, (os.getpid(), sig)))
        timers[-1].start()

    def counting_advance(*args, **kwargs):
        chunks[0] += 1
        if sig is not None and chunks[0] == after:
            arm()
        experiment_advance(*args, **kwargs)

    from jaxpapers.methods.granular_avalanche import experiment

    experiment_advance = experiment.advance
    monkeypatch.setattr(experiment, "advance", counting_advance)
    if sig is not None and after == 0:
        arm()
    try:
        return main.run(_config(), workdir), chunks[0]
    finally:
        monkeypatch.setattr(experiment, "advance", experiment_advance)
        for t in timers:
            t.cancel()
            t.join()


def test_stops_at_random_moments_then_resume_equals_uninterrupted(
    tmp_path, capsys, monkeypatch, absorb_late_signals
):
    full, stopped = str(tmp_path / "full"), str(tmp_path / "stopped")
    _, remaining = _launch(full, monkeypatch)  # also compiles the DEM for the launches below
    capsys.readouterr()

    # The moments: after a random number of the chunks still to run (counted, so they do not
    # depend on the machine's speed) plus a random fraction of a chunk's time; a stop landing
    # in an analysis takes effect before the next simulation or, in the last one, not at all.
    # (A stop before the first chunk: the next test.)
    rng = np.random.default_rng(0)
    stops = []
    for launch in range(8):
        # SIGTERM and SIGINT alternate; the fifth launch is left alone to finish.
        sig = (signal.SIGTERM, signal.SIGINT)[launch % 2] if launch < 4 else None
        after = int(rng.integers(1, max(2, remaining // 2)))  # leaves chunks for more stops
        result, ran = _launch(stopped, monkeypatch, sig, after, rng.uniform(0.0, 0.05))
        out = capsys.readouterr().out
        if "stopped_by" not in result:
            break
        remaining -= ran
        assert result["stopped_by"] == sig
        lines = [line for line in out.splitlines() if line.startswith("Stopped by")]
        assert len(lines) == 1 and lines[0].endswith("Re-run the same command to resume."), out
        assert f"Stopped by {signal.Signals(sig).name}: " in lines[0]
        assert not os.path.exists(os.path.join(stopped, "final_metrics.json"))
        stops.append(lines[0])
    else:
        pytest.fail("the run never finished")
    assert len(stops) >= 2, f"too few stops landed inside a run: {stops}"
    assert any("simulation stopped after chunk" in s for s in stops), stops
    _assert_same(_record(full), _record(stopped))
    # Re-running a finished analysis restores the finished simulations and gives the same.
    _launch(stopped, monkeypatch)
    _assert_same(_record(full), _record(stopped))


def test_a_stop_during_an_analysis_saves_the_running_simulation(tmp_path, absorb_late_signals):
    """A stop request seen at the end of a chunk saves that chunk's record even between the
    periodic checkpoints, and the resumed simulation continues from that chunk."""
    from jaxpapers.methods.granular_avalanche import experiment, simulate

    sim = _config().sim
    ck = str(tmp_path / "ck")
    restore = stopping.install(signal.SIGTERM)
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once, before the first chunk ends
        with pytest.raises(experiment.Interrupted) as stop:
            simulate.shear_experiment(sim, 0.8, 0.05, 0, log=lambda s: None, ckpt_dir=ck)
    finally:
        restore()
    assert stop.value.signum == signal.SIGTERM and stop.value.chunk == 1
    assert sorted(d for d in os.listdir(ck) if d.isdigit()) == ["1"]  # ckpt_every=10: no cadence
    lines = []
    resumed = simulate.shear_experiment(sim, 0.8, 0.05, 0, log=lines.append, ckpt_dir=ck)
    assert any("resumed" in s and "chunk 1" in s for s in lines), lines
    ref = simulate.shear_experiment(sim, 0.8, 0.05, 0, log=lambda s: None)
    for k in ("positions", "strain", "stress"):
        np.testing.assert_array_equal(ref[k], resumed[k], err_msg=k)


def test_exit_status_second_ctrl_c_and_threads():
    assert stopping.exit_status(None) == 0
    assert stopping.exit_status(signal.SIGTERM) == 0  # a launcher requeues the job on 0
    assert stopping.exit_status(signal.SIGINT) == 130
    before = signal.getsignal(signal.SIGINT)
    with stopping.on_signals(signal.SIGINT):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stopping.requested() == signal.SIGINT  # the first Ctrl-C only asks
        with pytest.raises(KeyboardInterrupt):  # the second one interrupts at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before and stopping.requested() is None
    # Outside the main thread no handler can be set: nothing changes, nothing fails.
    seen = []
    worker = threading.Thread(target=lambda: seen.append(stopping.install(signal.SIGTERM)()))
    worker.start()
    worker.join()
    assert seen == [None] and signal.getsignal(signal.SIGTERM) is not stopping._handler


@pytest.mark.slow
def test_command_line_sigterm_and_sigint_then_resume(tmp_path):
    """``python -m jaxpapers.main``: SIGTERM exits 0, SIGINT 130, each after one resume line;
    the third launch finishes with the uninterrupted run's numbers."""
    cmd = [
        sys.executable,
        "-m",
        "jaxpapers.main",
        f"--config=granular_avalanche:{SPEC}",
        f"--workdir={tmp_path / 'w'}",
    ]
    for sig, status in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        out = []
        for line in proc.stdout:  # the signal once a simulation is running
            out.append(line)
            if "free spheres" in line:
                break
        proc.send_signal(sig)
        out.append(proc.communicate(timeout=300)[0])
        text = "".join(out)
        assert proc.returncode == status, text[-3000:]
        assert f"Stopped by {signal.Signals(sig).name}: " in text, text[-3000:]
        assert "Re-run the same command to resume." in text
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed from" in done.stdout
    ref = str(tmp_path / "ref")
    main.run(_config(), ref)
    _assert_same(_record(ref), _record(str(tmp_path / "w")))
