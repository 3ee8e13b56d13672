"""StyleGAN2 resampling layers: polyphase (``stylegan2_ops``) vs the zero-insertion/subsample forms
(benchmarks/reference/stylegan2_zero_insert.py), forward + backward, in one process, JSON out.

    python -m benchmarks.stylegan2_resample --batch=32 --out=resample.json

Layers of the 32x32 ``cifar`` shapes (widths 256 at 4-16, 128 at 32): the modulated up-sampling
conv of each G block, the skip-image up-sampling, and D's down-sampling conv. Each variant is
jitted (compile time apart), run once untimed, then timed ``--repeats`` times (min and mean);
the two forms alternate so a change of machine load hits both.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import _timing
from benchmarks.reference import stylegan2_zero_insert as ref
from jaxpapers.layers import stylegan2_ops as ops

_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per variant.")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")

F = ops.setup_filter()
LAYERS = (  # name, input size, cin, cout
    ("g_conv0_up_4to8", 4, 256, 256),
    ("g_conv0_up_8to16", 8, 256, 256),
    ("g_conv0_up_16to32", 16, 256, 128),
    ("g_skip_upsample_16to32", 16, 3, 3),
    ("d_conv_down_32to16", 32, 128, 256),
    ("d_conv_down_16to8", 16, 256, 256),
)


def variants(name: str):
    if name.startswith("g_conv0_up"):
        fast = lambda x, w, s: ops.modulated_conv2d(x, w, s, True, True, F)
        return fast, lambda x, w, s: ref.modulated_conv_up(x, w, s, F)
    if name.startswith("g_skip"):
        return (lambda x, w, s: ops.upsample2d(x, F)), (lambda x, w, s: ref.upsample2d(x, F))
    return (lambda x, w, s: ops.conv2d_resample(x, w, F, down=True)), (
        lambda x, w, s: ref.conv_down(x, w, F)
    )


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    n = _BATCH.value
    result = {"workload": "stylegan2_resample_layers", "batch": n, "layers": {}}
    result.update(_timing.environment())
    result["load_average_before"] = _timing.load_average()
    for name, size, cin, cout in LAYERS:
        x = jnp.asarray(rng.normal(size=(n, size, size, cin)).astype(np.float32))
        w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)).astype(np.float32) / np.sqrt(9 * cin))
        s = jnp.asarray(rng.normal(size=(n, cin)).astype(np.float32) + 1.0)
        fns, entry = {}, {}
        for label, fn in zip(("polyphase", "zero_insert"), variants(name), strict=True):
            loss = lambda x, w, s, fn=fn: jnp.sum(jnp.square(fn(x, w, s)))
            t0 = time.perf_counter()
            fns[label] = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, w, s).compile()
            entry[f"{label}_compile_seconds"] = round(time.perf_counter() - t0, 3)
            jax.block_until_ready(fns[label](x, w, s))
        times = {k: [] for k in fns}
        for _ in range(_REPEATS.value):
            for label, fn in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(x, w, s))
                times[label].append(time.perf_counter() - t0)
        for label, ts in times.items():
            entry[f"{label}_seconds_min"] = round(min(ts), 4)
            entry[f"{label}_seconds_mean"] = round(sum(ts) / len(ts), 4)
        entry["speedup_mean"] = round(
            entry["zero_insert_seconds_mean"] / entry["polyphase_seconds_mean"], 2
        )
        result["layers"][name] = entry
        print(name, entry, flush=True)
    result["load_average_after"] = _timing.load_average()
    _timing.emit(result, _OUT.value)


if __name__ == "__main__":
    app.run(main)
