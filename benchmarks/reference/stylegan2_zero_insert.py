"""The zero-insertion / subsample forms of StyleGAN2's resampling convs (what
``jaxpapers.layers.stylegan2_ops`` computed before its polyphase forms), for
benchmarks/stylegan2_resample.py. Never imported by the package."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpapers.layers import stylegan2_ops as ops

_DN = ("NHWC", "HWIO", "NHWC")


def conv_up(x, w, f):
    """Stride-2 transposed conv by explicit zero insertion + plain conv, then the FIR blur."""
    kh = w.shape[0]
    cfg = [(0, 0, 0), (kh - 1, kh - 1, 1), (kh - 1, kh - 1, 1), (0, 0, 0)]
    y = lax.conv_general_dilated(
        lax.pad(x, jnp.zeros((), x.dtype), cfg), w, (1, 1), "VALID", dimension_numbers=_DN
    )
    p = (f.shape[0] - 2) - (kh - 1)
    p0, p1 = (p + 1) // 2 + 1, p // 2 + 1
    return ops.upfirdn2d(y, f, padding=(p0, p1, p0, p1), gain=4.0)


def conv_down(x, w, f):
    """FIR blur, then a stride-1 conv and subsampling."""
    kh = w.shape[0]
    p = (f.shape[0] - 2) + (kh - 1)
    p0, p1 = (p + 1) // 2, p // 2
    x = ops.upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DN)[:, ::2, ::2]


def modulated_conv_up(x, w, s, f):
    y = conv_up(x * s[:, None, None, :], w, f)
    d = lax.rsqrt(jnp.square(s) @ jnp.sum(jnp.square(w), axis=(0, 1)) + 1e-8)
    return y * d[:, None, None, :]


def upsample2d(x, f: np.ndarray):
    """Zero insertion as interior padding, then the FIR filter on the 2x grid."""
    fw = f.shape[0]
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2
    cfg = [(0, 0, 0), (p0, p1 + 1, 1), (p0, p1 + 1, 1), (0, 0, 0)]
    x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    return ops.upfirdn2d(x, f, gain=4.0)
