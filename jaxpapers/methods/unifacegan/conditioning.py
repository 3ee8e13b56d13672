"""The generator's condition: recombined 3D geometry -> guidance maps, context, source texture.

For one (source, target) pair and one frame, UniFaceGAN conditions its generator on the face of
the recombined geometry (source identity + target/driving expression and pose) rendered by the
3D model, and on the context it must fill the face into. Ours (everything on device, jitted):

* geometry ``X = s R (I_src + E_tgt) + t`` (``geometry.recombine`` written for batches);
* guidance maps of ``X`` (``render.guidance_maps``: normals, depth, PNCC-like coordinate code
  with the source identity as the canonical shape, coverage mask);
* the source texture transferred onto ``X`` through the shared mesh topology (same triangle,
  same barycentrics, sampled in the source image at the source's tracked mesh) — our stand-in
  for the paper's 3DMM texture rendering (BFM albedo cannot be had), with its validity mask;
* the context: the canvas image (target frame for swapping, source image for reenactment) with
  the face erased: the union of the canvas's own face-oval polygon and the new face's polygon,
  enlarged by ``erase_scale`` about its centroid;
* the face-region mask for RACN: the filled face-oval polygon of ``X`` (the mesh itself has eye
  and mouth holes, which belong to the face region).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.lib.face3d import render, topology
from jaxpapers.methods.unifacegan import losses

COND_CHANNELS = 16  # context 3 + erase 1 + normal 3 + depth 1 + coord 3 + tex 3 + valid 1 + face 1


def pose_points(canon: jax.Array, s: jax.Array, rot: jax.Array, t: jax.Array) -> jax.Array:
    """``s R c + t`` for a batch: canon [B,V,3], s [B], rot [B,3,3], t [B,3] -> [B,V,3]."""
    return s[:, None, None] * jnp.einsum("bij,bvj->bvi", rot, canon) + t[:, None, :]


def polygon_mask(poly: jax.Array, height: int, width: int, scale: float = 1.0) -> jax.Array:
    """Filled polygon (even-odd rule at pixel centres): poly [B,K,2] pixels -> [B,H,W,1] float.

    ``scale`` enlarges the polygon about its centroid first (1.0 = as given).
    """
    c = jnp.mean(poly, axis=1, keepdims=True)
    poly = c + scale * (poly - c)
    ys = jnp.arange(height, dtype=jnp.float32)[:, None, None] + 0.5
    xs = jnp.arange(width, dtype=jnp.float32)[None, :, None] + 0.5

    def one(p):
        xi, yi = p[:, 0], p[:, 1]
        xj, yj = jnp.roll(xi, -1), jnp.roll(yi, -1)
        straddle = (yi > ys) != (yj > ys)  # [H,1,K] broadcast against x
        denom = jnp.where(yj == yi, 1e-12, yj - yi)
        x_cross = xi + (ys - yi) * (xj - xi) / denom
        crossing = straddle & (xs < x_cross)  # [H,W,K]
        return (jnp.sum(crossing, axis=-1) % 2).astype(jnp.float32)[..., None]

    return jax.vmap(one)(poly)


def condition(
    verts: jax.Array,
    canonical: jax.Array,
    canvas: jax.Array,
    canvas_verts: jax.Array,
    src_image: jax.Array,
    src_verts: jax.Array,
    *,
    erase_scale: float = 1.15,
    chunk: int = 256,
) -> tuple[jax.Array, jax.Array, dict]:
    """Builds the generator input for a batch of frames.

    Args:
      verts: [B,V,3] recombined geometry (pixels of the output image).
      canonical: [B,V,3] (or [V,3]) canonical shape for the coordinate code (source identity).
      canvas: [B,H,W,3] float [-1,1] image whose context is kept.
      canvas_verts: [B,V,3] the canvas's own tracked mesh (its face is erased).
      src_image: [B,H,W,3] float source image; src_verts: [B,V,3] its tracked mesh.

    Returns:
      (cond [B,H,W,COND_CHANNELS], face_region [B,H,W,1], guidance dict incl. 'raster').
    """
    b, h, w, _ = canvas.shape
    faces = jnp.asarray(topology.triangles(), jnp.int32)
    oval = jnp.asarray(topology.face_oval(), jnp.int32)
    g = render.guidance_maps(verts, faces, h, w, canonical=canonical, chunk=chunk)
    raster = g["raster"]
    face_region = polygon_mask(verts[:, oval, :2], h, w)
    erase = jnp.maximum(
        polygon_mask(verts[:, oval, :2], h, w, erase_scale),
        polygon_mask(canvas_verts[:, oval, :2], h, w, erase_scale),
    )
    context = canvas * (1.0 - erase)
    tex, valid = losses.warp_through_mesh(src_image, raster.tri_id, raster.bary, src_verts, faces)
    cond = jnp.concatenate(
        [context, erase, g["normal"], g["depth"], g["coord"] * 2 - 1, tex, valid, face_region],
        axis=-1,
    )
    assert cond.shape[-1] == COND_CHANNELS, cond.shape
    return cond, face_region, g
