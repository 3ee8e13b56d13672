"""RoIAlign for XLA: batched bilinear sampling, no host loops.

Follows the detectron-era RoIAlign that TRACE uses (``ROIAlign`` from maskrcnn-benchmark,
aligned=False, ``sampling_ratio`` fixed, 2 in TRACE): the box is scaled by ``spatial_scale``,
its size is clamped to >= 1 cell, each of the out×out bins averages sampling_ratio² bilinear
samples; samples beyond [-1, size] read 0, coordinates below 0 clamp to 0 and the last row /
column is replicated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _bilinear(feat: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
    """Samples feat (H, W, C) at float coords y, x (any equal shapes) -> (..., C)."""
    h, w = feat.shape[0], feat.shape[1]
    outside = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
    y, x = jnp.maximum(y, 0.0), jnp.maximum(x, 0.0)
    y0, x0 = jnp.floor(y).astype(jnp.int32), jnp.floor(x).astype(jnp.int32)
    y_last, x_last = y0 >= h - 1, x0 >= w - 1
    y0, x0 = jnp.where(y_last, h - 1, y0), jnp.where(x_last, w - 1, x0)
    y1, x1 = jnp.where(y_last, h - 1, y0 + 1), jnp.where(x_last, w - 1, x0 + 1)
    y, x = jnp.where(y_last, y0.astype(y.dtype), y), jnp.where(x_last, x0.astype(x.dtype), x)
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    v = (
        (hy * hx)[..., None] * feat[y0, x0]
        + (hy * lx)[..., None] * feat[y0, x1]
        + (ly * hx)[..., None] * feat[y1, x0]
        + (ly * lx)[..., None] * feat[y1, x1]
    )
    return jnp.where(outside[..., None], 0.0, v)


def roi_align_single(
    feat: jax.Array, boxes: jax.Array, out_size: int, spatial_scale: float, sampling_ratio: int = 2
) -> jax.Array:
    """RoIAlign of boxes (R, 4) (x1, y1, x2, y2, image coords) on feat (H, W, C) -> (R, P, P, C)."""
    x1, y1, x2, y2 = (boxes[:, i] * spatial_scale for i in range(4))
    bw = jnp.maximum(x2 - x1, 1.0) / out_size
    bh = jnp.maximum(y2 - y1, 1.0) / out_size
    grid = (
        jnp.arange(out_size)[:, None] + (jnp.arange(sampling_ratio)[None, :] + 0.5) / sampling_ratio
    )
    grid = grid.reshape(-1)  # (P * s,) offsets in bins
    ys = y1[:, None] + grid[None, :] * bh[:, None]  # (R, P*s)
    xs = x1[:, None] + grid[None, :] * bw[:, None]
    r, n = ys.shape
    yy = jnp.broadcast_to(ys[:, :, None], (r, n, n))
    xx = jnp.broadcast_to(xs[:, None, :], (r, n, n))
    v = _bilinear(feat, yy, xx)  # (R, P*s, P*s, C)
    c = feat.shape[-1]
    v = v.reshape(r, out_size, sampling_ratio, out_size, sampling_ratio, c)
    return v.mean(axis=(2, 4))


def roi_align(
    feat: jax.Array, boxes: jax.Array, out_size: int, spatial_scale: float, sampling_ratio: int = 2
) -> jax.Array:
    """Batched RoIAlign: feat (B, H, W, C), boxes (B, R, 4) -> (B, R, P, P, C) in feat's dtype.

    Sampling and interpolation run in float32 whatever feat's dtype (mixed precision): the
    gradient of the map is a scatter-add over every box's samples, which sums in the gathered
    array's dtype. In float32 the casts are no-ops.
    """
    if feat.ndim != 4 or boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(
            f"Expected feat (B,H,W,C), boxes (B,R,4); got {feat.shape}, {boxes.shape}."
        )
    out = jax.vmap(lambda f, b: roi_align_single(f, b, out_size, spatial_scale, sampling_ratio))(
        feat.astype(jnp.float32), boxes.astype(jnp.float32)
    )
    return out.astype(feat.dtype)
