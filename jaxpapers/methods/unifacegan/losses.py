"""UniFaceGAN losses: the barycentric 3D temporal loss, hinge GAN, feature matching, recon.

The 3D temporal loss (arXiv 2108.05650; the exact weighting is [unverified]): a pixel ``p``
of frame ``t`` covered by triangle ``T`` with barycentric coordinates ``b`` (from rasterising
the frame's mesh) corresponds to the point ``sum_k b_k V_{t+1}[T_k]`` of the next frame's mesh
(same topology), i.e. a dense flow derived from the 3D geometry. The generated frame ``t+1`` is
sampled bilinearly at that point and compared with generated frame ``t`` at ``p`` (L1) over the
pixels whose point is inside the image and visible in frame ``t+1`` (its depth is within
``depth_tol`` of the next frame's z-buffer). The same correspondence transfers the source
texture onto the target geometry (``warp_through_mesh``) and gives the flicker metric.

Coordinates follow FACE3D_API.md: vertices in pixel units (x right, y down), pixel ``(i, j)``
has its centre at ``(j + 0.5, i + 0.5)``; smaller z is closer.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def bilinear_sample(image: jax.Array, xy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Samples ``image`` [B,H,W,C] at pixel positions ``xy`` [B,h,w,2] (x, y; centres at +0.5).

    Returns (values [B,h,w,C], inside [B,h,w] bool): positions outside the pixel-centre hull are
    clamped and flagged ``inside=False``.
    """
    b, h, w, _ = image.shape
    x = xy[..., 0] - 0.5
    y = xy[..., 1] - 0.5
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    x = jnp.clip(x, 0.0, w - 1.0)
    y = jnp.clip(y, 0.0, h - 1.0)
    x0 = jnp.clip(jnp.floor(x), 0, w - 2).astype(jnp.int32) if w > 1 else jnp.zeros_like(x, int)
    y0 = jnp.clip(jnp.floor(y), 0, h - 2).astype(jnp.int32) if h > 1 else jnp.zeros_like(y, int)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    bi = jnp.arange(b)[:, None, None]
    v00, v01 = image[bi, y0, x0], image[bi, y0, x1]
    v10, v11 = image[bi, y1, x0], image[bi, y1, x1]
    top = v00 * (1 - fx) + v01 * fx
    bot = v10 * (1 - fx) + v11 * fx
    return top * (1 - fy) + bot * fy, inside


