"""BigGAN generator and projection discriminator in Flax Linen (NHWC).

Follows ajbrock/BigGAN-PyTorch (``BigGAN.py``, ``layers.py``); read, not copied. Structure:

* ``G``: z split into ``num_blocks + 1`` chunks (hierarchical latent); chunk 0 -> SN-linear ->
  ``in[0] x 4 x 4``; each chunk ``i > 0`` is concatenated with the shared class embedding and
  conditions block ``i - 1`` through class-conditional BN (gain ``1 + W_g c``, bias ``W_b c``,
  bias-free SN-linears). Residual up-blocks: CBN -> ReLU -> 2x nearest -> conv3 -> CBN -> ReLU ->
  conv3, shortcut 2x nearest -> conv1. Self-attention after the block at the configured
  resolution. Output: BN (learned gain/bias, eps always 1e-5 as officially) -> ReLU -> SN conv3
  -> tanh.
  Without ``hier`` (BigGAN-PyTorch's CIFAR setting) z feeds only the linear layer and each CBN
  has its own class-embedding tables for gain and bias.
* ``D``: residual down-blocks (pre-activation except the first; wide: hidden = out; avg-pool
  2x2), attention at the configured resolution, ReLU, global **sum** pooling, SN-linear -> 1
  plus the projection term ``<embed_SN(y), h>``.
Spectral norm state lives in the ``'spectral'`` collection, BN running stats in
``'batch_stats'`` (both float32 under mixed precision). ``train=True`` updates both
(BigGAN-PyTorch's ``module.training``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers.spectral_norm import SNConv, SNDense, SNEmbed
from jaxpapers.lib import dgl

OUTPUT_BN_EPS = 1e-5  # BigGAN-PyTorch ``layers.bn`` default; the output BN is not given BN_eps.
# Mixed precision (``model.dtype``, ``layers.precision``): parameters that stay float32 in the
# bfloat16 step. D's output layer and class projection compute the logits in float32; in G and in
# the D trunk every conv/linear/embedding runs in bfloat16, while BN statistics, spectral-norm
# power iterations (on the bfloat16-rounded weight) and the attention softmax are float32.
G_F32_PARAMS: tuple[str, ...] = ()
D_F32_PARAMS = (r"^(linear|embed)/",)


def make_init(name: str):
    """BigGAN-PyTorch ``init_weights``: 'ortho' | 'N02' | 'glorot' (all conv/linear/embedding)."""
    if name == "ortho":
        return nn.initializers.orthogonal(column_axis=-1)
    if name == "N02":
        return nn.initializers.normal(0.02)
    if name in ("glorot", "xavier"):
        return nn.initializers.xavier_uniform()
    raise ValueError(f"Unknown init {name!r}; expected 'ortho', 'N02' or 'glorot'.")


def attention_set(spec: str) -> set[int]:
    """'64' or '32_64' -> {64} / {32, 64}; '0' or '' -> no attention (BigGAN-PyTorch ``G_attn``)."""
    return {int(s) for s in str(spec).split("_") if s and int(s) > 0}


def g_arch(resolution: int, ch: int) -> tuple[list[int], list[int], list[int]]:
    """(in channels, out channels, output resolution) per G block (BigGAN-PyTorch ``G_arch``)."""
    if resolution == 128:
        mi, mo = [16, 16, 8, 4, 2], [16, 8, 4, 2, 1]
    elif resolution == 64:
        mi, mo = [16, 16, 8, 4], [16, 8, 4, 2]
    elif resolution == 32:
        mi, mo = [4, 4, 4], [4, 4, 4]
    else:
        raise ValueError(f"BigGAN G supports resolutions 32, 64, 128; got {resolution}.")
    res = [8 * 2**i for i in range(len(mi))]
    return [ch * m for m in mi], [ch * m for m in mo], res


def d_arch(resolution: int, ch: int) -> tuple[list[int], list[int], list[bool], list[int]]:
    """(in, out, downsample, output resolution) per D block (BigGAN-PyTorch ``D_arch``)."""
    if resolution == 128:
        mo, down = [1, 2, 4, 8, 16, 16], [True] * 5 + [False]
    elif resolution == 64:
        mo, down = [1, 2, 4, 8, 16], [True] * 4 + [False]
    elif resolution == 32:
        mo, down = [4, 4, 4, 4], [True, True, False, False]
    else:
        raise ValueError(f"BigGAN D supports resolutions 32, 64, 128; got {resolution}.")
    outs = [ch * m for m in mo]
    res, r = [], resolution
    for d in down:
        r = r // 2 if d else r
        res.append(r)
    if resolution == 32:
        res = [16] * 4  # BigGAN-PyTorch lists 16 for all four 32x32 D blocks (attention lookup).
    return [-1] + outs[:-1], outs, down, res


class BatchNorm(nn.Module):
    """Batch norm with PyTorch semantics (momentum 0.1, unbiased running var), optional affine.

    Batch statistics are over the global batch (all devices), i.e. synchronised BN.
    """

    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        xf = x.astype(jnp.float32)
        if train:
            mean = jnp.mean(xf, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                m = self.momentum
                ra_mean.value = (1 - m) * ra_mean.value + m * mean
                ra_var.value = (1 - m) * ra_var.value + m * var * n / max(n - 1, 1)
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.param("gain", nn.initializers.ones, (c,)) + self.param(
                "bias", nn.initializers.zeros, (c,)
            )
        return y.astype(x.dtype)


class CondBN(nn.Module):
    """Class-conditional BN (``layers.ccbn``): BN without affine, ``* (1 + gain(c)) + bias(c)``.

    ``c`` is a float vector ([shared embedding, z chunk], hierarchical G: bias-free SN-linears)
    or int labels (non-hierarchical G: per-layer embedding tables, BigGAN-PyTorch CIFAR).
    """

    num_classes: int
    sn_eps: float = 1e-12
    bn_eps: float = 1e-5
    init_name: str = "ortho"

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array, train: bool) -> jax.Array:
        ch = x.shape[-1]
        if jnp.issubdtype(c.dtype, jnp.integer):
            init = make_init(self.init_name)
            emb = lambda name: nn.Embed(self.num_classes, ch, embedding_init=init, name=name)(c)
            gain, bias = 1.0 + emb("gain"), emb("bias")
        else:
            lin = lambda name: SNDense(
                ch,
                use_bias=False,
                eps=self.sn_eps,
                kernel_init=make_init(self.init_name),
                name=name,
            )(c, train)
            gain, bias = 1.0 + lin("gain"), lin("bias")
        # The affine step in float32 (no-op casts in float32): the per-sample gain and bias
        # gradients sum over all positions, which bfloat16 would round away.
        h = BatchNorm(eps=self.bn_eps, name="bn")(x, train).astype(jnp.float32)
        f32 = lambda a: a[:, None, None, :].astype(jnp.float32)
        return (h * f32(gain) + f32(bias)).astype(x.dtype)


def upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x (``F.interpolate(scale_factor=2)``)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avgpool2(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def maxpool2(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Attention(nn.Module):
    """SAGAN self-attention (``layers.Attention``): theta C/8, phi C/8 and g C/2 (both 2x2
    max-pooled), softmax over the pooled positions, 1x1 output conv, residual with gamma (init 0).
    """

    sn_eps: float = 1e-12
    init_name: str = "ortho"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        n, h, w, ch = x.shape
        conv = lambda f, name: SNConv(
            f,
            (1, 1),
            use_bias=False,
            eps=self.sn_eps,
            kernel_init=make_init(self.init_name),
            name=name,
        )
        theta = conv(ch // 8, "theta")(x, train).reshape(n, h * w, ch // 8)
        phi = maxpool2(conv(ch // 8, "phi")(x, train)).reshape(n, h * w // 4, ch // 8)
        g = maxpool2(conv(ch // 2, "g")(x, train)).reshape(n, h * w // 4, ch // 2)
        # Softmax in float32 under mixed precision (a no-op cast in float32).
        logits = jnp.einsum("nqc,nkc->nqk", theta, phi).astype(jnp.float32)
        beta = jax.nn.softmax(logits, axis=-1).astype(g.dtype)
        o = jnp.einsum("nqk,nkc->nqc", beta, g).reshape(n, h, w, ch // 2)
        o = conv(ch, "o")(o, train)
        gamma = self.param("gamma", nn.initializers.zeros, ())
        # gamma's gradient sums over every element of o: in float32 (no-op casts in float32).
        return x + (gamma.astype(jnp.float32) * o.astype(jnp.float32)).astype(x.dtype)


class GBlock(nn.Module):
    out_ch: int
    num_classes: int
    sn_eps: float
    bn_eps: float
    init_name: str

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array, train: bool) -> jax.Array:
        conv = lambda k, name: SNConv(
            self.out_ch, (k, k), eps=self.sn_eps, kernel_init=make_init(self.init_name), name=name
        )
        cbn = lambda name: CondBN(
            self.num_classes, self.sn_eps, self.bn_eps, self.init_name, name=name
        )
        h = nn.relu(cbn("bn1")(x, c, train))
        h = conv(3, "conv1")(upsample2(h), train)
        h = nn.relu(cbn("bn2")(h, c, train))
        h = conv(3, "conv2")(h, train)
        return h + conv(1, "conv_sc")(upsample2(x), train)  # learnable_sc: always upsampling


class Generator(nn.Module):
    """BigGAN G. ``__call__(z, y, train)`` -> images in [-1, 1], NHWC."""

    resolution: int = 128
    ch: int = 96
    dim_z: int = 120
    shared_dim: int = 128
    hier: bool = True
    num_classes: int = 1000
    out_channels: int = 3
    attention: str = "64"
    bottom_width: int = 4
    sn_eps: float = 1e-6
    bn_eps: float = 1e-5
    init_name: str = "ortho"

    def num_slots(self) -> int:
        return len(g_arch(self.resolution, self.ch)[0]) + 1 if self.hier else 1

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array, train: bool = False) -> jax.Array:
        ins, outs, res = g_arch(self.resolution, self.ch)
        if z.shape[-1] != self.dim_z:
            raise ValueError(f"z has {z.shape[-1]} dims, G expects dim_z={self.dim_z}.")
        init = make_init(self.init_name)
        if self.hier:
            if self.dim_z % self.num_slots():
                raise ValueError(
                    f"dim_z={self.dim_z} must be divisible by the {self.num_slots()} latent "
                    "chunks (blocks + 1) of the hierarchical G."
                )
            shared = nn.Embed(
                self.num_classes, self.shared_dim, embedding_init=init, name="shared"
            )(y)
            zs = jnp.split(z, self.num_slots(), axis=-1)
            z0, conds = zs[0], [jnp.concatenate([shared, zc], -1) for zc in zs[1:]]
        else:
            z0, conds = z, [y] * len(ins)
        bw = self.bottom_width
        h = SNDense(ins[0] * bw * bw, eps=self.sn_eps, kernel_init=init, name="linear")(z0, train)
        # PyTorch views the linear output as (N, C, bw, bw); keep that order for checkpoints.
        h = h.reshape(-1, ins[0], bw, bw).transpose(0, 2, 3, 1)
        attn = attention_set(self.attention)
        for i, (o, r) in enumerate(zip(outs, res, strict=True)):
            h = GBlock(
                o, self.num_classes, self.sn_eps, self.bn_eps, self.init_name, name=f"block{i}"
            )(h, conds[i], train)
            if r in attn:
                h = Attention(self.sn_eps, self.init_name, name=f"attn{i}")(h, train)
        # BigGAN-PyTorch builds the output BN as ``layers.bn(...)`` without its BN_eps argument,
        # so it always runs at the default eps 1e-5, whatever ``bn_eps`` the CBNs take.
        h = nn.relu(BatchNorm(eps=OUTPUT_BN_EPS, affine=True, name="output_bn")(h, train))
        h = SNConv(
            self.out_channels, (3, 3), eps=self.sn_eps, kernel_init=init, name="output_conv"
        )(h, train)
        return jnp.tanh(h)


class DBlock(nn.Module):
    out_ch: int
    preactivation: bool
    downsample: bool
    sn_eps: float
    init_name: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = lambda k, name: SNConv(
            self.out_ch, (k, k), eps=self.sn_eps, kernel_init=make_init(self.init_name), name=name
        )
        h = nn.relu(x) if self.preactivation else x
        h = conv(3, "conv1")(h, train)
        h = conv(3, "conv2")(nn.relu(h), train)
        if self.downsample:
            h = avgpool2(h)
        sc = x
        if x.shape[-1] != self.out_ch or self.downsample:  # learnable shortcut
            if self.preactivation:
                sc = conv(1, "conv_sc")(sc, train)
                sc = avgpool2(sc) if self.downsample else sc
            else:
                sc = avgpool2(sc) if self.downsample else sc
                sc = conv(1, "conv_sc")(sc, train)
        return h + sc


class Discriminator(nn.Module):
    """Projection D. ``__call__(x, y, train, parts=False)`` -> logits (N,), or
    (total, unconditional term, projection term) with ``parts=True``."""

    resolution: int = 128
    ch: int = 96
    num_classes: int = 1000
    attention: str = "64"
    sn_eps: float = 1e-6
    init_name: str = "ortho"

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array, train: bool = False, parts: bool = False):
        if x.ndim != 4 or x.shape[1] != self.resolution or x.shape[2] != self.resolution:
            raise ValueError(
                f"D expects (N, {self.resolution}, {self.resolution}, C); got {x.shape}."
            )
        _, outs, down, res = d_arch(self.resolution, self.ch)
        attn = attention_set(self.attention)
        h = x
        for i, (o, dn, r) in enumerate(zip(outs, down, res, strict=True)):
            h = DBlock(o, i > 0, dn, self.sn_eps, self.init_name, name=f"block{i}")(h, train)
            if r in attn:
                h = Attention(self.sn_eps, self.init_name, name=f"attn{i}")(h, train)
        # Global sum pooling; the pooled features, the linear output and the projection are
        # float32 under mixed precision (their parameters are D_F32_PARAMS).
        h = jnp.sum(nn.relu(h.astype(jnp.float32)), axis=(1, 2))
        self.sow("intermediates", "features", h)
        init = make_init(self.init_name)
        out = SNDense(1, eps=self.sn_eps, kernel_init=init, name="linear")(h, train)[:, 0]
        e = SNEmbed(self.num_classes, outs[-1], eps=self.sn_eps, embedding_init=init, name="embed")(
            y, train
        )
        proj = jnp.sum(e * h, axis=-1)
        return (out + proj, out, proj) if parts else out + proj


def make_nets(config, role: str) -> tuple[Generator, Discriminator]:
    """Teacher or student networks (student widths = teacher widths // divisors)."""
    dgl.check_role(role)
    m = config.model
    gdiv = 1 if role == "teacher" else int(config.student.g_divisor)
    ddiv = 1 if role == "teacher" else int(config.student.d_divisor)
    if m.g_ch % gdiv or m.d_ch % ddiv:
        raise ValueError(f"g_ch={m.g_ch}/d_ch={m.d_ch} not divisible by the student divisors.")
    g = Generator(
        m.resolution,
        m.g_ch // gdiv,
        m.dim_z,
        m.shared_dim,
        m.hier,
        m.num_classes,
        m.img_channels,
        m.g_attn,
        4,
        m.sn_eps,
        m.bn_eps,
        m.g_init,
    )
    d = Discriminator(m.resolution, m.d_ch // ddiv, m.num_classes, m.d_attn, m.sn_eps, m.d_init)
    return g, d
