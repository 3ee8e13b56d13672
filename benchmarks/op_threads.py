"""The PreActResNet-18 layers one at a time on XLA:CPU: wall, process CPU seconds and cores used.

    python -m benchmarks.op_threads --batch=128 --size=32 --out=op_threads.json

For each stage of PreActResNet-18 at ``--size`` (32: 32x32x64, 16x16x128, 8x8x256, 4x4x512), b
``--batch``, jits and times separately: the forward 3x3 conv, its input gradient, its kernel
gradient (XLA's, and ``layers.conv``'s per-tap matmuls), the train-mode BatchNorm + ReLU forward
+ backward (``layers.norm.TorchBatchNorm``), the eval-mode one (elementwise), and the conv that
enters the stage (the 3 -> 64 stem, or the stride-2 conv) forward and input gradient. CPU / wall
is the number of cores the op kept busy (2 = both of a 2-core machine); a layer whose ratio
stays near 1 runs on one thread. The system CPU time and minor page faults show what
first-touching freshly allocated buffers costs (compare a run under another allocator setting,
e.g. ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``).
"""

from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from benchmarks import _timing
from jaxpapers.layers import conv, norm

_BATCH = flags.DEFINE_integer("batch", 128, "Batch size.")
_SIZE = flags.DEFINE_integer("size", 32, "Input height = width of the first stage.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per op (best reported).")
_STAGES = flags.DEFINE_list("stages", ["0", "1", "2", "3"], "Stages to time.")
_OPS = flags.DEFINE_list("ops", [], "Subset of op names (default: all).")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")

DN = ("NHWC", "HWIO", "NHWC")
PAD = ((1, 1), (1, 1))


def _best(fn, *args) -> dict:
    jax.block_until_ready(fn(*args))
    walls, cpus, syss, faults = [], [], [], []
    for _ in range(_REPS.value):
        r0, c0, t0 = (
            resource.getrusage(resource.RUSAGE_SELF),
            time.process_time(),
            time.perf_counter(),
        )
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        syss.append(r1.ru_stime - r0.ru_stime)
        faults.append(r1.ru_minflt - r0.ru_minflt)
    i = int(np.argmin(walls))
    return {
        "wall_ms": round(1e3 * walls[i], 2),
        "cpu_ms": round(1e3 * cpus[i], 2),
        "cores": round(cpus[i] / max(walls[i], 1e-9), 2),
        # CPU spent in the kernel, mostly first-touch faults of freshly allocated buffers.
        "system_ms": round(1e3 * syss[i], 2),
        "minor_page_faults": faults[i],
    }


def _bn_fwd_bwd(x, g):
    m = norm.TorchBatchNorm(use_running_average=False)
    v = m.init(jax.random.key(0), x)

    def f(params, x):
        y, _ = m.apply({**v, "params": params}, x, mutable=["batch_stats"])
        return jnp.vdot(jax.nn.relu(y), g)

    return jax.grad(f, (0, 1))(v["params"], x)


def _ops(b, s, c):
    """name -> (fn, args) for one stage: b x s x s x c, a 3x3 conv c -> c."""
    r = np.random.default_rng(0)
    x = jnp.asarray(r.standard_normal((b, s, s, c)), jnp.float32)
    w = jnp.asarray(r.standard_normal((3, 3, c, c)) * 0.05, jnp.float32)
    g = jnp.asarray(r.standard_normal((b, s, s, c)), jnp.float32)
    fwd = lambda fn: lambda x, w: fn(x, w, (1, 1), PAD, dimension_numbers=DN)
    vjp = lambda fn, i: lambda x, w, g: jax.vjp(fwd(fn), x, w)[1](g)[i]
    scale = jnp.asarray(r.random(c) + 0.5, jnp.float32)
    ops = {
        "conv_fwd": (fwd(lax.conv_general_dilated), (x, w)),
        "conv_input_grad": (vjp(lax.conv_general_dilated, 0), (x, w, g)),
        "conv_kernel_grad_lax": (vjp(lax.conv_general_dilated, 1), (x, w, g)),
        "conv_kernel_grad_mm": (vjp(conv.conv_general_dilated, 1), (x, w, g)),
        "bn_eval_relu": (lambda x: jax.nn.relu((x - 0.1) * scale + 0.2), (x,)),
    }
    ops["bn_train_fwd_bwd"] = (_bn_fwd_bwd, (x, g))
    # The layer that enters the stage: the stem (3 -> 64) or a stride-2 conv from the last stage.
    cin, s_in, st = (3, s, 1) if c == 64 else (c // 2, 2 * s, 2)
    xi = jnp.asarray(r.standard_normal((b, s_in, s_in, cin)), jnp.float32)
    wi = jnp.asarray(r.standard_normal((3, 3, cin, c)) * 0.05, jnp.float32)
    fwd_in = lambda x, w: lax.conv_general_dilated(x, w, (st, st), PAD, dimension_numbers=DN)
    ops["entry_conv_fwd"] = (fwd_in, (xi, wi))
    ops["entry_conv_input_grad"] = (lambda x, w, g: jax.vjp(fwd_in, x, w)[1](g)[0], (xi, wi, g))
    return ops


def main(argv) -> None:
    del argv
    load_before = _timing.load_average()
    result = {}
    for stage in (int(s) for s in _STAGES.value):
        s, c = _SIZE.value >> stage, 64 << stage
        for name, (fn, args) in _ops(_BATCH.value, s, c).items():
            if _OPS.value and name not in _OPS.value:
                continue
            result[f"{s}x{s}x{c}/{name}"] = _best(jax.jit(fn), *args)
            print(f"{s}x{s}x{c}/{name}: {result[f'{s}x{s}x{c}/{name}']}", flush=True)
    out = {
        "workload": "op_threads",
        "batch": _BATCH.value,
        "ops": result,
        "load_average_before": load_before,
        "load_average_after": _timing.load_average(),
        **_timing.environment(),
    }
    _timing.emit(out, _OUT.value)


if __name__ == "__main__":
    app.run(main)
