"""Shared timing for the CPU speed benchmarks: AOT compile timed apart, warm-up excluded, JSON out.

Every benchmark is one process per workload (``python -m benchmarks.<name>``), so compile caches,
thread pools and allocator state of one workload never leak into another's numbers.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import jax


def load_average() -> list[float]:
    """1/5/15-minute load averages (what ``uptime`` prints): the machine may be shared."""
    return [round(v, 2) for v in os.getloadavg()]


def environment() -> dict[str, Any]:
    return {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def compile_stepper(fn: Callable, args: tuple, carry: bool = True):
    """AOT-compiles ``jax.jit(fn)`` for ``args``; returns ``(compiled, compile seconds, call)``,
    where ``call()`` runs one blocking step and, with ``carry``, feeds the first output back as
    the first argument (a train state, donated), so each step starts from the previous one."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=(0,) if carry else ()).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    args = list(args)

    def call():
        out = compiled(*args)
        jax.block_until_ready(out)
        if carry:
            args[0] = out[0]
        return out

    return compiled, compile_s, call


def time_compiled(
    fn: Callable, args: tuple, steps: int, warmup: int = 1, carry: bool = True
) -> dict[str, Any]:
    """AOT-compiles ``jax.jit(fn)`` for ``args``, runs ``warmup`` untimed calls, then ``steps``
    timed ones. With ``carry`` the first output replaces the first argument (a train state), so
    each timed step starts from the previous one as in training. Reports compile seconds and
    per-step wall and process CPU seconds (mean, min, max)."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}.")
    load_before = load_average()
    compiled, compile_s, call = compile_stepper(fn, args, carry)
    del compiled
    for _ in range(warmup):
        call()
    walls, cpus = [], []
    for _ in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    mean = sum(walls) / len(walls)
    return {
        "compile_seconds": round(compile_s, 3),
        "warmup_steps": warmup,
        "steps": steps,
        "step_seconds_mean": round(mean, 4),
        "step_seconds_min": round(min(walls), 4),
        "step_seconds_max": round(max(walls), 4),
        "cpu_seconds_per_step": round(sum(cpus) / len(cpus), 4),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def emit(result: dict[str, Any], out: str) -> None:
    """Prints the JSON result and writes it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