def corresponding_points(
    tri_id: jax.Array, bary: jax.Array, verts_other: jax.Array, faces: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Points of another mesh (same topology) with the same triangle and barycentrics.

    Args:
      tri_id: [B,H,W] int (-1 = background) of the rasterised mesh of frame t.
      bary: [B,H,W,3] barycentric coordinates of frame t.
      verts_other: [B,V,3] vertices (pixel units) of the other frame's mesh.
      faces: [F,3] int triangles.

    Returns:
      (xyz [B,H,W,3] the corresponding 3D points in the other frame, covered [B,H,W] bool).
    """
    covered = tri_id >= 0
    idx = jnp.asarray(faces)[jnp.maximum(tri_id, 0)]  # [B,H,W,3] vertex indices
    bi = jnp.arange(idx.shape[0])[:, None, None, None]
    corners = verts_other[bi, idx]  # [B,H,W,3 corners,3 xyz]
    xyz = jnp.sum(bary[..., None] * corners, axis=-2)
    return xyz, covered


def warp_through_mesh(
    image_other: jax.Array,
    tri_id: jax.Array,
    bary: jax.Array,
    verts_other: jax.Array,
    faces: jax.Array,
    depth_other: jax.Array | None = None,
    depth_tol: float = 2.0,
) -> tuple[jax.Array, jax.Array]:
    """Pulls ``image_other`` onto the pixels of frame t through the mesh correspondence.

    Args:
      image_other: [B,H',W',C] image of the other frame (the mesh ``verts_other`` lives in it).
      tri_id, bary: frame t's raster.
      verts_other, faces: the other frame's mesh.
      depth_other: optional [B,H',W'] z-buffer of the other frame's mesh (+inf background): a
        point further than ``depth_tol`` pixels behind it is occluded there and masked out.

    Returns:
      (warped [B,H,W,C], valid [B,H,W,1] float): valid = covered in t, inside, visible.
    """
    xyz, covered = corresponding_points(tri_id, bary, verts_other, faces)
    warped, inside = bilinear_sample(image_other, xyz[..., :2])
    valid = covered & inside
    if depth_other is not None:
        zbuf, _ = bilinear_sample(
            jnp.where(jnp.isfinite(depth_other), depth_other, 1e6)[..., None], xyz[..., :2]
        )
        valid = valid & (xyz[..., 2] <= zbuf[..., 0] + depth_tol)
    valid = valid.astype(warped.dtype)[..., None]
    return warped * valid, valid


def temporal_loss(
    gen_t: jax.Array,
    gen_next: jax.Array,
    tri_id_t: jax.Array,
    bary_t: jax.Array,
    verts_next: jax.Array,
    faces: jax.Array,
    depth_next: jax.Array | None = None,
    weights: jax.Array | None = None,
    depth_tol: float = 2.0,
) -> jax.Array:
    """The 3D temporal loss: masked L1 between G(t) and G(t+1) pulled back through the meshes.

    Args:
      gen_t, gen_next: [B,H,W,C] generated frames t and t+1.
      tri_id_t, bary_t: raster of the (recombined) mesh of frame t.
      verts_next: [B,V,3] mesh of frame t+1 (same topology).
      depth_next: optional z-buffer of frame t+1's mesh (visibility).
      weights: optional [B] per-sample weights (e.g. 0 for samples without a next frame).

    Returns:
      Scalar: sum of |G_t - warp(G_{t+1})| over valid pixels and channels / (valid pixels * C).
    """
    warped, valid = warp_through_mesh(
        gen_next, tri_id_t, bary_t, verts_next, faces, depth_next, depth_tol
    )
    if weights is not None:
        valid = valid * weights.reshape(-1, 1, 1, 1).astype(valid.dtype)
    diff = jnp.abs(gen_t - warped) * valid
    c = gen_t.shape[-1]
    return jnp.sum(diff) / jnp.maximum(jnp.sum(valid) * c, 1.0)


def hinge_d(real_logits: Sequence[jax.Array], fake_logits: Sequence[jax.Array]) -> jax.Array:
    """Hinge D loss summed over the discriminator scales (SPADE's GAN objective)."""
    loss = 0.0
    for r, f in zip(real_logits, fake_logits, strict=True):
        loss = loss + jnp.mean(jax.nn.relu(1.0 - r)) + jnp.mean(jax.nn.relu(1.0 + f))
    return loss


def hinge_g(fake_logits: Sequence[jax.Array]) -> jax.Array:
    return sum(-jnp.mean(f) for f in fake_logits)


def feature_matching(
    real_feats: Sequence[Sequence[jax.Array]],
    fake_feats: Sequence[Sequence[jax.Array]],
    weights: jax.Array,
) -> jax.Array:
    """pix2pixHD feature matching: L1 of every intermediate D feature, mean over the D scales.

    ``weights`` [B] selects the samples that have a ground truth (self-reconstruction pairs);
    the real features carry no gradient.
    """
    num_d = len(real_feats)
    w = weights.astype(jnp.float32)
    denom = jnp.maximum(jnp.sum(w), 1.0)
    loss = 0.0
    for rf, ff in zip(real_feats, fake_feats, strict=True):
        for r, f in zip(rf[:-1], ff[:-1], strict=True):  # last entry = logits
            per = jnp.mean(jnp.abs(f - jax.lax.stop_gradient(r)), axis=(1, 2, 3))
            loss = loss + jnp.sum(per * w) / denom / num_d
    return loss


def masked_l1(fake: jax.Array, real: jax.Array, weights: jax.Array) -> jax.Array:
    """Per-sample mean |fake - real|, averaged over the samples with weight 1."""
    per = jnp.mean(jnp.abs(fake - real), axis=tuple(range(1, fake.ndim)))
    w = weights.astype(jnp.float32)
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)
