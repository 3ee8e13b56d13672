"""Decode + augment throughput of the grain stream (jaxpapers/data/stream.py) on a JPEG folder.

    python -m benchmarks.input_pipeline --images=512 --repeats=2 --out=input_pipeline.json

Writes ``--images`` ImageNet-like JPEGs (500x375, quality 90, smooth random content; 10 class
folders) to a temporary folder, then measures images/s of the stream's host batches (decode,
centre crop to ``--size``, random flip) with 0 (decoded in the calling process), 1 and 2 grain
worker processes. Each measurement runs in its own process; the worker counts alternate within
every repeat so a change of machine load hits all of them. The timer starts after ``--warmup``
batches (worker start-up and imports excluded) and stops after ``--batches`` more; CPU seconds
are the process's plus its workers' (Linux /proc) over the same window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from benchmarks import _timing

_IMAGES = flags.DEFINE_integer("images", 512, "JPEG files to generate.")
_SIZE = flags.DEFINE_integer("size", 128, "Output resolution (square, centre crop).")
_BATCH = flags.DEFINE_integer("batch", 32, "Images per batch.")
_WARMUP = flags.DEFINE_integer("warmup", 4, "Untimed batches (worker start-up).")
_BATCHES = flags.DEFINE_integer("batches", 16, "Timed batches.")
_WORKERS = flags.DEFINE_list("workers", ["0", "1", "2"], "Worker counts to compare.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Rounds over the worker counts.")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")
# One measurement (internal): the folder and the worker count, result as JSON on stdout.
_CHILD = flags.DEFINE_string("child_folder", "", "Internal: measure this folder and exit.")
_CHILD_WORKERS = flags.DEFINE_integer("child_workers", 0, "Internal: workers of the child run.")

CLASSES = 10


def write_jpegs(root: str, count: int, seed: int = 0) -> int:
    """``count`` 500x375 JPEGs in ``CLASSES`` class folders; returns their total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(count):
        d = os.path.join(root, f"n{i % CLASSES:08d}")
        os.makedirs(d, exist_ok=True)
        coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
        noise = rng.integers(-12, 13, (375, 500, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.int16) + noise, 0, 255).astype(np.uint8))
        path = os.path.join(d, f"{i:06d}.JPEG")
        img.save(path, quality=90)
        total += os.path.getsize(path)
    return total


def _cpu_seconds(pids) -> float:
    """utime + stime of processes (Linux /proc; processes already gone count 0)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def measure(folder: str, workers: int) -> dict:
    import multiprocessing

    import ml_collections

    from jaxpapers.data import stream

    cfg = ml_collections.ConfigDict(
        dict(name="image_folder", path=folder, test_every=0, crop="center", layout="classes")
    )
    size = (_SIZE.value, _SIZE.value)
    src = stream.open_stream_source(cfg, "train", image_size=size, channels=3)
    s = stream.HostStream(
        src, _BATCH.value, seed=0, workers=workers, worker_buffer=1, augment="flip"
    )
    with s:
        for _ in range(_WARMUP.value):
            next(s)
        pids = [os.getpid()] + [p.pid for p in multiprocessing.active_children()]
        cpu0, t0 = _cpu_seconds(pids), time.perf_counter()
        for _ in range(_BATCHES.value):
            batch = next(s)
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds(pids) - cpu0
    assert batch["image"].shape == (_BATCH.value, *size, 3)
    n = _BATCH.value * _BATCHES.value
    return {
        "workers": workers,
        "images": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "images_per_s": round(n / wall, 1),
    }


def main(argv):
    del argv
    if _CHILD.value:
        print(json.dumps(measure(_CHILD.value, _CHILD_WORKERS.value)))
        return
    workers = [int(w) for w in _WORKERS.value]
    if _IMAGES.value < _BATCH.value * (_WARMUP.value + _BATCHES.value) // 2:
        raise app.UsageError("--images is too small for --warmup + --batches (one epoch max 2).")
    result = {
        "workload": "grain stream: JPEG decode + centre crop + flip",
        "jpeg": "500x375 quality 90",
        "size": _SIZE.value,
        "batch": _BATCH.value,
        "cpus": os.cpu_count(),
        "load_average_before": _timing.load_average(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="jaxpapers_jpegs_") as folder:
        result["jpeg_mean_bytes"] = write_jpegs(folder, _IMAGES.value) // _IMAGES.value
        for r in range(_REPEATS.value):
            for w in workers:
                cmd = [sys.executable, "-m", "benchmarks.input_pipeline"]
                cmd += [f"--child_folder={folder}", f"--child_workers={w}"]
                cmd += [f"--{f.name}={f.value}" for f in (_SIZE, _BATCH, _WARMUP, _BATCHES)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                run["repeat"] = r
                result["runs"].append(run)
                print(json.dumps(run), flush=True)
    result["load_average_after"] = _timing.load_average()
    best = {w: max(x["images_per_s"] for x in result["runs"] if x["workers"] == w) for w in workers}
    result["best_images_per_s"] = best
    result["speedup_vs_0_workers"] = {w: round(best[w] / best[0], 2) for w in workers if 0 in best}
    _timing.emit(result, _OUT.value)


if __name__ == "__main__":
    app.run(main)
