"""One hedge-defense call with its step loop rolled vs unrolled (``hedge.unroll``), on the CPU
default's base model (``configs/rat.py:quick``: ResNet width 8, stages (1, 1), 28x28x1).

    python -m benchmarks.hedge_unroll [--batch=16] [--steps=20] [--reps=3]

Random-init weights and uniform inputs (the loop always runs all its steps, so the cost does not
depend on the weights). Prints the first call (compile + run) and the best of ``--reps`` calls.
"""

from __future__ import annotations

import os
import time

import jax
from absl import app, flags

from jaxpapers import config_lib
from jaxpapers.methods import rat
from jaxpapers.methods.hedge_defense import defense

_BATCH = flags.DEFINE_integer("batch", 16, "Images per defense call.")
_STEPS = flags.DEFINE_integer("steps", 20, "Defense steps (official: 20).")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per variant after the first.")


def main(argv) -> None:
    del argv
    cfg = config_lib.load_config_file("configs/rat.py", "quick,method_variant=sat")
    st = jax.jit(lambda k: rat.init_state(k, cfg))(jax.random.key(0))
    f = rat.logits_fn(st, cfg)
    x = jax.random.uniform(jax.random.key(1), (_BATCH.value, *cfg.data.image_shape))
    print(f"input {x.shape}, {jax.default_backend()}, load average {os.getloadavg()}")
    for name, unroll in (("rolled", 1), ("unrolled", True)):
        fn = jax.jit(
            lambda a, k, unroll=unroll: defense.hedge(
                f, a, k, eps=0.1, step_size=0.0226, num_steps=_STEPS.value, unroll=unroll
            )
        )
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x, jax.random.key(2)))
        first = time.perf_counter() - t0
        times = []
        for r in range(_REPS.value):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, jax.random.key(3 + r)))
            times.append(time.perf_counter() - t0)
        print(
            f"{name}: first call {first:.2f} s, per call {min(times):.3f} s (best of {len(times)})"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
