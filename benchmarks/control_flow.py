"""XLA:CPU cost of putting conv work inside ``lax.scan`` / ``lax.cond`` (why phases are static).

    python -m benchmarks.control_flow                 # small conv net, 4 sign-gradient steps
    python -m benchmarks.control_flow --model=biggan  # one BigGAN teacher iteration (default)

Times the same computation three ways after a warm-up call: unrolled at the top level of the
jitted program, inside a rolled ``lax.scan`` (conv net) / the D-step scan (BigGAN), and inside the
taken branch of a ``lax.cond``. Prints seconds per call and writes JSON with ``--out``.
"""

from __future__ import annotations

import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

_MODEL = flags.DEFINE_enum("model", "convnet", ["convnet", "biggan"], "What to time.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per variant.")
_OUT = flags.DEFINE_string("out", "", "JSON output path.")


class _ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        for c in (16, 32, 64):
            x = nn.avg_pool(nn.relu(nn.Conv(c, (3, 3))(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def _time(fn, *args) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(_REPS.value):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / _REPS.value


def convnet() -> dict:
    net, x = _ConvNet(), jnp.ones((64, 32, 32, 1))
    params = net.init(jax.random.key(0), x)
    grad = jax.grad(lambda v: net.apply(params, v).sum())

    def body(c, _):
        return c + 1e-3 * jnp.sign(grad(c)), None

    def run(v, unroll):
        return jax.lax.scan(body, v, None, length=4, unroll=unroll)[0]

    return {
        "top_level_unrolled": _time(lambda v: run(v, True), x),
        "scan": _time(lambda v: run(v, 1), x),
        "cond_taken_branch": _time(
            lambda v, f: jax.lax.cond(f, lambda u: run(u, True), lambda u: u, v), x, True
        ),
    }


def biggan() -> dict:
    from jaxpapers import config_lib
    from jaxpapers.methods.biggan_dgl import steps

    cfg = config_lib.load_config_file("configs/biggan_dgl.py", "default")
    teacher = steps.init_state(jax.random.key(0), cfg).teacher
    reals, labels = jnp.zeros((cfg.batch_size, 32, 32, 1)), jnp.zeros((cfg.batch_size,), jnp.int32)

    def update(t):
        return steps.gan_update(t, reals, labels, jax.random.key(1), 5, cfg, "teacher")[0]

    out = {"top_level_unrolled": _time(update, teacher)}
    rolled = jax.lax.scan
    try:  # The same iteration with its D-step scan rolled (as before the fix).
        jax.lax.scan = lambda f, c, xs, unroll=1, **kw: rolled(f, c, xs, unroll=1, **kw)
        out["scan"] = _time(update, teacher)
    finally:
        jax.lax.scan = rolled
    out["cond_taken_branch"] = _time(
        lambda t, f: jax.lax.cond(f, update, lambda u: u, t), teacher, True
    )
    return out


def main(argv):
    del argv
    res = {"model": _MODEL.value, "backend": jax.default_backend()}
    res.update(convnet() if _MODEL.value == "convnet" else biggan())
    print(json.dumps(res, indent=2))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    app.run(main)
