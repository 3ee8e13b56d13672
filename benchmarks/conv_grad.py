"""One convolution layer's gradients on CPU: XLA's (``lax``) vs kernel gradients as matmuls
(``layers.conv``, the PreActResNet ``conv='mm_grad'`` option), alternating in one process, JSON out.

    python -m benchmarks.conv_grad --batch=32 --size=32 --cin=64 --cout=64 --stride=1 --kernel=3

Times, per variant, the forward plus the input gradient only (what PGD and the hedge defense
differentiate), the forward plus the kernel gradient only, and both (a training step), after a
warm-up call; reports the best wall and process CPU seconds of ``--reps`` calls and the largest
difference of the kernel gradients relative to their scale.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from benchmarks import _timing
from jaxpapers.layers import conv

_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_SIZE = flags.DEFINE_integer("size", 32, "Input height = width.")
_CIN = flags.DEFINE_integer("cin", 64, "Input channels.")
_COUT = flags.DEFINE_integer("cout", 64, "Output channels.")
_STRIDE = flags.DEFINE_integer("stride", 1, "Stride.")
_KERNEL = flags.DEFINE_integer("kernel", 3, "Kernel size (padding kernel // 2, as PreActResNet).")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per variant and gradient.")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")

DN = ("NHWC", "HWIO", "NHWC")


def _best(fn, *args) -> tuple[float, float]:
    jax.block_until_ready(fn(*args))
    walls, cpus = [], []
    for _ in range(_REPS.value):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return round(min(walls), 4), round(min(cpus), 4)


def main(argv) -> None:
    del argv
    b, s, k, st = _BATCH.value, _SIZE.value, _KERNEL.value, _STRIDE.value
    r = np.random.default_rng(0)
    x = jnp.asarray(r.standard_normal((b, s, s, _CIN.value)), jnp.float32)
    w = jnp.asarray(r.standard_normal((k, k, _CIN.value, _COUT.value)) * 0.05, jnp.float32)
    pad = ((k // 2, k // 2),) * 2
    out_shape = jax.eval_shape(
        lambda: lax.conv_general_dilated(x, w, (st, st), pad, dimension_numbers=DN)
    ).shape
    g = jnp.asarray(r.standard_normal(out_shape), jnp.float32)
    variants = {"lax": lax.conv_general_dilated, "mm_grad": conv.conv_general_dilated}
    load_before = _timing.load_average()
    result, dws = {}, {}
    for wrt, name in (((0,), "input_grad"), ((1,), "kernel_grad"), ((0, 1), "both_grads")):
        for variant, fn in variants.items():  # alternate the variants per gradient
            # g is an argument, not a constant XLA could fold into the program.
            f = lambda x, w, g, fn=fn: jnp.vdot(fn(x, w, (st, st), pad, dimension_numbers=DN), g)
            grad = jax.jit(jax.grad(f, wrt))
            wall, cpu = _best(grad, x, w, g)
            result[f"{variant}_{name}_wall_s"], result[f"{variant}_{name}_cpu_s"] = wall, cpu
            if name == "kernel_grad":
                dws[variant] = grad(x, w, g)[0]
    diff = jnp.max(jnp.abs(dws["mm_grad"] - dws["lax"])) / jnp.max(jnp.abs(dws["lax"]))
    out = {
        "workload": "conv_grad",
        "input_shape": list(x.shape),
        "kernel_shape": list(w.shape),
        "stride": st,
        **result,
        "kernel_grad_max_rel_diff": float(diff),
        "load_average_before": load_before,
        "load_average_after": _timing.load_average(),
        "threads": os.cpu_count(),
        **_timing.environment(),
    }
    _timing.emit(out, _OUT.value)


if __name__ == "__main__":
    app.run(main)
