"""Parameters, FLOPs and CPU throughput of ResNet-50 variants (plain / StRA / SE / CBAM / NL).

    python -m benchmarks.stra_complexity [--bench] [--height=256 --width=128] [--blocks=plain,stra]

FLOPs are XLA's cost analysis of the eval-mode forward of one image (a multiply-add counts 2),
lowered without compiling. ``--bench`` also times the jitted forward and train step (batch 8,
Adam) per variant and prints images/s; prints one JSON line per variant.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import optax
from absl import app, flags

from jaxpapers.methods.stra.model import BLOCKS, StRAResNet, count_params, total_diversity

_HEIGHT = flags.DEFINE_integer("height", 256, "Input height.")
_WIDTH = flags.DEFINE_integer("width", 128, "Input width.")
_BENCH = flags.DEFINE_bool("bench", False, "Also time the jitted forward and train step.")
_BLOCKS = flags.DEFINE_list("blocks", list(BLOCKS), f"Stage-5 blocks, from {BLOCKS}.")


def variant(block: str, num_classes: int = 751) -> StRAResNet:
    """ResNet-50 re-ID model (last stride 1, 512-d neck) with ``block`` in stage 5."""
    return StRAResNet(num_classes=num_classes, block=block)


def flops(model, shape) -> tuple[float, int]:
    """(XLA cost-analysis FLOPs of one eval-mode image, number of parameters)."""
    x = jnp.zeros((1, *shape), jnp.float32)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
    cost = fn.lower(v, x).cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"]), count_params(v["params"])


def bench(model, shape, batch: int = 8, reps: int = 3) -> dict[str, float]:
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    labels = jnp.zeros((batch,), jnp.int32)
    v = jax.jit(lambda: model.init(jax.random.key(0), x[:1], train=False))()
    tx = optax.adam(3e-4)
    opt = tx.init(v["params"])
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))

    @jax.jit
    def step(params, stats, opt, x):
        def loss_fn(p):
            (logits, _), upd = model.apply(
                {"params": p, "batch_stats": stats},
                x,
                train=True,
                mutable=["batch_stats", "losses"],
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return ce + 0.1 * total_diversity(upd.get("losses"), batch).mean(), upd

        (_, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), upd["batch_stats"], opt

    out = {}
    for name, run in (
        ("forward", lambda: fwd(v, x)),
        ("train_step", lambda: step(v["params"], v["batch_stats"], opt, x)),
    ):
        jax.block_until_ready(run())  # compile + warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            jax.block_until_ready(run())
        out[f"{name}_images_per_s"] = batch * reps / (time.perf_counter() - t0)
    return out


def main(argv) -> None:
    if len(argv) > 1:
        print(f"stra_complexity: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    unknown = [b for b in _BLOCKS.value if b not in BLOCKS]
    if unknown or _HEIGHT.value <= 0 or _WIDTH.value <= 0:
        print(f"stra_complexity: blocks must be in {BLOCKS} and sizes positive", file=sys.stderr)
        sys.exit(2)
    shape = (_HEIGHT.value, _WIDTH.value, 3)
    for block in _BLOCKS.value:
        model = variant(block)
        f, n = flops(model, shape)
        row = {
            "block": block,
            "params_M": n / 1e6,
            "gflops": f / 1e9,
            "device": jax.devices()[0].device_kind,
        }
        if _BENCH.value:
            row.update(bench(model, shape))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
