"""Our side of the FID-Inception check (see torch_side.py): converts the random-weight files
written there with ``jaxpapers.convert.inception`` (both torch.save formats) and compares our
Flax FIDInceptionV3's pool3 features and logits with pytorch-fid's on the same images."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.convert import inception as conv
from jaxpapers.layers.inception import FIDInceptionV3

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fid_compare"
ref = np.load(os.path.join(OUT, "torch_out.npz"))
for fmt in ("legacy", "zip"):
    v = conv.load_variables(os.path.join(OUT, f"random_fid_inception_{fmt}.pth"))
    out = jax.jit(lambda x, v=v: FIDInceptionV3().apply(v, x))(jnp.asarray(ref["images"]))
    pool, logits = np.asarray(out["pool"]), np.asarray(out["logits"])
    d_pool = np.abs(pool - ref["pool"]).max()
    d_logits = np.abs(logits - ref["logits"]).max()
    print(
        f"{fmt}: pool3 max|diff| {d_pool:.2e} (max|pool3| {np.abs(ref['pool']).max():.2f}), "
        f"logits max|diff| {d_logits:.2e}"
    )
    assert d_pool < 1e-3 and d_logits < 1e-3, "our FID Inception differs from pytorch-fid"
