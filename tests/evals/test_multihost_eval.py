"""Data-parallel evaluation across two ``jax.distributed`` processes on loopback.

Each process (two CPU devices each) runs ``multihost_eval_worker.py``: map_batches, robust
accuracy, GAN feature extraction and k-NN precision/recall, and face embeddings sharded over all
four devices, checked against what the process's own first device computes alone; both
processes must end with the full, identical results.
"""

import os
import re
import sys

from jaxpapers import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "evals", "multihost_eval_worker.py")


def test_two_processes_get_the_whole_sharded_result():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    procs = testing.launch_processes([sys.executable, WORKER], cwd=ROOT, env=env)
    outs = testing.finish_processes(procs)
    found = [re.search(r"process (\d): evaluations agree, digest (\w+)", o) for o in outs]
    assert all(found), [o[-2000:] for o in outs]
    assert {m.group(1) for m in found} == {"0", "1"}
    assert found[0].group(2) == found[1].group(2), "the processes got different results"
