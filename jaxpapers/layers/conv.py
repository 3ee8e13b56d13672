"""A drop-in for ``lax.conv_general_dilated`` whose kernel gradient is a sum of matmuls.

XLA:CPU lowers the kernel gradient of a convolution (the "backward-filter" conv) to a
convolution whose window is the whole activation, with the batch in the feature position; its
generic path runs it several times slower than the forward conv of the same FLOPs, and it is most
of the gap between a PreActResNet train step in XLA:CPU and in PyTorch (benchmarks/README.md). The
same gradient is, for every kernel tap (i, j), one matmul of the shifted input with the output
gradient, dW[i, j] = Σ_{b,h,w} x_pad[b, s·h + i, s·w + j, :]ᵀ · g[b, h, w, :], and XLA's matmul
is on par with PyTorch's. ``conv_general_dilated`` keeps the forward convolution and XLA's input
gradient and computes the kernel gradient that way (a ``jax.custom_vjp``); results equal
``lax.conv_general_dilated`` to float32 rounding (only the summation order differs).

Covers NHWC inputs with HWIO kernels, explicit or 'SAME'/'VALID' padding, no dilation and one
feature group (what ``flax.linen.Conv`` passes for a plain 2-D conv); anything else falls back
to ``lax.conv_general_dilated``. Reverse mode only: forward-mode differentiation (``jax.jvp``)
of a ``custom_vjp`` is not supported by JAX, so models that need it keep the default conv.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = lax.ConvDimensionNumbers(
    lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)
)


def _conv(x, w, strides, padding):
    return lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_mm_grad(x, w, strides, padding):
    return _conv(x, w, strides, padding)


def _fwd(x, w, strides, padding):
    return _conv(x, w, strides, padding), (x, w)


def _bwd(strides, padding, res, g):
    x, w = res
    (dx,) = jax.vjp(lambda a: _conv(a, w, strides, padding), x)[1](g)
    kh, kw, cin, cout = w.shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    ho, wo = g.shape[1], g.shape[2]
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    g2 = g.reshape(-1, cout)
    taps = []
    for i in range(kh):
        for j in range(kw):
            t = xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
            # (cin, N) · (N, cout) with N = B·Ho·Wo contracted: a plain GEMM on XLA:CPU.
            taps.append(lax.dot_general(t.reshape(-1, cin), g2, (((0,), (0,)), ((), ()))))
    dw = jnp.stack(taps).reshape(kh, kw, cin, cout).astype(w.dtype)
    return dx, dw


_conv_mm_grad.defvjp(_fwd, _bwd)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """``lax.conv_general_dilated`` with the kernel gradient as matmuls (see the module doc).

    Same signature; pass it as ``flax.linen.Conv(..., conv_general_dilated=conv_general_dilated)``.
    """
    plain = (
        lhs.ndim == 4
        and dimension_numbers in (_NHWC, ("NHWC", "HWIO", "NHWC"))
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and batch_group_count == 1
        and precision is None
        and preferred_element_type is None
    )
    if plain:
        strides = tuple(int(s) for s in window_strides)
        if isinstance(padding, str):
            padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
        padding = tuple((int(lo), int(hi)) for lo, hi in padding)
        plain = all(lo >= 0 and hi >= 0 for lo, hi in padding)
    if not plain:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    return _conv_mm_grad(lhs, rhs, strides, padding)
