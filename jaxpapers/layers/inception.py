"""The FID Inception-v3 (TF 'inception-2015-12-05' as ported by pytorch-fid) in Flax Linen.

Architecture facts (``mseitzer/pytorch-fid:src/pytorch_fid/inception.py``, which patches
torchvision's Inception3):
- BasicConv2d = conv (no bias) -> BatchNorm(eps=1e-3, running statistics) -> ReLU.
- The FID variants of the mixed blocks differ from torchvision's: the 3x3 average pools of
  Mixed_5b-5d (InceptionA), Mixed_6b-6e (InceptionC) and Mixed_7b (InceptionE_1) do not count
  the zero padding (TF semantics, ``count_include_pad=False``), and Mixed_7c (InceptionE_2)
  uses a 3x3 *max* pool in its pool branch.
- Input: images in [0, 1], bilinearly resized to 299x299 (``align_corners=False``, no
  anti-aliasing: ``F.interpolate``), then scaled to [-1, 1].
- Outputs: pool3 = global average of Mixed_7c (2048-d, the FID features) and the 1008-way fc
  logits (the TF graph's softmax has 1008 classes). StyleGAN2-ADA computes IS from the logits
  *without* the fc bias, so both are returned.

Parameter names mirror the PyTorch state-dict keys (``Mixed_6b.branch7x7_2.conv.weight`` ->
``params['Mixed_6b']['branch7x7_2']['conv']['kernel']``) so the converter in
``jaxpapers/convert/inception.py`` is a rename + transpose. Weights are NEVER random in use:
``evals.gan.feature_nets.inception_feature_net`` refuses to run without the converted weight file.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
NUM_CLASSES = 1008
POOL_DIM = 2048


class BasicConv2d(nn.Module):
    """conv (no bias) -> BN (eps 1e-3, inference statistics) -> ReLU; PyTorch padding."""

    features: int
    kernel: Sequence[int]
    stride: int = 1
    padding: Sequence[int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        x = nn.Conv(
            self.features,
            tuple(self.kernel),
            strides=(self.stride, self.stride),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_tf(x: jax.Array) -> jax.Array:
    # TF's average pool ignores padded zeros (pytorch-fid "Patch": count_include_pad=False).
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x: jax.Array, stride: int, pad: int) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class FIDInceptionA(nn.Module):
    pool_features: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        c = lambda n: max(1, int(n * self.scale))
        b1 = BasicConv2d(c(64), (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(c(48), (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(c(64), (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(c(64), (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(c(96), (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(c(96), (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(c(self.pool_features), (1, 1), name="branch_pool")(_avg_pool_tf(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        c = lambda n: max(1, int(n * self.scale))
        b3 = BasicConv2d(c(384), (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv2d(c(64), (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(c(96), (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(c(96), (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x, 2, 0)], axis=-1)


class FIDInceptionC(nn.Module):
    channels_7x7: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        c = lambda n: max(1, int(n * self.scale))
        c7 = c(self.channels_7x7)
        b1 = BasicConv2d(c(192), (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(c(192), (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(c(192), (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(c(192), (1, 1), name="branch_pool")(_avg_pool_tf(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        c = lambda n: max(1, int(n * self.scale))
        b3 = BasicConv2d(c(192), (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(c(320), (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(c(192), (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(c(192), (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(c(192), (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(c(192), (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x, 2, 0)], axis=-1)


class FIDInceptionE(nn.Module):
    """InceptionE; ``max_pool_branch`` selects FIDInceptionE_2 (Mixed_7c) over E_1 (Mixed_7b)."""

    max_pool_branch: bool
    scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        c = lambda n: max(1, int(n * self.scale))
        b1 = BasicConv2d(c(320), (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(c(384), (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv2d(c(384), (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                BasicConv2d(c(384), (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = BasicConv2d(c(448), (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(c(384), (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv2d(c(384), (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                BasicConv2d(c(384), (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        # pytorch-fid: Mixed_7c (E_2) max-pools here, Mixed_7b (E_1) average-pools (TF style).
        pooled = _max_pool(x, 1, 1) if self.max_pool_branch else _avg_pool_tf(x)
        bp = BasicConv2d(c(192), (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear_299(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """Bilinear resize like ``F.interpolate(mode='bilinear', align_corners=False)``.

    Half-pixel sampling without anti-aliasing: jax.image.resize anti-aliases when it
    downsamples unless told not to, which would change FID for inputs larger than 299.
    """
    n, h, w, c = x.shape
    if (h, w) == (size, size):
        return x
    return jax.image.resize(x, (n, size, size, c), method="bilinear", antialias=False)


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the standard FID; ``scale`` < 1 shrinks widths (tests only)."""

    scale: float = 1.0
    resize_input: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Args: x: float (N, H, W, 3) images in [0, 1]. Returns pool (N, 2048), logits."""
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FIDInceptionV3 expects (N, H, W, 3) images; got {x.shape}.")
        s = self.scale
        c = lambda n: max(1, int(n * s))
        x = x.astype(jnp.float32)
        if self.resize_input:
            x = resize_bilinear_299(x)
        x = 2.0 * x - 1.0  # [0, 1] -> [-1, 1], pytorch-fid normalize_input
        x = BasicConv2d(c(32), (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(c(32), (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(c(64), (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x, 2, 0)
        x = BasicConv2d(c(80), (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(c(192), (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x, 2, 0)
        x = FIDInceptionA(32, s, name="Mixed_5b")(x)
        x = FIDInceptionA(64, s, name="Mixed_5c")(x)
        x = FIDInceptionA(64, s, name="Mixed_5d")(x)
        x = InceptionB(s, name="Mixed_6a")(x)
        x = FIDInceptionC(128, s, name="Mixed_6b")(x)
        x = FIDInceptionC(160, s, name="Mixed_6c")(x)
        x = FIDInceptionC(160, s, name="Mixed_6d")(x)
        x = FIDInceptionC(192, s, name="Mixed_6e")(x)
        x = InceptionD(s, name="Mixed_7a")(x)
        x = FIDInceptionE(False, s, name="Mixed_7b")(x)
        x = FIDInceptionE(True, s, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d(1) -> pool3 features
        fc = nn.Dense(NUM_CLASSES, name="fc")
        logits = fc(pool)
        kernel = fc.variables["params"]["kernel"]
        return {"pool": pool, "logits": logits, "logits_unbiased": pool @ kernel}
