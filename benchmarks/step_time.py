"""Times one method's train step for a preset and writes JSON (not a test).

    python -m benchmarks.step_time --config=configs/classifier.py:default --steps=20 \
        --out=bench.json
    python -m benchmarks.step_time --config=configs/stylegan2_dgl.py:ffhq256 --aot_only  # compile

Reports compile seconds (ahead-of-time lower + compile), steps/s and examples/s over ``--steps``
timed steps after one warm-up, achieved GFLOP/s from XLA's cost analysis, and peak memory
(device memory stats where the backend has them, else the process's peak RSS).
Per-device memory of the paper presets from XLA's memory analysis (no run, no data):
``python -m jaxpapers.tools.memory_report``.
"""

from __future__ import annotations

import resource
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from benchmarks import _timing
from jaxpapers import methods, parallel, testing, trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:preset]")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_AOT = flags.DEFINE_bool("aot_only", False, "Only lower and compile (paper-scale shapes on CPU).")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")
_STEP = flags.DEFINE_integer(
    "step", 0, "Global step whose phase is timed (multi-phase methods, e.g. a student stage)."
)


def _flops(compiled) -> float:
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", 0.0))
    except Exception:  # Not every backend reports a cost analysis.
        return 0.0


def _peak_memory_bytes() -> int:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def benchmark(config, steps: int, aot_only: bool, at_step: int = 0) -> dict:
    method = methods.get(config.method)
    if method.kind != "train":
        raise ValueError(f"{config.method} is an analysis method; benchmark its run() instead.")
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        prepared = trainer.prepare(method, config)  # Once on the host.
        init_fn, init_args = trainer.init_fn(method, config, prepared)
        abstract = jax.eval_shape(init_fn, *init_args)
        shardings = trainer.state_shardings(abstract, mesh)
        step_fn = trainer.compile_step(method, config, mesh, shardings)
        spec = method.input_spec(config)
        batch_abs = {
            k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=parallel.data_sharding(mesh))
            for k, v in spec.items()
        }
        state_abs = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
        )
        t0 = time.perf_counter()
        compiled = step_fn.lower(state_abs, batch_abs, at_step).compile()
        result = {
            "method": config.method,
            "preset": config.get("preset", ""),
            "backend": jax.default_backend(),
            "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind,
            "batch_size": config.batch_size,
            "phase": repr(step_fn.phase(at_step)),
            "compile_seconds": time.perf_counter() - t0,
            "flops_per_step": _flops(compiled),
        }
        if aot_only:
            return result
        state, _ = trainer.init(method, config, mesh, prepared)
        batch = parallel.global_batch(testing.random_batch(spec), mesh)
        state, m = compiled(state, batch)
        jax.block_until_ready(m)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, m = compiled(state, batch)
        jax.block_until_ready(m)
        dt = (time.perf_counter() - t0) / steps
    result.update(
        steps_per_second=1 / dt,
        examples_per_second=config.batch_size / dt,
        gflops_per_second=result["flops_per_step"] / dt / 1e9,
        peak_memory_bytes=_peak_memory_bytes(),
        final_loss=float(np.asarray(jax.device_get(m["loss"]))),
    )
    return result


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    result = benchmark(_CONFIG.value, _STEPS.value, _AOT.value, _STEP.value)
    _timing.emit(result, _OUT.value)


if __name__ == "__main__":
    app.run(main)
