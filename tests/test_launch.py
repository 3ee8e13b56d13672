"""Launchers: the SLURM script's stop signal reaches the Python tasks and the job requeues
itself; the TPU pod sync ships source only. SLURM and gcloud are fake scripts on PATH."""

import os
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Stands in for `python -m jaxpapers.main` under srun: a SIGTERM "saves" and exits 0 like the
# trainer; otherwise it "trains" for a few seconds and finishes.
TASK = """\
import os, signal, sys, time
out = os.environ["FAKE_OUT"]
def save(signum, frame):
    open(os.path.join(out, "saved"), "w").write(" ".join(sys.argv[1:]))
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
open(os.path.join(out, "started"), "w").close()
time.sleep(float(os.environ.get("FAKE_TRAIN_S", "3")))
open(os.path.join(out, "finished"), "w").close()
"""


def _fake_slurm(tmp_path: pathlib.Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "task.py").write_text(TASK)
    # srun runs its command as the task process itself (exec), as the real srun's tasks get the
    # signals srun forwards; `python` is the stand-in whatever its arguments.
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\nwhile [[ $1 == --* ]]; do shift; done\nshift\n"
        f'exec "{os.environ.get("PYTHON", "python3")}" "{tmp_path / "task.py"}" "$@"\n'
    )
    (bin_dir / "scontrol").write_text(
        f'#!/usr/bin/env bash\necho "$@" >> "{tmp_path / "scontrol.log"}"\n'
    )
    for f in ("srun", "scontrol"):
        (bin_dir / f).chmod(0o755)
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text("")
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        SLURM_JOB_ID="4242",
        FAKE_OUT=str(tmp_path),
        JAXPAPERS_VENV=str(tmp_path / "venv"),
    )
    return env


def _start(tmp_path, env, script=ROOT / "launch" / "slurm_gpu.sbatch"):
    proc = subprocess.Popen(
        ["bash", str(script), "--config=configs/x.py", "--workdir=w"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 20
    while not (tmp_path / "started").exists():
        assert time.time() < deadline and proc.poll() is None, "the task never started"
        time.sleep(0.05)
    return proc


def test_sbatch_directives():
    text = (ROOT / "launch" / "slurm_gpu.sbatch").read_text()
    assert "#SBATCH --signal=B:USR1@" in text and "B:TERM" not in text
    assert "#SBATCH --requeue" in text and 'scontrol requeue "${SLURM_JOB_ID}"' in text


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=["time_limit", "preempt"])
def test_slurm_stop_signal_reaches_task_then_requeues(tmp_path, sig):
    env = _fake_slurm(tmp_path)
    env["FAKE_TRAIN_S"] = "60"  # never reached when the signal is forwarded
    proc = _start(tmp_path, env)
    proc.send_signal(sig)  # what SLURM sends the batch shell (USR1 via --signal=B:USR1@120)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    saved = (tmp_path / "saved").read_text()
    assert saved == "-m jaxpapers.main --config=configs/x.py --workdir=w"
    assert not (tmp_path / "finished").exists()
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert "jaxpapers: job 4242 restart 0" in out.splitlines()[0]
    assert "requeueing job 4242" in out


def test_slurm_stop_status_is_sruns_even_when_srun_ended_before_the_shell_looked(tmp_path):
    # The race CI once hit: the forwarded TERM ends srun (and bash reaps it) before the loop's
    # `kill -0`, so the interrupted wait's 128 + signal must not become the job's status. A pause
    # after each wait makes that ordering certain.
    env = _fake_slurm(tmp_path)
    env["FAKE_TRAIN_S"] = "60"
    text = (ROOT / "launch" / "slurm_gpu.sbatch").read_text()
    assert text.count("\n  rc=$?\n") == 1
    late = tmp_path / "late.sbatch"
    late.write_text(text.replace("\n  rc=$?\n", "\n  rc=$?; sleep 0.5\n"))
    proc = _start(tmp_path, env, late)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert (tmp_path / "saved").exists() and "requeueing job 4242" in out


def test_slurm_finished_run_is_not_requeued(tmp_path):
    env = _fake_slurm(tmp_path)
    env["FAKE_TRAIN_S"] = "0.2"
    proc = _start(tmp_path, env)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert (tmp_path / "finished").exists() and not (tmp_path / "saved").exists()
    assert not (tmp_path / "scontrol.log").exists()


def test_tpu_pod_sync_ships_source_only(tmp_path):
    repo = tmp_path / "repo"
    for rel in (
        "launch/tpu_pod.sh",
        "jaxpapers/a.py",
        ".venv/bin/python",
        "venv311/lib/x.py",
        "runs/m/checkpoints/1/state",
        "jaxpapers/__pycache__/a.cpython-311.pyc",
        ".cache/x",
        "notes.md",
    ):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x")
    (repo / "launch" / "tpu_pod.sh").write_text((ROOT / "launch" / "tpu_pod.sh").read_text())
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "launch", "jaxpapers/a.py"], cwd=repo, check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    listing = tmp_path / "shipped.txt"
    # gcloud ... scp ... SRC DST: records what the tarball holds; ssh: records the command.
    (bin_dir / "gcloud").write_text(
        "#!/usr/bin/env bash\n"
        'if [[ " $* " == *" scp "* ]]; then\n'
        '  for a in "$@"; do [[ $a == *.tgz && -f $a ]] && tar -tzf "$a" > "'
        + str(listing)
        + '"; done\n'
        "fi\n"
        'echo "$@" >> "' + str(tmp_path / "gcloud.log") + '"\n'
    )
    (bin_dir / "gcloud").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    subprocess.run(
        ["bash", "launch/tpu_pod.sh", "sync", "pod", "zone-a"], cwd=repo, env=env, check=True
    )
    shipped = sorted(listing.read_text().split())
    assert shipped == ["jaxpapers/a.py", "launch/tpu_pod.sh", "notes.md"]
    log = (tmp_path / "gcloud.log").read_text()
    assert "--worker=all" in log and "tar -xzf ~/jaxpapers.tgz" in log
