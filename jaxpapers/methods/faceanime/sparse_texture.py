"""Sparse texture mapping (FaceAnime §3.2; pingponglabs/FaceAnime triD_downSmp_zyt.py).

What the official code does (get_colors + render_texture in triD_downSmp_zyt.py):
  1. sample the SOURCE image's colour at every projected source vertex: nearest pixel, the vertex
     position clipped into the image;
  2. keep a face-region vertex subset with its own triangle list (their downsampled BFM mesh);
  3. rasterise that coloured sparse mesh at the TARGET vertex positions with a z-buffer, each
     covered pixel taking its triangle's MEAN vertex colour (flat shading) -> n_dst; the same
     render at the source vertices -> n_src.  Background is 0 (mid-grey in [-1, 1]).

Ours: FaceMesh's 468 vertices replace the 2DASL/BFM vertices (the BFM files are licence-gated, not
installable offline) and the 'face' region of `lib/face3d/topology.py` replaces their .mat subset;
the z-buffer is the suite rasteriser (`layers/rasterizer.py`), which keeps the nearest surface per
PIXEL (interpolated z) where the official code compares the triangle's mean z; pixel centres are
at (i + 0.5) where the official loop tests integer (u, v), so nearest-pixel sampling here is
floor(x) (= their round under the half-pixel shift).  `shading='smooth'` (barycentric colour) is
an extra option of ours; it is not in the official code.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.layers import rasterizer as rz
from jaxpapers.lib.face3d import topology

Array = jax.Array
SHADINGS = ("flat", "smooth")


def region_faces(faces: np.ndarray, vertex_ids: np.ndarray) -> np.ndarray:
    """The triangles of `faces` [F, 3] whose three vertices all lie in `vertex_ids`."""
    keep = np.isin(np.asarray(faces), np.asarray(vertex_ids)).all(axis=1)
    if not keep.any():
        raise ValueError("No triangle lies inside the given vertex subset.")
    return np.asarray(faces, np.int32)[keep]


# Pure computation on the fixed topology (no inputs); the step asks for it at every trace.
@functools.lru_cache(maxsize=8)
def sparse_faces(region: str = "face") -> np.ndarray:
    """FaceMesh triangles restricted to a topology region ('face' = inside the face oval)."""
    return region_faces(topology.triangles(), topology.region_vertices(region))


def sample_colors(image: Array, verts: Array) -> Array:
    """Nearest-pixel colour of `image` [H, W, C] at each vertex [V, 3] (clipped), -> [V, C].

    Official get_colors: x, y clipped to [0, w-1] / [0, h-1], then rounded.  With our pixel
    centres at i + 0.5 the nearest pixel of x is floor(x).
    """
    h, w = image.shape[0], image.shape[1]
    col = jnp.clip(jnp.floor(verts[:, 0]), 0, w - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor(verts[:, 1]), 0, h - 1).astype(jnp.int32)
    return image[row, col]


def sparse_texture(
    image: Array,
    src_verts: Array,
    dst_verts: Array,
    faces: Array | None = None,
    *,
    shading: str = "flat",
    chunk: int = 256,
) -> tuple[Array, Array, Array]:
    """FaceAnime's sparse texture pair for one example.

    Args:
      image: [H, W, C] float source image (any range; the background value is 0).
      src_verts: [V, 3] source-frame vertices in pixels of `image`.
      dst_verts: [V, 3] target vertices (same pixel frame), or [T, V, 3] for T targets.
      faces: [F, 3] sparse triangle list (default: `sparse_faces('face')`).
      shading: 'flat' | 'smooth'.
      chunk: rasteriser chunk size.

    Returns:
      (n_src [H, W, C], n_dst [H, W, C] or [T, H, W, C], dst mask [..., H, W, 1]).
    """
    if image.ndim != 3 or src_verts.ndim != 2 or src_verts.shape[-1] != 3:
        raise ValueError(
            f"Expected image [H,W,C] and src_verts [V,3]; got {image.shape}, {src_verts.shape}."
        )
    out = sparse_texture_batch(
        image[None], src_verts[None], dst_verts[None], faces, shading=shading, chunk=chunk
    )
    return tuple(x[0] for x in out)


def sparse_texture_batch(
    images: Array,
    src_verts: Array,
    dst_verts: Array,
    faces: Array | None = None,
    *,
    shading: str = "flat",
    chunk: int = 256,
) -> tuple[Array, Array, Array]:
    """`sparse_texture` over a batch: images [B,H,W,C], verts [B,V,3] (dst [B,(T,)V,3]).

    All B·(1 + T) renders go through ONE `rasterize_batch` call instead of a vmap of
    `sparse_texture`: under vmap the rasteriser's overflow `lax.cond` becomes a select that runs
    the dense O(H·W·F) fallback on every call (see `layers/rasterizer.rasterize`).
    """
    if shading not in SHADINGS:
        raise ValueError(f"shading must be one of {SHADINGS}, got {shading!r}.")
    if images.ndim != 4 or src_verts.ndim != 3 or dst_verts.ndim not in (3, 4):
        raise ValueError(
            "Expected images [B,H,W,C], src_verts [B,V,3], dst_verts [B,(T,)V,3]; got "
            f"{images.shape}, {src_verts.shape}, {dst_verts.shape}."
        )
    faces = jnp.asarray(sparse_faces() if faces is None else faces, jnp.int32)
    b, h, w = images.shape[:3]
    colors = jax.vmap(sample_colors)(images, src_verts)  # [B, V, C]
    t = 1 if dst_verts.ndim == 3 else dst_verts.shape[1]
    dst = dst_verts.reshape((b * t,) + dst_verts.shape[-2:])
    verts = jnp.concatenate([src_verts, dst])
    cols = jnp.concatenate([colors, jnp.repeat(colors, t, axis=0)])
    raster = rz.rasterize_batch(verts, faces, h, w, chunk=chunk)

    def shade(c, r):
        if shading == "flat":
            return rz.shade_flat(rz.flat_colors(c, faces), r)
        return rz.interpolate(c, r, faces)

    imgs = jax.vmap(shade)(cols, raster)
    n_src, n_dst, mask = imgs[:b], imgs[b:], raster.mask[b:]
    if dst_verts.ndim == 4:
        n_dst = n_dst.reshape((b, t) + n_dst.shape[1:])
        mask = mask.reshape((b, t) + mask.shape[1:])
    return n_src, n_dst, mask
