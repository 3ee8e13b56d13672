"""Spectral normalisation (Miyato et al. 2018) with persistent power-iteration state.

Follows BigGAN-PyTorch's ``layers.SN`` (ajbrock/BigGAN-PyTorch ``layers.py``): the weight is
viewed as a matrix ``W`` of shape ``[out, fan_in]``; a persistent left singular vector estimate
``u`` (length ``out``, initialised ``N(0, 1)``, not normalised) is refined by power iteration
``v = normalize(u W)``, ``u = normalize(v W^T)`` without gradient, and the layer uses
``W / sigma`` with ``sigma = v W^T u`` differentiable w.r.t. ``W`` only. ``u`` lives in the
Flax variable collection ``'spectral'`` (one ``u`` per layer) and is written back only when
``update=True`` (training mode) and the collection is mutable; the estimate ``sigma`` is also
stored there (``sv``, like the official ``sv0`` buffer) for logging.

Layout: Flax kernels are ``[..., fan_in, out]`` (Dense ``[in, out]``, Conv ``[kh, kw, in, out]``)
and are reshaped to ``[fan_in_total, out]`` and transposed, which gives the same singular values
as PyTorch's ``weight.view(out, -1)`` (the column order of ``W`` does not change them). Embedding
tables ``[num, features]`` are treated like PyTorch's ``SNEmbedding``: ``W = table`` (``u`` has
length ``num``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers import precision

COLLECTION = "spectral"
Initializer = Callable[..., jax.Array]


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    """``F.normalize``: x / max(||x||, eps) along the last axis."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def power_iteration(
    w_mat: jax.Array, u: jax.Array, eps: float = 1e-12, num_iters: int = 1
) -> tuple[jax.Array, jax.Array]:
    """``num_iters`` power iterations on ``w_mat`` [out, in] from ``u`` [out].

    Returns ``(sigma, u_new)``; ``u``/``v`` carry no gradient, ``sigma = v W^T u`` does (w.r.t.
    ``w_mat``), as in BigGAN-PyTorch where the iteration runs under ``torch.no_grad``.
    """
    w_ng = jax.lax.stop_gradient(w_mat)
    v = None
    for _ in range(max(1, num_iters)):
        v = _normalize(u @ w_ng, eps)
        u = _normalize(v @ w_ng.T, eps)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    sigma = jnp.dot(v @ w_mat.T, u)
    return sigma, u


class _SNMixin:
    """Shared SN logic: declares ``u``/``sv`` in 'spectral' and returns ``W / sigma``."""

    def _sn(self, w_mat_fn: Callable[[jax.Array], jax.Array], weight: jax.Array, update: bool):
        w_mat = w_mat_fn(weight)
        out = w_mat.shape[0]
        u_var = self.variable(
            COLLECTION, "u", lambda: jax.random.normal(self.make_rng("params"), (out,), jnp.float32)
        )
        sv_var = self.variable(COLLECTION, "sv", lambda: jnp.ones((), jnp.float32))
        sigma, u_new = power_iteration(
            w_mat.astype(jnp.float32), u_var.value, self.eps, self.num_iters
        )
        if update and not self.is_initializing() and self.is_mutable_collection(COLLECTION):
            u_var.value = u_new
            sv_var.value = jax.lax.stop_gradient(sigma)
        return weight / sigma.astype(weight.dtype)


def _dense_mat(kernel: jax.Array) -> jax.Array:
    return kernel.reshape(-1, kernel.shape[-1]).T


class SNDense(nn.Module, _SNMixin):
    """Spectrally normalised ``nn.Dense`` (BigGAN-PyTorch ``SNLinear``)."""

    features: int
    use_bias: bool = True
    num_iters: int = 1
    eps: float = 1e-12
    kernel_init: Initializer = nn.initializers.orthogonal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, update: bool = False) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        w = self._sn(_dense_mat, kernel, update)
        y = x @ w.astype(x.dtype)
        if self.use_bias:
            b = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = precision.add_bias(y, b)  # bias gradient summed in float32
        return y


class SNConv(nn.Module, _SNMixin):
    """Spectrally normalised stride-1 'SAME' convolution (BigGAN-PyTorch ``SNConv2d``), NHWC."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    use_bias: bool = True
    num_iters: int = 1
    eps: float = 1e-12
    kernel_init: Initializer = nn.initializers.orthogonal(column_axis=-1)
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, update: bool = False) -> jax.Array:
        kh, kw = self.kernel_size
        shape = (kh, kw, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        w = self._sn(_dense_mat, kernel, update)
        y = jax.lax.conv_general_dilated(
            x, w.astype(x.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        if self.use_bias:
            b = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = precision.add_bias(y, b)  # bias gradient summed in float32
        return y


class SNEmbed(nn.Module, _SNMixin):
    """Spectrally normalised embedding table (BigGAN-PyTorch ``SNEmbedding``)."""

    num_embeddings: int
    features: int
    num_iters: int = 1
    eps: float = 1e-12
    embedding_init: Initializer = nn.initializers.orthogonal()

    @nn.compact
    def __call__(self, ids: jax.Array, update: bool = False) -> jax.Array:
        table = self.param(
            "embedding", self.embedding_init, (self.num_embeddings, self.features), jnp.float32
        )
        w = self._sn(lambda t: t, table, update)
        return jnp.take(w, ids, axis=0)


def spectral_state_summary(variables: Any) -> dict[str, float]:
    """Mean stored sigma over all SN layers of a 'spectral' collection (for logging)."""
    svs = [x for p, x in jax.tree_util.tree_leaves_with_path(variables) if p[-1].key == "sv"]
    if not svs:
        return {}
    return {"sn_sigma_mean": jnp.mean(jnp.stack(svs))}
