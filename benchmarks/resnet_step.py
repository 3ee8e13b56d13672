"""PreActResNet-18 train step (and the PGD-10 adversarial-training step) on CPU, JSON out.

    python -m benchmarks.resnet_step --shape=32,32,3 --steps=3 --out=preact_c10.json
    python -m benchmarks.resnet_step --shape=28,28,1 --steps=3
    python -m benchmarks.resnet_step --pgd_steps=10 --steps=1 --out=pgd10.json

The suite's classifier model (``layers.resnet`` PreActResNet-18, BatchNorm in train mode) and
optimizer (``optim.make``: SGD lr 0.1 momentum 0.9, weight decay 5e-4 on ALL parameters as an L2
gradient term, PyTorch semantics), batch ``--batch`` of random images in [0, 1) and random labels,
no augmentation: the same workload as benchmarks/reference/torch_resnet.py. With ``--pgd_steps``
> 0 the step first runs L∞ PGD from ``jaxpapers.lib.attacks`` (uniform random start, ε 8/255,
step 2/255, BatchNorm in eval mode, as the RAT/Madry-AT steps do; its ``lax.scan`` unrolled on
CPU, ``--unroll``) and trains on the adversarial batch. Compile time is AOT and reported apart;
warm-up steps are not timed.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import _timing
from jaxpapers import optim, state
from jaxpapers.layers import resnet
from jaxpapers.lib import attacks

_SHAPE = flags.DEFINE_list("shape", ["32", "32", "3"], "Image shape H,W,C.")
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed warm-up steps.")
_PGD = flags.DEFINE_integer("pgd_steps", 0, "PGD iterations before the update (0: clean step).")
_WIDTH = flags.DEFINE_integer("width", 64, "Base width (64 = PreActResNet-18).")
_UNROLL = flags.DEFINE_enum(
    "unroll", "auto", ["auto", "yes", "no"], "PGD lax.scan unroll (auto: unrolled on CPU)."
)
_CONV = flags.DEFINE_enum(
    "conv",
    "auto",
    list(resnet.CONV_OPTIONS),
    "PreActResNet conv gradients (layers.resnet.conv_fn).",
)
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")

EPS, STEP_SIZE = 8 / 255, 2 / 255


def optimizer_config():
    return optim.config(name="momentum", lr=0.1, momentum=0.9, weight_decay=5e-4, decay_mask="all")


def make_step(model, tx, pgd_steps: int, unroll: bool | int = 1):
    def loss_fn(params, batch_stats, x, y):
        logits, upd = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        return loss, upd["batch_stats"]

    def step(st: state.TrainState, x, y):
        if pgd_steps:
            variables = {"params": st.params, "batch_stats": st.batch_stats}
            logits = lambda v: model.apply(variables, v, train=False)
            key = jax.random.fold_in(st.rng, st.step)
            x = attacks.pgd(
                logits, x, y, key, eps=EPS, step_size=STEP_SIZE, num_steps=pgd_steps, unroll=unroll
            )
            x = jax.lax.stop_gradient(x)
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            st.params, st.batch_stats, x, y
        )
        return st.apply_gradients(grads, tx, batch_stats=stats), loss

    return step


def main(argv):
    del argv
    shape = tuple(int(s) for s in _SHAPE.value)
    if len(shape) != 3:
        raise app.UsageError(f"--shape must be H,W,C, got {_SHAPE.value}.")
    b = _BATCH.value
    model = resnet.PreActResNet18(10, _WIDTH.value, conv=_CONV.value)
    tx = optim.make(optimizer_config())
    variables = model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)
    st = state.TrainState.create(
        variables["params"], tx, jax.random.key(1), variables["batch_stats"]
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((b, *shape), np.float32))
    y = jnp.asarray(rng.integers(0, 10, b), jnp.int32)
    unroll = _UNROLL.value == "yes" or (_UNROLL.value == "auto" and jax.default_backend() == "cpu")
    step = make_step(model, tx, _PGD.value, True if unroll else 1)
    timing = _timing.time_compiled(step, (st, x, y), _STEPS.value, _WARMUP.value)
    result = {
        "workload": "preact_resnet18_pgd_step" if _PGD.value else "preact_resnet18_train_step",
        "framework": "jax",
        "framework_version": jax.__version__,
        "threads": os.cpu_count(),  # XLA:CPU's intra-op pool: one thread per core
        "layout": "nhwc",
        "conv": _CONV.value,
        "image_shape": list(shape),
        "batch": b,
        "pgd_steps": _PGD.value,
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
