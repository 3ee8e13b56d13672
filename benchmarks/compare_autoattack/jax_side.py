"""Our side of the AutoAttack reference check (see the rat method's README).

Trains a small adversarially trained MLP (784-256-10, PGD-5 at ε = 0.1, Fashion-MNIST), saves its
weights, and runs OUR AutoAttack standard (APGD-CE → APGD-T → FAB-T → Square, cascade) on the
first N test points. ``torch_side.py`` then runs the official PyTorch AutoAttack on the very same
weights and points. An MLP is used because it is the same function in both frameworks with no
layout conversion to get wrong.

    python benchmarks/compare_autoattack/jax_side.py OUT_DIR [N]
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxpapers import data
from jaxpapers.evals import robust
from jaxpapers.lib import attacks
from jaxpapers.lib.attacks import losses

EPS = 0.1
OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/aa_compare"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500
os.makedirs(OUT, exist_ok=True)


def apply(p, x):
    h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["w1"] + p["b1"])
    return h @ p["w2"] + p["b2"]


def main() -> None:
    cfg = ml_collections.ConfigDict(dict(name="fashion_mnist"))
    train, test = data.load(cfg, "train"), data.load(cfg, "test")
    xtr = train["image"].astype(np.float32) / 255.0
    ytr = train["label"].astype(np.int32)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.normal(k1, (784, 256)) * (2 / 784) ** 0.5,
        "b1": jnp.zeros(256),
        "w2": jax.random.normal(k2, (256, 10)) * (1 / 256) ** 0.5,
        "b2": jnp.zeros(10),
    }
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(p, o, x, y, key):
        x_adv = attacks.pgd(lambda z: apply(p, z), x, y, key, eps=EPS, step_size=0.03, num_steps=5)
        loss, g = jax.value_and_grad(lambda q: jnp.mean(losses.cross_entropy(apply(q, x_adv), y)))(
            p
        )
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    rng = np.random.default_rng(0)
    t0 = time.time()
    for i in range(1500):  # ~3 epochs at batch 128
        idx = rng.integers(0, len(xtr), 128)
        params, opt, loss = step(params, opt, xtr[idx], ytr[idx], jax.random.key(i))
        if (i + 1) % 500 == 0:
            print(f"step {i + 1} adv loss {float(loss):.3f} ({time.time() - t0:.0f}s)", flush=True)
    np.savez(os.path.join(OUT, "mlp.npz"), **{k: np.asarray(v) for k, v in params.items()})
    x = test["image"][:N].astype(np.float32) / 255.0
    y = test["label"][:N].astype(np.int32)
    np.savez(os.path.join(OUT, "points.npz"), x=x, y=y)
    t0 = time.time()
    res = robust.evaluate(
        lambda z: apply(params, z),
        x,
        y,
        jax.random.key(0),
        eps=EPS,
        attacks_to_run=("aa_standard",),
        cascade=True,
        batch_size=N,
    )
    res = {k: v for k, v in res.items() if not isinstance(v, np.ndarray)}  # numbers only
    res["seconds"] = time.time() - t0
    print(robust.format_table(res))
    with open(os.path.join(OUT, "ours.json"), "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
