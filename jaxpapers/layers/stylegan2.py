"""StyleGAN2 generator (mapping + skip synthesis) and residual discriminator in Flax Linen.

Shared by the StyleGAN2-based methods (``stylegan2_dgl``, ``synface``).

Follows NVlabs/stylegan2 ``training/networks_stylegan2.py`` (the TF code DGL-GAN forked):
``G_mapping`` (8 FC layers, lrelu, z 2nd-moment normalization), ``G_synthesis_stylegan2`` with
``architecture='skip'`` and ``D_stylegan2`` with ``architecture='resnet'``; DGL-GAN's
``G_synthesis_stylegan2_compress`` divides every synthesis conv width by ``channel_divisor``
while the mapping network, the 4x4 constant and the style input w stay full size.

Parameter names mirror the official ones (``mapping/fc{i}``, ``synthesis/b{res}/conv0|conv1|
torgb``, D ``b{res}/fromrgb|conv0|conv1|skip``, ``b4/conv|fc|out``) so the converter in
``jaxpapers.convert.stylegan2`` maps checkpoints 1:1. Images are NHWC in [-1, 1].

Noise inputs (``noise_mode``): ``'random'`` (default, training) draws per-sample N(0, 1) from the
``'noise'`` rng; ``'none'`` adds nothing; ``'const'`` adds the fixed per-layer buffers of the
``'noise_const'`` collection (the official ``noise{j}`` variables / ``noise_const`` buffers, so a
converted generator reproduces the official images for fixed latents). The buffers are not params:
pass them as ``{'params': ..., 'noise_const': noise_const_from_official(...)}`` or
`noise_const_buffers` for a network trained here.

``conv_clamp`` (stylegan2-ada-pytorch's option, default off) clips the outputs of the synthesis
layers, the ToRGB layers and D's convolutions other than the skips to [-conv_clamp, conv_clamp]
where the official code does. Mixed precision (``layers.precision``): every layer computes in the
dtype of its weight (see ``stylegan2_ops``), so a model picks which blocks run in bfloat16 by
which parameters its policy keeps in float32 (``stylegan2_dgl.model.f32_params``: the official
``num_fp16_res`` layout). As officially, the image skip path of G (ToRGB outputs and their
upsampling) is float32 and D's minibatch-std statistic stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.layers import stylegan2_ops as ops

NOISE_MODES = ("random", "const", "none")


def nf(stage: int, fmap_base: int, fmap_max: int, fmap_decay: float = 1.0, fmap_min: int = 1):
    """Official feature-map count of a stage: min(fmap_base / 2**(stage*decay), fmap_max)."""
    return int(min(max(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_min), fmap_max))


def log2_res(resolution: int) -> int:
    """log2 of a power-of-two resolution >= 4, with a clear error otherwise."""
    lr = int(round(math.log2(resolution)))
    if resolution < 4 or 2**lr != resolution:
        raise ValueError(f"Resolution must be a power of two >= 4, got {resolution}.")
    return lr


def num_ws(resolution: int) -> int:
    """Number of per-layer w inputs of the skip synthesis network (18 at 1024)."""
    return 2 * log2_res(resolution) - 2


def normalize_2nd_moment(x: jax.Array) -> jax.Array:
    """StyleGAN's 2nd-moment normalisation over the feature axis (zero vectors stay zero)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-8)


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalization, ``num_layers`` equalized-lr FC layers with lrelu.

    ``lr_mul`` folded into the parametrization defaults to 1.0: the official 0.01 is applied by
    the optimizer (``lr_multipliers``), an identical Adam trajectory (see ops.EqualDense).

    With a ``code`` (an already embedded condition: stylegan2-ada-pytorch ``MappingNetwork`` with
    ``c_dim > 0``) the FC layers read ``[norm(z), norm(code)]``.
    """

    w_dim: int = 512
    num_layers: int = 8
    lr_mul: float = 1.0

    @nn.compact
    def __call__(self, z: jax.Array, code: jax.Array | None = None) -> jax.Array:
        x = normalize_2nd_moment(z)
        if code is not None:
            if code.ndim != 2 or code.shape[0] != z.shape[0]:
                raise ValueError(f"code must be [N={z.shape[0]}, code_dim], got {code.shape}.")
            x = jnp.concatenate([x, normalize_2nd_moment(code)], axis=1)
        for i in range(self.num_layers):
            x = ops.EqualDense(self.w_dim, lr_mul=self.lr_mul, act="lrelu", name=f"fc{i}")(x)
        return x


class SynthesisNetwork(nn.Module):
    """Skip-architecture synthesis: const 4x4 -> [conv0_up, conv1, torgb] per resolution.

    Conv widths are ``nf(stage) // channel_divisor`` (DGL-GAN student); the constant keeps the
    full ``nf(1)`` channels, as ``G_synthesis_stylegan2_compress`` does.
    """

    resolution: int = 32
    img_channels: int = 3
    fmap_base: int = 16384
    fmap_max: int = 512
    channel_divisor: int = 1
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    conv_clamp: float | None = None

    def width(self, stage: int) -> int:
        return max(1, nf(stage, self.fmap_base, self.fmap_max) // self.channel_divisor)

    def layer(self, features: int, x, w, noise_mode: str, name: str, up: bool = False):
        """One noisy synthesis conv. With const noise the layer runs linear (conv + bias), the
        stored buffer times its ``noise_strength`` is added, then the activation: the official
        ``lrelu(conv + noise * strength + bias)`` with the same params."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
        f, clamp = self.resample_filter, self.conv_clamp
        if noise_mode != "const":
            return ops.ModulatedConv2d(
                features, 3, up=up, resample_filter=f, clamp=clamp, name=name
            )(x, w, noise_mode)
        conv = ops.ModulatedConv2d(features, 3, up=up, act="linear", resample_filter=f, name=name)
        y = conv(x, w, "none")
        if not self.has_variable("noise_const", name):
            raise ValueError(
                "noise_mode='const' needs the 'noise_const' collection (noise_const_buffers or "
                "noise_const_from_official) next to the params."
            )
        buf = self.get_variable("noise_const", name)
        strength = conv.variables["params"]["noise_strength"]
        y = (y.astype(jnp.float32) + (buf * strength.astype(jnp.float32))[None]).astype(y.dtype)
        return ops.bias_act(y, None, "lrelu", clamp)

    def torgb(self, x, w, name: str):
        """ToRGB: a 1x1 modulated conv without demodulation, noise or activation; float32 out
        (the image skip path stays float32, as officially)."""
        return ops.ModulatedConv2d(
            self.img_channels,
            1,
            demodulate=False,
            use_noise=False,
            act="linear",
            clamp=self.conv_clamp,
            name=name,
        )(x, w).astype(jnp.float32)

    @nn.compact
    def __call__(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
        lr = log2_res(self.resolution)
        if ws.ndim != 3 or ws.shape[1] != num_ws(self.resolution):
            raise ValueError(f"ws must be [N, {num_ws(self.resolution)}, w_dim], got {ws.shape}.")
        n = ws.shape[0]
        f = self.resample_filter
        const = self.param(
            "const", nn.initializers.normal(1.0), (4, 4, nf(1, self.fmap_base, self.fmap_max))
        )
        x = jnp.broadcast_to(const[None], (n,) + const.shape)
        x = self.layer(self.width(1), x, ws[:, 0], noise_mode, "b4_conv1")
        img = self.torgb(x, ws[:, 1], "b4_torgb")
        filt = ops.setup_filter(f)
        for res in range(3, lr + 1):
            r = 2**res
            c = self.width(res - 1)
            x = self.layer(c, x, ws[:, 2 * res - 5], noise_mode, f"b{r}_conv0", up=True)
            x = self.layer(c, x, ws[:, 2 * res - 4], noise_mode, f"b{r}_conv1")
            img = ops.upsample2d(img, filt) + self.torgb(x, ws[:, 2 * res - 3], f"b{r}_torgb")
        return img


def noise_layers(resolution: int) -> list[tuple[str, int]]:
    """(layer name, resolution) of every noisy synthesis layer in the official order (TF
    ``noise{j}``, PyTorch ``b{r}.conv0|conv1.noise_const``)."""
    out = [("b4_conv1", 4)]
    for res in range(3, log2_res(resolution) + 1):
        out += [(f"b{2**res}_conv0", 2**res), (f"b{2**res}_conv1", 2**res)]
    return out


def noise_const_from_official(buffers: Sequence[np.ndarray], resolution: int) -> dict:
    """The ``'noise_const'`` collection from the official per-layer buffers, in official order
    (TF ``synthesis/noise{j}`` [1, 1, r, r] or PyTorch ``noise_const`` [r, r])."""
    layers = noise_layers(resolution)
    if len(buffers) != len(layers):
        raise ValueError(
            f"Expected {len(layers)} noise buffers at {resolution}, got {len(buffers)}."
        )
    out = {}
    for (name, r), b in zip(layers, buffers, strict=True):
        b = np.asarray(b, np.float32)
        if b.size != r * r:
            raise ValueError(f"Noise buffer for {name} has shape {b.shape}, expected {r}x{r}.")
        out[name] = b.reshape(r, r, 1)
    return out


def noise_const_buffers(key: jax.Array, resolution: int) -> dict:
    """Fresh N(0, 1) buffers for a generator trained here (the official networks draw theirs
    once at construction in the same way); deterministic in ``key``."""
    layers = noise_layers(resolution)
    keys = jax.random.split(key, len(layers))
    return {
        name: np.asarray(jax.random.normal(k, (r, r, 1)))
        for (name, r), k in zip(layers, keys, strict=True)
    }


class Generator(nn.Module):
    """StyleGAN2 G. ``__call__`` runs mapping + synthesis; ``mapping``/``synthesis`` separately.

    w_avg (the tracked mean of w, used by truncation) is not a Flax variable: the train state
    holds it next to the params and passes it in, so params stay the only thing optimizers see.
    """

    resolution: int = 32
    img_channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    fmap_base: int = 16384
    fmap_max: int = 512
    channel_divisor: int = 1
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    conv_clamp: float | None = None

    def setup(self):
        self.mapping_net = MappingNetwork(self.w_dim, self.mapping_layers, name="mapping")
        self.synthesis_net = SynthesisNetwork(
            self.resolution,
            self.img_channels,
            self.fmap_base,
            self.fmap_max,
            self.channel_divisor,
            self.resample_filter,
            self.conv_clamp,
            name="synthesis",
        )

    def mapping(
        self,
        z: jax.Array,
        w_avg: jax.Array | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        code: jax.Array | None = None,
    ) -> jax.Array:
        """z [N, z_dim] -> ws [N, num_ws, w_dim], with optional truncation toward ``w_avg``;
        ``code`` [N, code_dim] conditions the mapping (see `MappingNetwork`)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {z.shape}.")
        w = self.mapping_net(z, code)
        ws = jnp.repeat(w[:, None], num_ws(self.resolution), axis=1)
        if truncation_psi != 1.0:
            if w_avg is None:
                raise ValueError("Truncation needs w_avg (the tracked mean of w).")
            cut = ws.shape[1] if truncation_cutoff is None else truncation_cutoff
            trunc = w_avg + truncation_psi * (ws - w_avg)
            ws = jnp.where((jnp.arange(ws.shape[1]) < cut)[None, :, None], trunc, ws)
        return ws

    def synthesis(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
        return self.synthesis_net(ws, noise_mode)

    def __call__(self, z, w_avg=None, truncation_psi: float = 1.0, noise_mode: str = "random"):
        return self.synthesis(self.mapping(z, w_avg, truncation_psi), noise_mode)


class Discriminator(nn.Module):
    """Residual StyleGAN2 D with minibatch-std epilogue; returns one logit per image [N].

    With ``cmap_dim > 0`` it is the conditional (projection) D of StyleGAN2-ADA: the epilogue
    outputs a ``cmap_dim`` vector projected onto a learned per-class vector (a ``cmap`` table of
    ``num_classes`` rows), scaled by 1/sqrt(cmap_dim); ``labels`` are then required (SynFace).
    """

    resolution: int = 32
    fmap_base: int = 16384
    fmap_max: int = 512
    channel_divisor: int = 1
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    num_classes: int = 0
    cmap_dim: int = 0
    conv_clamp: float | None = None

    def width(self, stage: int) -> int:
        return max(1, nf(stage, self.fmap_base, self.fmap_max) // self.channel_divisor)

    @nn.compact
    def __call__(self, img: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        lr = log2_res(self.resolution)
        if img.ndim != 4 or img.shape[1:3] != (self.resolution, self.resolution):
            raise ValueError(
                f"D expects [N, {self.resolution}, {self.resolution}, C], got {img.shape}."
            )
        f, clamp = self.resample_filter, self.conv_clamp
        x = ops.EqualConv2d(
            self.width(lr - 1), 1, act="lrelu", clamp=clamp, name=f"b{2**lr}_fromrgb"
        )(img)
        filt = ops.setup_filter(f)
        for res in range(lr, 2, -1):
            r = 2**res
            t = x
            x = ops.EqualConv2d(
                self.width(res - 1), 3, act="lrelu", clamp=clamp, name=f"b{r}_conv0"
            )(x)
            x = ops.EqualConv2d(
                self.width(res - 2),
                3,
                down=True,
                act="lrelu",
                resample_filter=f,
                clamp=clamp,
                name=f"b{r}_conv1",
            )(x)
            # Official 1x1 skip conv downsamples first (blur + stride), no bias, no clamp; in the
            # block's dtype (that of its convolutions' output).
            t = ops.downsample2d(t.astype(x.dtype), filt)
            t = ops.EqualConv2d(self.width(res - 2), 1, use_bias=False, name=f"b{r}_skip")(t)
            x = (x + t) * (1.0 / math.sqrt(2.0))
        if self.mbstd_group_size > 1:
            x = ops.minibatch_std(x, self.mbstd_group_size, self.mbstd_num_features)
        x = ops.EqualConv2d(self.width(1), 3, act="lrelu", clamp=clamp, name="b4_conv")(x)
        x = x.reshape(x.shape[0], -1)
        x = ops.EqualDense(self.width(0), act="lrelu", name="b4_fc")(x)
        if self.cmap_dim <= 0:
            return ops.EqualDense(1, name="b4_out")(x)[:, 0]
        if labels is None:
            raise ValueError("a conditional D (cmap_dim > 0) needs the labels of the images.")
        x = ops.EqualDense(self.cmap_dim, name="b4_out")(x)
        cmap = self.param("cmap", nn.initializers.normal(1.0), (self.num_classes, self.cmap_dim))
        return jnp.sum(x * cmap[labels], axis=1) / math.sqrt(self.cmap_dim)
