"""Our hedge defense vs the official one (``torch_side.py``) on the same MLP and points, official
defaults, no random start: the final points, the summed path logits and the predictions."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.methods.hedge_defense import defense

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/aa_compare"
w = {k: jnp.asarray(v) for k, v in np.load(os.path.join(OUT, "mlp.npz")).items()}
x = jnp.asarray(np.load(os.path.join(OUT, "points.npz"))["x"])
ref = np.load(os.path.join(OUT, "hedge_reference.npz"))


def f(z):
    return jax.nn.relu(z.reshape(z.shape[0], -1) @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]


logits, x_t = jax.jit(lambda z: defense.hedge(f, z, jax.random.key(0), random_init=False))(x)
x_t, logits = np.asarray(x_t), np.asarray(logits)
d_x = np.abs(x_t - ref["x_hedge"])
print(
    f"final points: max|diff| {d_x.max():.2e}, pixels differing > 1e-5: {(d_x > 1e-5).mean():.2e}"
)
print(f"path logit sums: max|diff| {np.abs(logits - ref['sum_logits']).max():.2e}")
agree = (logits.argmax(-1) == ref["sum_logits"].argmax(-1)).mean()
print(f"predictions agree on {agree:.4f} of {len(x)} points")
