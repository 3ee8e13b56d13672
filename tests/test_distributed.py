"""Two ``jax.distributed`` processes on loopback train the same model to identical params."""

import os
import re
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_end_with_identical_params():
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ)
        env.update(
            JAXPAPERS_COORDINATOR=f"127.0.0.1:{port}",
            JAXPAPERS_NUM_PROCESSES="2",
            JAXPAPERS_PROCESS_ID=str(pid),
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "helpers", "distributed_worker.py")],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        finally:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    results = [re.search(r"RESULT process=(\d) loss=(\S+) params_sha256=(\w+)", o) for o in outs]
    assert all(results), outs
    assert {r.group(1) for r in results} == {"0", "1"}
    assert results[0].group(2) == results[1].group(2), "losses differ between processes"
    assert results[0].group(3) == results[1].group(3), "params differ between processes"
