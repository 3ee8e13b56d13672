"""One hedge-defense call (``hedge_defense.defense.hedge``) on CPU, its step loop rolled or
unrolled, JSON out.

    python -m benchmarks.hedge_unroll --steps=2 --out=hedge.json              # unrolled (CPU auto)
    python -m benchmarks.hedge_unroll --unroll=no --steps=2                    # rolled lax.scan
    python -m benchmarks.hedge_unroll --model=rat_quick --batch=16 --eps=0.1 --step_size=0.0226 \
        --predict=path_logit_sum --unroll=no     # the hedge_defense README's CPU-preset timing

``--model=preact_resnet18`` (default): PreActResNet-18 (``layers.resnet``) in eval mode, batch
128 of uniform images, 20 steps of 0.007 at ε 0.031, prediction from the final point — the same
workload as benchmarks/reference/torch_hedge.py. ``--model=rat_quick`` is the CPU default's base
model (``configs/rat.py:quick``: ResNet width 8, stages (1, 1), 28x28x1). Random-init weights
(the loop always runs all its steps, so the cost does not depend on the weights). One timed step
is one defense call; the compile is AOT and reported apart, warm-up calls are not timed.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import _timing
from jaxpapers import config_lib
from jaxpapers.layers import resnet
from jaxpapers.methods import rat
from jaxpapers.methods.hedge_defense import defense

_MODEL = flags.DEFINE_enum("model", "preact_resnet18", ["preact_resnet18", "rat_quick"], "Model.")
_SHAPE = flags.DEFINE_list("shape", ["32", "32", "3"], "Image shape H,W,C (preact_resnet18).")
_BATCH = flags.DEFINE_integer("batch", 128, "Images per defense call.")
_HEDGE_STEPS = flags.DEFINE_integer("hedge_steps", 20, "Defense steps (official: 20).")
_EPS = flags.DEFINE_float("eps", 0.031, "Defense radius ε (official CIFAR-10: 0.031).")
_STEP_SIZE = flags.DEFINE_float("step_size", 0.007, "Defense step α (official: 0.007).")
_PREDICT = flags.DEFINE_enum("predict", "final", defense.PREDICT_MODES, "hedge prediction mode.")
_UNROLL = flags.DEFINE_enum("unroll", "auto", defense.UNROLL_MODES, "hedge.unroll mode.")
_STEPS = flags.DEFINE_integer("steps", 2, "Timed defense calls (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed warm-up calls.")
_CONV = flags.DEFINE_enum(
    "conv",
    "auto",
    list(resnet.CONV_OPTIONS),
    "PreActResNet conv gradients (layers.resnet.conv_fn).",
)
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")


def main(argv) -> None:
    del argv
    if _MODEL.value == "rat_quick":
        cfg = config_lib.load_config_file("configs/rat.py", "quick,method_variant=sat")
        st = jax.jit(lambda k: rat.init_state(k, cfg))(jax.random.key(0))
        logits_fn = rat.logits_fn(st, cfg)
        shape = tuple(cfg.data.image_shape)
        apply = lambda variables, v: logits_fn(v)
        variables = {}
    else:
        shape = tuple(int(s) for s in _SHAPE.value)
        if len(shape) != 3:
            raise app.UsageError(f"--shape must be H,W,C, got {_SHAPE.value}.")
        model = resnet.PreActResNet18(10, conv=_CONV.value)
        variables = model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)
        apply = lambda variables, v: model.apply(variables, v, train=False)
    b = _BATCH.value
    x = jnp.asarray(np.random.default_rng(0).random((b, *shape), np.float32))
    unroll = defense.unroll_for(_UNROLL.value)

    def call(variables, x, key):
        return defense.hedge(
            lambda v: apply(variables, v),
            x,
            key,
            eps=_EPS.value,
            step_size=_STEP_SIZE.value,
            num_steps=_HEDGE_STEPS.value,
            predict=_PREDICT.value,
            unroll=unroll,
        )

    timing = _timing.time_compiled(
        call, (variables, x, jax.random.key(2)), _STEPS.value, _WARMUP.value, carry=False
    )
    result = {
        "workload": "hedge_defense",
        "framework": "jax",
        "framework_version": jax.__version__,
        "threads": os.cpu_count(),  # XLA:CPU's intra-op pool: one thread per core
        "layout": "nhwc",
        "conv": _CONV.value,
        "model": _MODEL.value,
        "image_shape": list(shape),
        "batch": b,
        "hedge_steps": _HEDGE_STEPS.value,
        "eps": _EPS.value,
        "step_size": _STEP_SIZE.value,
        "predict": _PREDICT.value,
        "unroll": _UNROLL.value,
        # The allocator setting changes the page-fault share of the CPU time (benchmarks/README.md).
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        **timing,
        "images_per_second": round(b / timing["step_seconds_mean"], 3),
        **_timing.environment(),
    }
    _timing.emit(result, _OUT.value)


if __name__ == "__main__":
    app.run(main)
