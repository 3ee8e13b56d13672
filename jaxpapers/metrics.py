"""Metric writing (JSON lines + TensorBoard via clu) and the progress line; process 0 only."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np


class MetricWriter:
    """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard; silent on other processes."""

    def __init__(self, workdir: str, tensorboard: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                try:
                    from clu import metric_writers

                    self._tb = metric_writers.SummaryWriter(os.path.join(workdir, "tb"))
                except (
                    Exception
                ):  # TensorBoard writing is optional (needs tensorflow/tensorboardX).
                    self._tb = None

    def write(self, step: int, scalars: dict, prefix: str = "") -> None:
        if not self.active:
            return
        row = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **row}) + "\n")
        if self._tb is not None:
            self._tb.write_scalars(int(step), row)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def truncate_after(path: str, step: int) -> None:
    """Keeps only the rows with ``step <= step`` of a metrics file (atomically; process 0).

    A run killed after its last checkpoint has already written rows for the steps it will redo
    on resume; dropping them makes a resumed run's file equal an uninterrupted run's.
    """
    if jax.process_index() != 0 or not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        if not line.strip():
            continue
        try:
            row_step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut off by the kill
        if row_step <= step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) == len(lines):
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """A progress line: step, it/s, examples/s, ETA and the latest scalars."""

    def __init__(self, total_steps: int, batch_size: int, start_step: int = 0):
        self.total, self.batch = total_steps, batch_size
        self.t0, self.s0 = time.time(), start_step

    def line(self, step: int, scalars: dict) -> str:
        dt = max(time.time() - self.t0, 1e-9)
        rate = (step - self.s0) / dt
        eta = (self.total - step) / rate if rate > 0 else math.inf
        eta_s = "?" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        vals = " ".join(f"{k}={float(np.asarray(v)):.4g}" for k, v in scalars.items())
        return (
            f"step {step}/{self.total} | {rate:.2f} it/s | {rate * self.batch:.1f} ex/s | "
            f"ETA {eta_s} | {vals}"
        )

    def print(self, step: int, scalars: dict) -> None:
        if jax.process_index() == 0:
            print(self.line(step, scalars), file=sys.stdout, flush=True)
