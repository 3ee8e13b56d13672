"""Attention baselines StRA is compared to, in their papers' standard forms.

* SE (Hu et al. 2018): GAP -> FC C/r -> ReLU -> FC C -> sigmoid channel gate, r = 16, applied to
  the bottleneck's residual branch before the addition.
* CBAM (Woo et al. 2018): channel gate from a shared MLP on avg- and max-pooled features (r = 16),
  then a spatial gate from a 7x7 conv on the channel-wise [mean, max] maps; same position as SE.
* Non-local (Wang et al. 2018), embedded-Gaussian form with inner width C/2, output 1x1 conv + BN
  whose scale starts at 0 (so the block starts as identity), applied after the bottleneck.

The StRA paper's exact baseline settings are not in the official repository
(UNVERIFIED); these are the original papers' defaults.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.methods.stra.attention import conv_init


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation channel gate (reduction ``ratio``)."""

    ratio: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2))
        s = nn.relu(nn.Dense(max(c // self.ratio, 1), name="fc1")(s))
        s = jax.nn.sigmoid(nn.Dense(c, name="fc2")(s))
        return x * s[:, None, None, :]


class CBAM(nn.Module):
    """Convolutional block attention module: channel gate then 7x7 spatial gate."""

    ratio: int = 16
    spatial_kernel: int = 7

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        fc1 = nn.Dense(max(c // self.ratio, 1), name="fc1")
        fc2 = nn.Dense(c, name="fc2")
        mlp = lambda v: fc2(nn.relu(fc1(v)))  # shared between the two pooled descriptors
        gate = jax.nn.sigmoid(mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2))))
        x = x * gate[:, None, None, :]
        maps = jnp.concatenate([jnp.mean(x, -1, keepdims=True), jnp.max(x, -1, keepdims=True)], -1)
        p = self.spatial_kernel // 2
        att = nn.Conv(
            1,
            (self.spatial_kernel,) * 2,
            padding=((p, p), (p, p)),
            use_bias=False,
            kernel_init=conv_init,
            name="spatial_conv",
        )(maps)
        return x * jax.nn.sigmoid(att)


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block with a zero-initialised output BN (identity at init)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b, h, w, c = x.shape
        inner = max(c // 2, 1)
        proj = lambda name: nn.Conv(inner, (1, 1), kernel_init=conv_init, name=name)(x).reshape(
            b, h * w, inner
        )
        theta, phi, g = proj("theta"), proj("phi"), proj("g")
        att = jax.nn.softmax(jnp.einsum("bpc,bqc->bpq", theta, phi), axis=-1)
        y = jnp.einsum("bpq,bqc->bpc", att, g).reshape(b, h, w, inner)
        y = nn.Conv(c, (1, 1), kernel_init=conv_init, name="w")(y)
        y = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            scale_init=nn.initializers.zeros,
            name="w_bn",
        )(y)
        return x + y
