"""Feature-extraction throughput (images/s) of the FD-FMNIST net and the FID Inception-v3.

    python -m jaxpapers.tools.gan_feature_speed --out bench.json [--batch 64] [--iters 5]

Throughput does not depend on the weights' values, so the Inception network runs with
initialiser weights here; the benchmark reports speed only, never a metric. Compile time is
measured separately from steady-state throughput.
"""

from __future__ import annotations

import json
import time

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("out", "", "Write the JSON result here too.")
    flags.DEFINE_integer("batch", 64, "Images per call.")
    flags.DEFINE_integer("iters", 5, "Timed calls after the compiling one.")
    flags.DEFINE_integer("size", 256, "Inception input size (resized inside the net).")


def _time(fn, x, iters: int) -> dict[str, float]:
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn(x)
    jax.block_until_ready(out)
    steady = (time.perf_counter() - t0) / iters
    return dict(
        compile_s=round(compile_s, 2),
        batch=int(x.shape[0]),
        images_per_s=round(x.shape[0] / steady, 1),
    )


def measure(batch: int, iters: int, size: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxpapers.evals.gan import feature_nets
    from jaxpapers.layers import inception

    results = dict(
        backend=jax.default_backend(),
        devices=jax.device_count(),
        device_kind=jax.devices()[0].device_kind,
    )
    rng = np.random.default_rng(0)
    fm = feature_nets.fmnist_feature_net()
    x28 = jnp.asarray(rng.integers(0, 256, (batch, 28, 28, 1), dtype=np.uint8))
    results["fmnist"] = _time(fm.apply, x28, iters)
    model = inception.FIDInceptionV3()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 299, 299, 3)))

    @jax.jit
    def inc(images_u8):
        out = model.apply(variables, images_u8.astype(jnp.float32) / 255.0)
        return out["pool"], out["logits_unbiased"]

    xs = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    results["inception"] = dict(
        _time(inc, xs, iters), input_size=size, weights="initialiser (speed only)"
    )
    return results


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    if F.batch <= 0 or F.iters <= 0:
        raise cli.BadInput("--batch and --iters must be positive.")
    results = measure(F.batch, F.iters, F.size)
    print(json.dumps(results, indent=2))
    if F.out:
        with open(F.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
