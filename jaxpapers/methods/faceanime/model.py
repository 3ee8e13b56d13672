"""FaceAnime generator (ResUNet with an auxiliary map w) and conditional critic.

The official script builds `ResUNetG(img_size, h_dim=128, img_dim=3, norm_dim=3)` and
`NetD(img_size, input_dim=6)` from `common.models.analogy_2`, which is NOT in the release
(pingponglabs/FaceAnime), so the layer-level design here is ours [unverified]:

  G(x_src, n_src, n_dst) -> (x_fake, w):
    input  [x_src || n_src || n_dst] (9 channels, all in [-1, 1]);
    encoder: a 3x3 conv stem + `depth` residual down-blocks (x2 channels each, capped at 8*h);
    `num_res` residual blocks at the bottom; decoder: nearest-upsample + conv + skip concat
    (U-Net) + residual block;
    heads: colour c = tanh(conv) and attention w = sigmoid(conv) (1 channel);
    x_fake = w * x_src + (1 - w) * c.
  The auxiliary map w with an L1 penalty of weight 0.05 on it (the official loss) matches the
  attention-mask formulation of GANimation (Pumarola et al. 2018), where the mask selects the
  pixels copied from the source (static background) and the penalty keeps it from saturating
  at 1; we use that reading.  Instance normalisation in G (no batch statistics: a GAN under
  WGAN-GP), no normalisation in the critic (gradient penalty is per-example, Gulrajani et al.).
  D([x || n_dst]) -> score per image: strided 4x4 convs with LeakyReLU(0.2), then a linear map.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# Mixed precision (``layers.precision``): the output layers keep float32 parameters, so G's
# colour/attention heads (tanh, sigmoid, the composite image) and the critic's score are float32.
G_F32_PARAMS = (r"^(color|attention)/",)
D_F32_PARAMS = (r"^out/",)


def _norm(name: str | None = None) -> nn.Module:
    return nn.GroupNorm(num_groups=None, group_size=1, name=name)  # instance norm


class ResBlock(nn.Module):
    """Pre-activation residual block with optional 2x downsampling (avg-pool)."""

    features: int
    down: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = nn.relu(_norm()(x))
        y = nn.Conv(self.features, (3, 3))(y)
        y = nn.relu(_norm()(y))
        y = nn.Conv(self.features, (3, 3))(y)
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), use_bias=False)(x)
        out = x + y
        if self.down:
            out = nn.avg_pool(out, (2, 2), (2, 2))
        return out


class ResUNetG(nn.Module):
    """Residual U-Net generator (module docstring).

    Attributes:
      h_dim: stem width (official 128).
      depth: number of 2x down/up levels.
      num_res: residual blocks at the bottleneck.
      max_mult: channel cap as a multiple of h_dim.
    """

    h_dim: int = 128
    depth: int = 3
    num_res: int = 2
    max_mult: int = 8

    @nn.compact
    def __call__(self, x_src: Array, n_src: Array, n_dst: Array) -> tuple[Array, Array]:
        if not x_src.shape == n_src.shape == n_dst.shape:
            raise ValueError(
                f"x_src {x_src.shape}, n_src {n_src.shape}, n_dst {n_dst.shape} "
                "must have one shape [B, H, W, 3]."
            )
        hw = x_src.shape[1:3]
        if hw[0] % 2**self.depth or hw[1] % 2**self.depth:
            raise ValueError(f"Image size {hw} must be divisible by 2**depth={2**self.depth}.")
        h = nn.Conv(self.h_dim, (3, 3), name="stem")(jnp.concatenate([x_src, n_src, n_dst], -1))
        skips = [h]
        for i in range(self.depth):
            h = ResBlock(self.h_dim * min(2 ** (i + 1), self.max_mult), down=True, name=f"down{i}")(
                h
            )
            skips.append(h)
        for i in range(self.num_res):
            h = ResBlock(h.shape[-1], name=f"mid{i}")(h)
        for i in reversed(range(self.depth)):
            b, hh, ww, c = h.shape
            h = jax.image.resize(h, (b, hh * 2, ww * 2, c), "nearest")
            h = nn.Conv(self.h_dim * min(2**i, self.max_mult), (3, 3), name=f"up{i}_conv")(h)
            h = jnp.concatenate([h, skips[i]], axis=-1)
            h = ResBlock(self.h_dim * min(2**i, self.max_mult), name=f"up{i}_res")(h)
        h = nn.relu(_norm(name="out_norm")(h))
        color = jnp.tanh(nn.Conv(3, (3, 3), name="color")(h))
        w = nn.sigmoid(nn.Conv(1, (3, 3), name="attention")(h))
        return w * x_src + (1.0 - w) * color, w


class NetD(nn.Module):
    """Conditional critic on [image || n_dst] (6 channels) -> score [B]."""

    h_dim: int = 64
    depth: int = 4
    max_mult: int = 8

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim != 4 or x.shape[-1] != 6:
            raise ValueError(f"NetD expects [B, H, W, 6] ([image || n_dst]), got {x.shape}.")
        for i in range(self.depth):
            x = nn.Conv(
                self.h_dim * min(2**i, self.max_mult),
                (4, 4),
                strides=(2, 2),
                padding=((1, 1), (1, 1)),
                name=f"conv{i}",
            )(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.Dense(1, name="out")(x.reshape(x.shape[0], -1))[:, 0]
