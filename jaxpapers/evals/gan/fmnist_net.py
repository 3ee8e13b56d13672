"""The FD-FMNIST feature network: a small Fashion-MNIST classifier trained by this suite.

Why: the standard FID Inception weights cannot be downloaded on our machines, so offline GAN
runs on Fashion-MNIST are scored with the penultimate features (128-d) and logits (10 classes)
of this classifier. Numbers computed with it are "FD-FMNIST", "KID-FMNIST", ..., never "FID":
they are not comparable to Inception numbers in papers.

The weights shipped in ``weights/fmnist_cnn.npz`` were produced by
``python -m jaxpapers.tools.train_fmnist_net --out jaxpapers/evals/gan/weights`` (see the
README there for the test accuracy); they are never weights from elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
WEIGHTS_FILE = os.path.join(WEIGHTS_DIR, "fmnist_cnn.npz")
RESOLUTION = 28
FEATURE_DIM = 128


class FmnistCNN(nn.Module):
    """conv16-conv16-pool-conv32-conv32-pool-dense128 (features) -> dense10 (logits).

    Input: float (N, 28, 28, 1) in [-1, 1]. No BatchNorm/dropout, so the features depend only
    on the image (no train/eval mode or batch statistics to get wrong).
    """

    width: int = 16
    feature_dim: int = FEATURE_DIM

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        w = self.width
        for i, ch in enumerate((w, w, 2 * w, 2 * w)):
            x = nn.relu(nn.Conv(ch, (3, 3), padding="SAME", name=f"conv{i}")(x))
            if i % 2 == 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        feats = nn.relu(nn.Dense(self.feature_dim, name="fc_features")(x))
        logits = nn.Dense(10, name="fc_logits")(feats)
        return {"features": feats, "logits": logits}


def preprocess(images01: jax.Array) -> jax.Array:
    """[0, 1] NHWC images of any size/channels -> (N, 28, 28, 1) in [-1, 1].

    RGB is averaged to gray and other sizes are resized (anti-aliased bilinear), so generators
    at 32x32 or in RGB can still be scored; the cache key records the net's resolution.
    """
    if images01.ndim != 4 or images01.shape[-1] not in (1, 3):
        raise ValueError(f"expected (N, H, W, 1|3) images; got {images01.shape}.")
    x = images01.astype(jnp.float32)
    if x.shape[-1] == 3:
        x = jnp.mean(x, axis=-1, keepdims=True)
    if x.shape[1:3] != (RESOLUTION, RESOLUTION):
        x = jax.image.resize(x, (x.shape[0], RESOLUTION, RESOLUTION, 1), "bilinear")
    return 2.0 * x - 1.0


def save_weights(variables: dict[str, Any], path: str) -> None:
    """Atomic flat ``.npz`` write ('params/conv0/kernel' keys)."""
    flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, **flat)
    os.replace(tmp, path)


def load_weights(path: str = "") -> tuple[dict[str, Any], str]:
    """Loads the classifier's variables; returns (variables, short sha256 of the file)."""
    path = path or WEIGHTS_FILE
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"FD-FMNIST weights not found at {path!r}. Train them (a few minutes on a CPU) with "
            "`python -m jaxpapers.tools.train_fmnist_net --out "
            f"{os.path.dirname(path) or '.'}` or set cfg.fmnist_weights to the file."
        )
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    with np.load(path) as data:
        variables = traverse_util.unflatten_dict({k: data[k] for k in data.files}, sep="/")
    ref = jax.eval_shape(FmnistCNN().init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    want = {k: v.shape for k, v in traverse_util.flatten_dict(ref, sep="/").items()}
    got = {k: v.shape for k, v in traverse_util.flatten_dict(variables, sep="/").items()}
    if want != got:
        raise ValueError(f"{path} does not hold FmnistCNN weights: expected {want}, got {got}.")
    return variables, digest
