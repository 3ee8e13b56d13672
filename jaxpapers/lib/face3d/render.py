"""Guidance maps of posed face meshes: normals, depth, PNCC-like coordinate code, face mask.

These are the images a 3D-guided face generator is conditioned on (UniFaceGAN renders its
recombined 3DMM face; FaceAnime its 3D dynamics sequence). With the orthographic rasteriser
(``jaxpapers.layers.rasterizer``, vertices in pixels, smaller z = closer):

* ``normal``: per-vertex normals (area-weighted sums of the adjacent triangle normals,
  oriented so that the mesh faces the camera, i.e. the area-weighted mean normal has z < 0),
  interpolated and re-normalised, components in [-1, 1];
* ``depth``: interpolated z mapped per mesh to [-1, 1] over the mesh's own z range
  (nearest vertex +1, farthest -1), 0 outside the face;
* ``coord``: the Projected Normalized Coordinate Code of 3DDFA (Zhu et al. 2016): each vertex
  carries its coordinates in a fixed canonical shape (e.g. the identity or the mean shape of
  ``geometry.decompose``) normalised to [0, 1]^3 by that shape's bounding box, interpolated, so
  a pixel's colour says WHICH point of the face it shows; without ``canonical`` each mesh's own
  vertices are used (then the code moves with the pose);
* ``mask``: 1 inside the rendered mesh.

Everything is differentiable w.r.t. the vertices through the barycentrics (not through the
coverage/visibility decision).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.layers import rasterizer


def vertex_normals(verts: jax.Array, faces: jax.Array) -> jax.Array:
    """Unit per-vertex normals ``[V, 3]`` of one mesh, facing the camera (-z) on average."""
    tri = verts[faces]  # [F, 3, 3]
    fn = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    # Flip the whole mesh so the area-weighted mean normal points to the camera (z < 0).
    sign = jnp.where(jnp.sum(fn[:, 2]) > 0, -1.0, 1.0)
    fn = fn * jax.lax.stop_gradient(sign)
    vn = jnp.zeros_like(verts).at[faces.reshape(-1)].add(jnp.repeat(fn, 3, axis=0))
    return vn / jnp.maximum(jnp.linalg.norm(vn, axis=-1, keepdims=True), 1e-8)


def _unit_box(points: jax.Array) -> jax.Array:
    lo = points.min(axis=-2, keepdims=True)
    hi = points.max(axis=-2, keepdims=True)
    return (points - lo) / jnp.maximum(hi - lo, 1e-8)


def guidance_maps(
    verts: jax.Array,
    faces: jax.Array,
    height: int,
    width: int,
    *,
    canonical: jax.Array | None = None,
    chunk: int = 256,
    tile: int = 8,
    max_per_tile: int = 128,
) -> dict:
    """Renders the guidance maps of a batch of posed meshes.

    Args:
      verts: ``[B, V, 3]`` vertices in pixels of the ``height x width`` output.
      faces: int ``[F, 3]`` triangles (e.g. ``topology.triangles()``).
      height: output rows.
      width: output columns.
      canonical: ``[V, 3]`` (shared) or ``[B, V, 3]`` canonical shapes for the coordinate code.
      chunk, tile, max_per_tile: rasteriser knobs (speed only, see ``rasterizer.rasterize``).

    Returns:
      dict with 'normal' [B,H,W,3], 'depth' [B,H,W,1], 'coord' [B,H,W,3], 'mask' [B,H,W,1]
      (float32) and 'raster' (the batched ``Raster``).
    """
    verts = jnp.asarray(verts, jnp.float32)
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"guidance_maps expects verts [B, V, 3], got {verts.shape}.")
    faces = jnp.asarray(faces, jnp.int32)
    raster = rasterizer.rasterize_batch(
        verts, faces, height, width, chunk=chunk, tile=tile, max_per_tile=max_per_tile
    )
    mask = raster.mask

    normals = jax.vmap(vertex_normals, in_axes=(0, None))(verts, faces)
    n_img = rasterizer.interpolate(normals, raster, faces)
    n_img = n_img / jnp.maximum(jnp.linalg.norm(n_img, axis=-1, keepdims=True), 1e-8)

    z = verts[..., 2:]
    z_lo, z_hi = z.min(axis=1, keepdims=True), z.max(axis=1, keepdims=True)
    z_code = 1.0 - 2.0 * (z - z_lo) / jnp.maximum(z_hi - z_lo, 1e-8)  # nearest +1, farthest -1
    depth = rasterizer.interpolate(z_code, raster, faces)

    if canonical is None:
        code = _unit_box(verts)
    else:
        canonical = jnp.asarray(canonical, jnp.float32)
        if canonical.shape[-2:] != verts.shape[-2:] or canonical.ndim not in (2, 3):
            raise ValueError(
                f"canonical must be [V, 3] or [B, V, 3] with V={verts.shape[1]}, "
                f"got {canonical.shape}."
            )
        code = _unit_box(canonical)
    coord = rasterizer.interpolate(code, raster, faces)
    return {"normal": n_img, "depth": depth, "coord": coord, "mask": mask, "raster": raster}
