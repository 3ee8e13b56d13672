"""Data-parallel evaluation across two ``jax.distributed`` processes on loopback.

Each process (two CPU devices each) runs ``multihost_eval_worker.py``: map_batches, robust
accuracy, GAN feature extraction and k-NN precision/recall, and face embeddings sharded over all
four devices, checked against what the process's own first device computes alone; both
processes must end with the full, identical results.
"""

import os
import re
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "evals", "multihost_eval_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_get_the_whole_sharded_result():
    port, procs = _free_port(), []
    for pid in range(2):
        env = dict(os.environ)
        env.update(
            JAXPAPERS_DISTRIBUTED="1",
            JAXPAPERS_COORDINATOR=f"127.0.0.1:{port}",
            JAXPAPERS_NUM_PROCESSES="2",
            JAXPAPERS_PROCESS_ID=str(pid),
            JAX_PLATFORMS="cpu",
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER],
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
            outs.append(p.communicate(timeout=400)[0])
        finally:
            p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    found = [re.search(r"process (\d): evaluations agree, digest (\w+)", o) for o in outs]
    assert all(found), [o[-2000:] for o in outs]
    assert {m.group(1) for m in found} == {"0", "1"}
    assert found[0].group(2) == found[1].group(2), "the processes got different results"
