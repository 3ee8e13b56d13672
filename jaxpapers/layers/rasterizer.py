"""A differentiable triangle rasteriser in pure JAX (z-buffer, triangle ids, barycentrics).

Used by the 3D face-video core (UniFaceGAN's guidance maps and barycentric temporal loss,
FaceAnime's rendered 3D dynamics). Conventions (binding, see notes/FACE3D_API.md):

* vertices ``[V, 3]`` in PIXEL units of the output image: x to the right, y down, z depth with
  SMALLER z = CLOSER to the camera; orthographic projection, so pixel ``(i, j)`` (row, column)
  samples the point ``(x, y) = (j + 0.5, i + 0.5)``;
* triangles of either winding are drawn (no back-face culling); a pixel centre is covered when
  all three barycentrics are >= 0 (edges inclusive, up to 1e-6 for float rounding);
  degenerate triangles (|area| < 1e-8 px^2) cover nothing;
* the z-buffer keeps the nearest covering triangle; ties keep the lowest triangle index.

Visibility is a tiled test (each 8x8 block of pixels tests only the triangles whose bounding
boxes meet it), with an exact dense all-pixels x all-triangles fallback chunked over triangles
with ``lax.scan`` (memory O(H*W*chunk)) when a block meets too many. It is deliberately not a soft
rasteriser: the triangle id (the visibility decision) carries no gradient, but the barycentric
coordinates are recomputed from the vertices of the winning triangle outside the scan, so they
and everything interpolated with them (attributes, depth) are differentiable w.r.t. vertex
positions and attributes, as in nvdiffrast's ``rasterize``/``interpolate`` split.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

_AREA_EPS = 1e-8
# Edges are inclusive up to a few float32 ulps of the barycentrics, so that a pixel centre lying
# exactly on a vertex or an edge is covered whatever the rounding of the compiled program.
_EDGE_TOL = 1e-6


@flax.struct.dataclass
class Raster:
    """Per-pixel rasterisation result; leading batch dims ``...`` optional.

    Attributes:
      tri_id: int32 ``[..., H, W]`` index of the visible triangle, -1 for background.
      bary: float32 ``[..., H, W, 3]`` barycentric coordinates (zeros on background).
      depth: float32 ``[..., H, W]`` interpolated z, +inf on background.
      mask: float32 ``[..., H, W, 1]`` 1 where a triangle covers the pixel.
    """

    tri_id: jax.Array
    bary: jax.Array
    depth: jax.Array
    mask: jax.Array


def _check(verts: jax.Array, faces: jax.Array, height: int, width: int) -> None:
    if verts.ndim != 2 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be [V, 3] (pixel x, y, depth z), got {verts.shape}.")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be int [F, 3], got {faces.shape}.")
    if not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be an integer array, got dtype {faces.dtype}.")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}.")


def _pixel_centres(height: int, width: int) -> tuple[jax.Array, jax.Array]:
    ys = jnp.arange(height, dtype=jnp.float32) + 0.5
    xs = jnp.arange(width, dtype=jnp.float32) + 0.5
    py, px = jnp.meshgrid(ys, xs, indexing="ij")
    return px, py


def _coefficients(tris: jax.Array) -> tuple[jax.Array, ...]:
    """Per-triangle plane coefficients of ``tris`` [..., 3, 3] for the coverage test.

    With ``d = p - v0``, ``b1 = a11 dx + a12 dy``, ``b2 = a21 dx + a22 dy`` and ``b0 = 1 - b1 - b2``
    are the barycentrics (signed-area ratios, hence winding-independent) and
    ``z = z0 + b1 dz1 + b2 dz2``. Degenerate triangles get ``ok = False``.
    """
    x0, y0, z0 = tris[..., 0, 0], tris[..., 0, 1], tris[..., 0, 2]
    d1x, d1y = tris[..., 1, 0] - x0, tris[..., 1, 1] - y0
    d2x, d2y = tris[..., 2, 0] - x0, tris[..., 2, 1] - y0
    area = d1x * d2y - d2x * d1y  # twice the signed area
    ok = jnp.abs(area) >= _AREA_EPS
    inv = jnp.where(ok, 1.0, 0.0) / jnp.where(ok, area, 1.0)
    return (
        x0,
        y0,
        d2y * inv,
        -d2x * inv,
        -d1y * inv,
        d1x * inv,
        z0,
        tris[..., 1, 2] - z0,
        tris[..., 2, 2] - z0,
        ok,
    )


def _barycentric(coef: tuple[jax.Array, ...], px: jax.Array, py: jax.Array) -> jax.Array:
    """Barycentrics ``[..., 3]`` of points (px, py) (broadcast against ``coef``)."""
    x0, y0, a11, a12, a21, a22 = coef[:6]
    dx, dy = px - x0, py - y0
    b1 = a11 * dx + a12 * dy
    b2 = a21 * dx + a22 * dy
    return jnp.stack([1.0 - b1 - b2, b1, b2], axis=-1)


def _depth_or_inf(coef: tuple[jax.Array, ...], px: jax.Array, py: jax.Array) -> jax.Array:
    """Interpolated z where the point is inside the triangle (edges inclusive), else +inf."""
    x0, y0, a11, a12, a21, a22, z0, dz1, dz2, ok = coef
    dx, dy = px - x0, py - y0
    b1 = a11 * dx + a12 * dy
    b2 = a21 * dx + a22 * dy
    inside = ok & (b1 >= -_EDGE_TOL) & (b2 >= -_EDGE_TOL) & (b1 + b2 <= 1.0 + _EDGE_TOL)
    return jnp.where(inside, z0 + b1 * dz1 + b2 * dz2, jnp.inf)


def _visible_dense(coef, height: int, width: int, chunk: int) -> jax.Array:
    """Nearest triangle per pixel testing every triangle (scan over chunks of triangles)."""
    num = coef[0].shape[0]
    chunk = max(1, min(int(chunk), num))
    pad = (-num) % chunk
    padded = [jnp.concatenate([c, jnp.zeros((pad,), c.dtype)]) for c in coef]  # ok=False pads
    chunks = [c.reshape(-1, chunk) for c in padded]
    px, py = _pixel_centres(height, width)

    def body(carry, xs):
        best_z, best_id = carry
        *cc, base = xs
        z = _depth_or_inf(tuple(c[:, None, None] for c in cc), px, py)  # [chunk, H, W]
        k = jnp.argmin(z, axis=0)  # first (lowest index) among equal depths
        zk = jnp.min(z, axis=0)
        better = zk < best_z  # strict: an earlier chunk wins ties
        return (
            jnp.where(better, zk, best_z),
            jnp.where(better, base + k.astype(jnp.int32), best_id),
        ), None

    init = (
        jnp.full((height, width), jnp.inf, jnp.float32),
        jnp.full((height, width), -1, jnp.int32),
    )
    bases = jnp.arange(chunks[0].shape[0], dtype=jnp.int32) * chunk
    (_, tri_id), _ = jax.lax.scan(body, init, (*chunks, bases))
    return tri_id


def _visible_tiled(tris, coef, height: int, width: int, tile: int, max_per_tile: int):
    """Nearest triangle per pixel testing, per ``tile x tile`` block, only the (at most
    ``max_per_tile``) triangles whose bounding box meets the block, in index order.

    Returns ``(tri_id [H, W], overflow)``; ``overflow`` is True when some block meets more
    triangles than ``max_per_tile`` (its result is then incomplete and must not be used).
    """
    num = tris.shape[0]
    k = min(int(max_per_tile), num)
    nty, ntx = -(-height // tile), -(-width // tile)
    lo, hi = tris[..., :2].min(axis=1), tris[..., :2].max(axis=1)  # [F, 2] bounding boxes
    ty0 = jnp.arange(nty, dtype=jnp.float32) * tile + 0.5  # first / last pixel-centre row
    tx0 = jnp.arange(ntx, dtype=jnp.float32) * tile + 0.5
    oy = (lo[None, :, 1] <= ty0[:, None] + tile - 1) & (hi[None, :, 1] >= ty0[:, None])
    ox = (lo[None, :, 0] <= tx0[:, None] + tile - 1) & (hi[None, :, 0] >= tx0[:, None])
    overlap = oy[:, None, :] & ox[None, :, :] & coef[-1][None, None, :]  # [nty, ntx, F]
    overflow = jnp.max(jnp.sum(overlap, axis=-1)) > k
    key = jnp.where(overlap, num - jnp.arange(num, dtype=jnp.int32), 0)
    vals, sel = jax.lax.top_k(key, k)  # ascending triangle index among the overlapping ones
    cc = [c[sel] for c in coef]
    cc[-1] = cc[-1] & (vals > 0)
    r = jnp.arange(tile, dtype=jnp.float32)
    py = ty0[:, None, None, None, None] + r[None, None, None, :, None]  # [nty,1,1,t,1]
    px = tx0[None, :, None, None, None] + r[None, None, None, None, :]  # [1,ntx,1,1,t]
    z = _depth_or_inf(tuple(c[..., None, None] for c in cc), px, py)  # [nty, ntx, k, t, t]
    best = jnp.argmin(z, axis=2)
    zmin = jnp.min(z, axis=2)
    ids = jnp.take_along_axis(sel[..., None, None], best[:, :, None], axis=2)[:, :, 0]
    ids = jnp.where(jnp.isfinite(zmin), ids, -1)  # [nty, ntx, t, t]
    ids = ids.transpose(0, 2, 1, 3).reshape(nty * tile, ntx * tile)
    return ids[:height, :width].astype(jnp.int32), overflow


def _finish(verts: jax.Array, faces: jax.Array, tri_id: jax.Array, height: int, width: int):
    """Differentiable barycentrics/depth of the winning triangles (gradients reach verts)."""
    px, py = _pixel_centres(height, width)
    covered = tri_id >= 0
    coef = _coefficients(verts[faces[jnp.maximum(tri_id, 0)]])  # per pixel, [H, W]
    bary = jnp.where(covered[..., None], _barycentric(coef, px, py), 0.0)
    z = jnp.stack([coef[6], coef[6] + coef[7], coef[6] + coef[8]], -1)
    depth = jnp.where(covered, jnp.sum(bary * z, axis=-1), jnp.inf)
    return Raster(
        tri_id=tri_id, bary=bary, depth=depth, mask=covered[..., None].astype(jnp.float32)
    )


def _prepare(verts, faces, height, width):
    _check(verts, faces, height, width)
    return jnp.asarray(verts, jnp.float32), jnp.asarray(faces, jnp.int32)


def rasterize(
    verts: jax.Array,
    faces: jax.Array,
    height: int,
    width: int,
    *,
    chunk: int = 256,
    tile: int = 8,
    max_per_tile: int = 128,
) -> Raster:
    """Rasterises one mesh into an ``height x width`` image (see the module docstring).

    The visibility pass is tiled: each ``tile x tile`` block tests only the triangles whose
    bounding box meets it (at most ``max_per_tile``, cost ~ H*W*max_per_tile instead of
    H*W*F). If any block meets more, a ``lax.cond`` falls back to the exact dense pass over all
    triangles (cost ~ H*W*F, memory ~ H*W*chunk), so the result never depends on these knobs.
    Under ``vmap`` the cond turns into a select that runs both passes: batch with
    ``rasterize_batch``, which keeps the branch outside the vmap.

    Args:
      verts: float ``[V, 3]`` vertex positions in pixels (x right, y down, z depth).
      faces: int ``[F, 3]`` vertex indices of the triangles.
      height: output rows (static).
      width: output columns (static).
      chunk: triangles per scan step of the dense fallback.
      tile: block side of the tiled pass (static).
      max_per_tile: triangle capacity of a block in the tiled pass (static).

    Returns:
      A ``Raster`` with ``[H, W]`` leading shape.
    """
    verts, faces = _prepare(verts, faces, height, width)
    tris = jax.lax.stop_gradient(verts)[faces]  # visibility carries no gradient
    coef = _coefficients(tris)
    ids, overflow = _visible_tiled(tris, coef, height, width, tile, max_per_tile)
    tri_id = jax.lax.cond(
        overflow, lambda c, i: _visible_dense(c, height, width, chunk), lambda c, i: i, coef, ids
    )
    return _finish(verts, faces, tri_id, height, width)


def rasterize_batch(
    verts: jax.Array,
    faces: jax.Array,
    height: int,
    width: int,
    *,
    chunk: int = 256,
    tile: int = 8,
    max_per_tile: int = 128,
) -> Raster:
    """``rasterize`` over a leading batch axis of ``verts`` [B, V, 3] (shared faces).

    The dense fallback runs (for the whole batch) only when some mesh overflows a tile.
    """
    if verts.ndim != 3:
        raise ValueError(f"rasterize_batch expects verts [B, V, 3], got {verts.shape}.")
    _check(verts[0], faces, height, width)
    verts, faces = jnp.asarray(verts, jnp.float32), jnp.asarray(faces, jnp.int32)
    tris = jax.lax.stop_gradient(verts)[:, faces]
    coef = jax.vmap(_coefficients)(tris)
    ids, overflow = jax.vmap(lambda t, c: _visible_tiled(t, c, height, width, tile, max_per_tile))(
        tris, coef
    )
    dense = jax.vmap(lambda c: _visible_dense(c, height, width, chunk))
    tri_id = jax.lax.cond(jnp.any(overflow), lambda c, i: dense(c), lambda c, i: i, coef, ids)
    return jax.vmap(lambda v, t: _finish(v, faces, t, height, width))(verts, tri_id)


def _interp_one(attr: jax.Array, tri_id: jax.Array, bary: jax.Array, faces: jax.Array):
    covered = tri_id >= 0
    corner = attr[faces[jnp.maximum(tri_id, 0)]]  # [H, W, 3, C]
    out = jnp.sum(bary[..., None] * corner, axis=-2)
    return jnp.where(covered[..., None], out, 0.0)


def interpolate(attr: jax.Array, raster: Raster, faces: jax.Array) -> jax.Array:
    """Barycentric interpolation of per-vertex attributes; zeros outside the mesh.

    Args:
      attr: ``[V, C]`` (shared by every raster in a batch) or ``[B, V, C]``.
      raster: a ``Raster`` with shape ``[H, W]`` or ``[B, H, W]``.
      faces: int ``[F, 3]``, the faces the raster was made with.

    Returns:
      ``[..., H, W, C]``, differentiable w.r.t. ``attr`` and (through ``raster.bary``) vertices.
    """
    faces = jnp.asarray(faces, jnp.int32)
    batched = raster.tri_id.ndim == 3
    if attr.ndim not in (2, 3) or (attr.ndim == 3 and not batched):
        raise ValueError(
            f"attr {attr.shape} does not fit raster {raster.tri_id.shape}: use [V, C] or [B, V, C] "
            "with a batched raster."
        )
    if not batched:
        return _interp_one(attr, raster.tri_id, raster.bary, faces)
    attr_axis = 0 if attr.ndim == 3 else None
    return jax.vmap(_interp_one, in_axes=(attr_axis, 0, 0, None))(
        attr, raster.tri_id, raster.bary, faces
    )


def flat_colors(attr: jax.Array, faces: jax.Array) -> jax.Array:
    """Per-triangle value ``[F, C]``: the mean of the three vertex values of ``attr`` [V, C]."""
    return jnp.mean(attr[jnp.asarray(faces, jnp.int32)], axis=-2)


def _shade_one(face_attr: jax.Array, tri_id: jax.Array) -> jax.Array:
    out = face_attr[jnp.maximum(tri_id, 0)]
    return jnp.where((tri_id >= 0)[..., None], out, 0.0)


def shade_flat(face_attr: jax.Array, raster: Raster) -> jax.Array:
    """Constant colour per visible triangle: ``face_attr`` [F, C] or [B, F, C] -> [..., H, W, C]."""
    batched = raster.tri_id.ndim == 3
    if face_attr.ndim == 2 and not batched:
        return _shade_one(face_attr, raster.tri_id)
    if not batched:
        raise ValueError(f"face_attr {face_attr.shape} needs a batched raster.")
    axis = 0 if face_attr.ndim == 3 else None
    return jax.vmap(_shade_one, in_axes=(axis, 0))(face_attr, raster.tri_id)
