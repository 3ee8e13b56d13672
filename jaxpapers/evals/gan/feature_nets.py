"""Named feature networks and batched, jitted feature extraction over the data mesh.

A ``FeatureNet`` bundles a jitted ``uint8 images -> (features, logits)`` function with the
labels every reported number must carry. Images enter as uint8 NHWC (as pytorch-fid and
StyleGAN2-ADA feed Inception); generated [-1, 1] images are quantised first (``to_uint8``).
The extraction function is jitted once per input shape and fed fixed-size batches (the last one
padded), sharded ``P('data')`` over the devices of every process and gathered back on each.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from jaxpapers import batching, parallel
from jaxpapers.convert import inception as convert
from jaxpapers.evals.gan import fmnist_net
from jaxpapers.layers import inception

NAMES = ("fmnist", "inception")


@dataclasses.dataclass(frozen=True)
class FeatureNet:
    """A feature network and the labels of the numbers it produces.

    Attributes:
      name: 'fmnist' or 'inception'.
      fd_name: the metric key of the Fréchet distance: 'fd' (FD-FMNIST) or 'fid'.
      label: human-readable description written next to every number.
      weights_id: short hash (or file name) identifying the weights; part of the cache key.
      resolution: the network's input resolution (images are resized to it inside).
      dim: feature dimension.
      apply: jitted ``uint8 (B, H, W, C) -> (features (B, dim) f32, logits (B, K) f32)``.
    """

    name: str
    fd_name: str
    label: str
    weights_id: str
    resolution: int
    dim: int
    apply: Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def fmnist_feature_net(weights_path: str = "") -> FeatureNet:
    variables, digest = fmnist_net.load_weights(weights_path)
    model = fmnist_net.FmnistCNN()

    @jax.jit
    def apply(images_u8):
        out = model.apply(variables, fmnist_net.preprocess(images_u8.astype(jnp.float32) / 255.0))
        return out["features"], out["logits"]

    return FeatureNet(
        name="fmnist",
        fd_name="fd",
        label=f"FD-FMNIST: jaxpapers FmnistCNN penultimate {fmnist_net.FEATURE_DIM}-d features "
        f"(weights sha256 {digest}); not comparable to Inception FID",
        weights_id=digest,
        resolution=fmnist_net.RESOLUTION,
        dim=fmnist_net.FEATURE_DIM,
        apply=apply,
    )


def inception_feature_net(weights_path: str = "") -> FeatureNet:
    """The FID Inception-v3; raises FileNotFoundError (with instructions) without weights."""

    path = convert.find_weights(weights_path)
    variables = convert.load_variables(path)
    model = inception.FIDInceptionV3()

    @jax.jit
    def apply(images_u8):
        x = images_u8.astype(jnp.float32) / 255.0
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)  # grayscale -> RGB, as pytorch-fid's image loader
        out = model.apply(variables, x)
        # StyleGAN2-ADA's IS uses the logits without the fc bias.
        return out["pool"], out["logits_unbiased"]

    return FeatureNet(
        name="inception",
        fd_name="fid",
        label="FID: Inception-v3 pt_inception-2015-12-05 (pytorch-fid port of the TF graph), "
        "pool3 2048-d; bilinear resize to 299 as pytorch-fid",
        weights_id="pt_inception-2015-12-05",
        resolution=inception.INPUT_SIZE,
        dim=inception.POOL_DIM,
        apply=apply,
    )


def get_feature_net(cfg: ml_collections.ConfigDict) -> FeatureNet:
    """The named net, built once per process and weights file (a training job evaluates many
    times: a fresh net would reload its weights and recompile its jitted ``apply`` each time)."""
    if cfg.feature_net not in NAMES:
        raise ValueError(f"unknown feature_net {cfg.feature_net!r}; expected one of {NAMES}.")
    path = cfg.get(f"{cfg.feature_net}_weights", "")
    stamp = os.stat(path).st_mtime_ns if path and os.path.isfile(path) else 0
    return _cached_net(cfg.feature_net, path, stamp)


@functools.lru_cache(maxsize=4)
def _cached_net(name: str, path: str, stamp: int) -> FeatureNet:
    del stamp  # Part of the cache key only: a rewritten weights file is loaded again.
    return fmnist_feature_net(path) if name == "fmnist" else inception_feature_net(path)


@jax.jit
def to_uint8(images: jax.Array) -> jax.Array:
    """[-1, 1] floats -> uint8 as StyleGAN2-ADA saves/evaluates fakes: (x*127.5+128) clipped."""
    return jnp.clip(jnp.floor(images * 127.5 + 128.0), 0, 255).astype(jnp.uint8)


def _check_images(images, where: str) -> None:
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{where}: expected NHWC images with 1 or 3 channels, got {images.shape}.")


class Extractor:
    """Runs ``net.apply`` over fixed-size batches, data-parallel over a device mesh.

    Each batch is sharded over the mesh's ``data`` axis (padded to a multiple of its devices)
    and the features are gathered, so every process gets all of them
    (``batching.map_batches``); every process must pass the same images.
    """

    def __init__(self, net: FeatureNet, batch_size: int, mesh: Mesh | None = None):
        """``mesh``: the devices to run on; default all devices of all processes."""
        self.net, self.batch_size = net, batch_size
        self.mesh = parallel.make_mesh() if mesh is None else mesh

    def _run(self, images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats, logits = batching.map_batches(
            self.net.apply, np.asarray(images_u8), batch_size=self.batch_size, mesh=self.mesh
        )
        if not np.all(np.isfinite(feats)):
            raise ValueError("non-finite features: check the images (NaN from the generator?).")
        return feats, logits

    def batch(self, images_u8) -> tuple[np.ndarray, np.ndarray]:
        """Features/logits of one batch of at most ``batch_size`` uint8 images."""
        _check_images(images_u8, "feature extraction")
        if images_u8.shape[0] > self.batch_size:
            raise ValueError(
                f"batch of {images_u8.shape[0]} images exceeds batch_size {self.batch_size}."
            )
        return self._run(images_u8)

    def array(self, images_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features/logits of a whole uint8 array, batch by batch."""
        _check_images(images_u8, "feature extraction")
        return self._run(images_u8)

    def stream(self, batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
        out = [self.batch(b) for b in batches]
        return np.concatenate([f for f, _ in out]), np.concatenate([g for _, g in out])
