"""UniFaceGAN networks: generator with region-aware conditional normalization, multi-scale D.

No official code has been published (arXiv 2108.05650 only links a project page), so the layout
is ours and written down here:

* ``RegionAwareNorm`` (RACN): parameter-free instance normalisation of the activations, then a
  spatial modulation ``x_hat * (1 + gamma) + beta`` where ``gamma``/``beta`` are predicted from
  the condition map by TWO conv branches, one for the face region and one for the context
  (non-face) region, blended with the (soft, resized) face mask ``m``:
  ``gamma = m * gamma_face + (1 - m) * gamma_ctx`` (same for beta). With both branches holding
  the same parameters this is exactly ``SpadeNorm`` (tested), the SPADE baseline the paper
  replaces.
* ``Generator``: a U-Net-like encoder/decoder whose bottleneck and decoder are normalised by
  RACN (or SPADE) blocks; input and condition are the same tensor (context image with the face
  erased, 3D guidance maps of the recombined geometry, the source texture transferred through
  the mesh correspondence, the face mask); output ``tanh`` RGB in [-1, 1].
* ``MultiScaleDiscriminator``: pix2pixHD-style PatchGAN discriminators on ``num_d`` scales
  (3x3 average-pool stride 2 between scales), conditioned by concatenating the condition map;
  returns every intermediate feature map for feature matching.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Parameter-free per-sample, per-channel normalisation over H, W (NHWC); statistics and
    normalisation in float32, output in ``x``'s dtype (mixed precision, ``layers.precision``)."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
    var = jnp.var(xf, axis=(1, 2), keepdims=True)
    return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def resize_to(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """Area-downsamples (integer factor) or bilinearly resizes ``x`` to spatial size ``hw``."""
    h, w = x.shape[1:3]
    if (h, w) == tuple(hw):
        return x
    if h % hw[0] == 0 and w % hw[1] == 0:
        fh, fw = h // hw[0], w // hw[1]
        return x.reshape(x.shape[0], hw[0], fh, hw[1], fw, x.shape[-1]).mean((2, 4))
    return jax.image.resize(x, (x.shape[0], hw[0], hw[1], x.shape[-1]), "bilinear")


class _ModBranch(nn.Module):
    """One SPADE modulation branch: shared 3x3 conv + ReLU, then 3x3 convs to gamma and beta."""

    features: int
    hidden: int

    @nn.compact
    def __call__(self, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(nn.Conv(self.hidden, (3, 3), name="shared")(cond))
        gamma = nn.Conv(self.features, (3, 3), name="gamma")(h)
        beta = nn.Conv(self.features, (3, 3), name="beta")(h)
        return gamma, beta


class SpadeNorm(nn.Module):
    """SPADE (Park et al. 2019) with instance statistics: one modulation branch everywhere."""

    features: int
    hidden: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array) -> jax.Array:
        del mask  # SPADE ignores the regions; same signature as RegionAwareNorm.
        c = resize_to(cond, x.shape[1:3])
        gamma, beta = _ModBranch(self.features, self.hidden, name="face")(c)
        return instance_norm(x) * (1.0 + gamma) + beta


class RegionAwareNorm(nn.Module):
    """Region-aware conditional normalization: separate face / context modulation, mask-blended.

    The branch of the face region is named ``face`` like SPADE's only branch, so copying
    ``face`` into ``context`` turns RACN parameters into SPADE's (the equivalence test).
    """

    features: int
    hidden: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array) -> jax.Array:
        hw = x.shape[1:3]
        c = resize_to(cond, hw)
        m = jnp.clip(resize_to(mask, hw), 0.0, 1.0)  # soft mask at this scale (area average)
        g_f, b_f = _ModBranch(self.features, self.hidden, name="face")(c)
        g_c, b_c = _ModBranch(self.features, self.hidden, name="context")(c)
        gamma = m * g_f + (1.0 - m) * g_c
        beta = m * b_f + (1.0 - m) * b_c
        return instance_norm(x) * (1.0 + gamma) + beta


def make_norm(kind: str, features: int, hidden: int, name: str) -> nn.Module:
    if kind == "racn":
        return RegionAwareNorm(features, hidden, name=name)
    if kind == "spade":
        return SpadeNorm(features, hidden, name=name)
    raise ValueError(f"model.norm must be 'racn' or 'spade', got {kind!r}.")


class NormResBlock(nn.Module):
    """SPADE ResBlk: (norm, lrelu, conv3) x 2 with a learned (norm, conv1) shortcut if needed."""

    features: int
    norm: str
    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, mask: jax.Array) -> jax.Array:
        mid = min(x.shape[-1], self.features)
        h = make_norm(self.norm, x.shape[-1], self.hidden, "norm_0")(x, cond, mask)
        h = nn.Conv(mid, (3, 3), name="conv_0")(nn.leaky_relu(h, 0.2))
        h = make_norm(self.norm, mid, self.hidden, "norm_1")(h, cond, mask)
        h = nn.Conv(self.features, (3, 3), name="conv_1")(nn.leaky_relu(h, 0.2))
        s = x
        if x.shape[-1] != self.features:
            s = make_norm(self.norm, x.shape[-1], self.hidden, "norm_s")(x, cond, mask)
            s = nn.Conv(self.features, (1, 1), use_bias=False, name="conv_s")(s)
        return s + h


class Generator(nn.Module):
    """Encoder (instance norm) -> RACN/SPADE res-blocks -> decoder with skips and RACN/SPADE.

    Attributes:
      base: channels of the first level (doubled per down level, capped at ``max_ch``).
      n_down: number of stride-2 levels.
      n_res: residual blocks at the bottleneck.
      norm: 'racn' (the paper's) or 'spade' (the baseline it replaces).
      hidden: channels of the modulation branches.
    """

    base: int = 32
    n_down: int = 2
    n_res: int = 2
    max_ch: int = 256
    norm: str = "racn"
    hidden: int = 32

    @nn.compact
    def __call__(self, cond: jax.Array, mask: jax.Array) -> jax.Array:
        if cond.ndim != 4 or mask.shape[:3] != cond.shape[:3]:
            raise ValueError(f"cond {cond.shape} and mask {mask.shape} must be NHWC, same N,H,W.")
        f = 2**self.n_down
        if cond.shape[1] % f or cond.shape[2] % f:
            raise ValueError(f"Image size {cond.shape[1:3]} must be divisible by 2**n_down={f}.")
        ch = lambda i: min(self.base * 2**i, self.max_ch)  # noqa: E731
        h = nn.leaky_relu(instance_norm(nn.Conv(ch(0), (7, 7), name="enc_in")(cond)), 0.2)
        skips = [h]
        for i in range(self.n_down):
            h = nn.Conv(ch(i + 1), (4, 4), strides=(2, 2), name=f"enc_down{i}")(h)
            h = nn.leaky_relu(instance_norm(h), 0.2)
            skips.append(h)
        for i in range(self.n_res):
            h = NormResBlock(ch(self.n_down), self.norm, self.hidden, name=f"res{i}")(h, cond, mask)
        for i in reversed(range(self.n_down)):
            b, hh, ww, c = h.shape
            h = jax.image.resize(h, (b, hh * 2, ww * 2, c), "nearest")
            h = jnp.concatenate([h, skips[i]], axis=-1)
            h = NormResBlock(ch(i), self.norm, self.hidden, name=f"up{i}")(h, cond, mask)
        h = nn.leaky_relu(h, 0.2)
        return jnp.tanh(nn.Conv(3, (7, 7), name="out")(h))


class PatchDiscriminator(nn.Module):
    """pix2pixHD NLayerDiscriminator (4x4 convs): returns its feature maps, last = logits."""

    base: int = 32
    n_layers: int = 3
    max_ch: int = 256

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        feats = []
        h = nn.leaky_relu(nn.Conv(self.base, (4, 4), strides=(2, 2), name="conv0")(x), 0.2)
        feats.append(h)
        for i in range(1, self.n_layers + 1):
            stride = 2 if i < self.n_layers else 1
            ch = min(self.base * 2**i, self.max_ch)
            h = nn.Conv(ch, (4, 4), strides=(stride, stride), name=f"conv{i}")(h)
            h = nn.leaky_relu(instance_norm(h), 0.2)
            feats.append(h)
        feats.append(nn.Conv(1, (4, 4), name="logits")(h))
        return feats


class MultiScaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the image pyramid (avg-pool 3x3 s2 between scales)."""

    num_d: int = 2
    base: int = 32
    n_layers: int = 3

    @nn.compact
    def __call__(self, image: jax.Array, cond: jax.Array) -> Sequence[list[jax.Array]]:
        x = jnp.concatenate([image, cond], axis=-1)
        outs = []
        for i in range(self.num_d):
            outs.append(PatchDiscriminator(self.base, self.n_layers, name=f"d{i}")(x))
            if i + 1 < self.num_d:
                x = nn.avg_pool(
                    x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=False
                )
        return outs
