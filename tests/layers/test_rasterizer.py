"""Numerics of the JAX rasteriser: coverage, barycentrics, z-buffer, gradients, jit/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.layers import rasterizer as R

H, W = 24, 32
# One compiled program per mesh shape, shared by the tests (compiles dominate on CPU).
_rast = jax.jit(
    R.rasterize, static_argnums=(2, 3), static_argnames=("chunk", "tile", "max_per_tile")
)


def _analytic_cover(tri: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies in the triangle, by scanline intersection (float64)."""
    out = np.zeros((height, width), bool)
    pts = tri[:, :2].astype(np.float64)
    for i in range(height):
        y = i + 0.5
        xs = []
        for a, b in ((0, 1), (1, 2), (2, 0)):
            (xa, ya), (xb, yb) = pts[a], pts[b]
            if (ya - y) * (yb - y) <= 0 and ya != yb:
                xs.append(xa + (y - ya) * (xb - xa) / (yb - ya))
        if len(xs) >= 2:
            lo, hi = min(xs), max(xs)
            j = np.arange(width) + 0.5
            out[i] = (j >= lo) & (j <= hi)
    return out


@pytest.mark.parametrize("winding", [(0, 1, 2), (0, 2, 1)])
def test_triangle_covers_analytic_pixels(winding):
    tri = np.array([[3.3, 2.2, 1.0], [28.7, 6.9, 2.0], [11.1, 21.6, 3.0]], np.float32)
    faces = np.array([winding], np.int32)
    r = _rast(jnp.asarray(tri), jnp.asarray(faces), H, W)
    expected = _analytic_cover(tri, H, W)
    assert expected.sum() > 100
    np.testing.assert_array_equal(np.asarray(r.tri_id) == 0, expected)
    np.testing.assert_array_equal(np.asarray(r.mask[..., 0]) == 1, expected)
    assert np.all(np.isinf(np.asarray(r.depth)[~expected]))
    assert np.all(np.asarray(r.tri_id)[~expected] == -1)


def test_barycentrics_sum_to_one_and_reproduce_vertices():
    tri = np.array([[2.5, 2.5, 0.0], [29.5, 3.5, 1.0], [6.5, 20.5, 2.0]], np.float32)
    faces = jnp.array([[0, 1, 2]], jnp.int32)
    r = _rast(jnp.asarray(tri), faces, H, W)
    cov = np.asarray(r.mask[..., 0]) > 0
    bary = np.asarray(r.bary)
    np.testing.assert_allclose(bary[cov].sum(-1), 1.0, atol=1e-5)
    assert np.all(bary[cov] >= -1e-6)
    # Vertices placed on pixel centres: interpolation returns the vertex attributes exactly there.
    attr = jnp.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 7.0]])
    img = np.asarray(R.interpolate(attr, r, faces))
    for v in range(3):
        j, i = int(tri[v, 0]), int(tri[v, 1])
        assert cov[i, j]
        np.testing.assert_allclose(img[i, j], np.asarray(attr[v]), atol=1e-5)
        np.testing.assert_allclose(np.asarray(r.depth)[i, j], tri[v, 2], atol=1e-5)
    # Linear attributes (x, y of the pixel centre) are reproduced everywhere inside.
    lin = R.interpolate(jnp.asarray(tri[:, :2]), r, faces)
    ii, jj = np.nonzero(cov)
    np.testing.assert_allclose(
        np.asarray(lin)[ii, jj], np.stack([jj + 0.5, ii + 0.5], -1), atol=1e-4
    )
    assert np.all(np.asarray(img)[~cov] == 0)


def test_zbuffer_nearest_wins_and_chunking_is_invariant():
    # Two overlapping quads (4 triangles); the second is closer (smaller z) on the left half.
    verts = jnp.array(
        [
            [2.1, 2.3, 5],
            [20.2, 2.1, 5],
            [20.3, 19.9, 5],
            [2.2, 20.1, 5],
            [10, 4, 9],
            [30, 4, 1],
            [30, 22, 1],
            [10, 22, 9],
        ],
        jnp.float32,
    )
    faces = jnp.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], jnp.int32)
    r1 = _rast(verts, faces, H, W)  # tiled pass
    r4 = _rast(verts, faces, H, W, chunk=3, max_per_tile=1)  # dense fallback, padded chunks
    np.testing.assert_array_equal(np.asarray(r1.tri_id), np.asarray(r4.tri_id))
    tid, depth = np.asarray(r1.tri_id), np.asarray(r1.depth)
    # Second quad depth at x: 9 - 8 * (x - 10) / 20 -> closer than 5 for x > 20; farther below.
    assert tid[10, 12] in (0, 1) and depth[10, 12] == pytest.approx(5.0)
    assert tid[10, 25] in (2, 3) and depth[10, 25] == pytest.approx(
        9 - 8 * (25.5 - 10) / 20, abs=1e-4
    )
    shade = np.asarray(R.shade_flat(jnp.arange(4.0)[:, None], r1))
    np.testing.assert_array_equal(shade[..., 0], np.where(tid >= 0, tid, 0))
    fc = R.flat_colors(verts, faces)
    np.testing.assert_allclose(np.asarray(fc[0]), np.asarray(verts[:3].mean(0)), atol=1e-6)


def test_gradients_reach_vertices_and_attributes():
    verts = jnp.array([[3.3, 2.2, 1.0], [28.7, 6.9, 2.0], [11.1, 21.6, 3.0]], jnp.float32)
    faces = jnp.array([[0, 1, 2]], jnp.int32)
    attr = jnp.array([[1.0], [2.0], [3.0]])

    def loss(v, a):
        r = R.rasterize(v, faces, H, W)
        img = R.interpolate(a, r, faces)
        return jnp.sum(img**2) + jnp.sum(jnp.where(r.mask[..., 0] > 0, r.depth, 0.0))

    gv, ga = jax.jit(jax.grad(loss, argnums=(0, 1)))(verts, attr)
    assert np.all(np.isfinite(np.asarray(gv))) and np.all(np.isfinite(np.asarray(ga)))
    assert np.all(np.abs(np.asarray(ga)) > 0)
    assert np.all(np.abs(np.asarray(gv)[:, :2]).sum(-1) > 0)  # x/y through the barycentrics
    assert np.all(np.abs(np.asarray(gv)[:, 2]) > 0)  # z through the depth
    # Finite-difference check on the attribute of vertex 1 (the loss is quadratic in attr).
    eps = 1e-2
    d = jnp.zeros_like(attr).at[1, 0].set(eps)
    jl = jax.jit(loss)
    fd = (jl(verts, attr + d) - jl(verts, attr - d)) / (2 * eps)
    np.testing.assert_allclose(float(ga[1, 0]), float(fd), rtol=1e-3)


def test_jit_and_vmap_match_per_example():
    base = jnp.array([[3.3, 2.2, 1.0], [28.7, 6.9, 2.0], [11.1, 21.6, 3.0]], jnp.float32)
    batch = jnp.stack([base, base + jnp.array([1.7, -0.6, 0.0]), base * jnp.array([0.8, 0.9, 1])])
    faces = jnp.array([[0, 1, 2]], jnp.int32)
    f = jax.jit(lambda v: R.rasterize_batch(v, faces, H, W))
    rb = f(batch)
    assert rb.tri_id.shape == (3, H, W) and rb.bary.shape == (3, H, W, 3)
    attr = jnp.ones((3, 3, 2)) * jnp.arange(3.0)[:, None, None]
    img = R.interpolate(attr, rb, faces)
    assert img.shape == (3, H, W, 2)
    for b in range(3):
        rs = _rast(batch[b], faces, H, W)
        np.testing.assert_array_equal(np.asarray(rb.tri_id[b]), np.asarray(rs.tri_id))
        np.testing.assert_allclose(np.asarray(rb.bary[b]), np.asarray(rs.bary), atol=1e-6)
        np.testing.assert_allclose(
            np.asarray(img[b, ..., 0]), b * np.asarray(rs.mask[..., 0]), atol=1e-5
        )
    shared = R.interpolate(jnp.ones((3, 1)), rb, faces)  # [V, C] broadcast over the batch
    np.testing.assert_allclose(np.asarray(shared), np.asarray(rb.mask), atol=1e-5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\[V, 3\]"):
        R.rasterize(jnp.zeros((3, 2)), jnp.zeros((1, 3), jnp.int32), 4, 4)
    with pytest.raises(ValueError, match="integer"):
        R.rasterize(jnp.zeros((3, 3)), jnp.zeros((1, 3)), 4, 4)


def test_tiled_pass_equals_dense_fallback_on_a_triangle_soup():
    rng = np.random.default_rng(0)
    n = 60
    centres = rng.uniform([0, 0, 0], [W, H, 10], size=(n, 1, 3))
    verts = (centres + rng.normal(size=(n, 3, 3)) * np.array([4.0, 4.0, 1.0])).reshape(-1, 3)
    faces = np.arange(3 * n, dtype=np.int32).reshape(n, 3)
    f = jax.jit(
        lambda v, **kw: R.rasterize_batch(v, faces, H, W, **kw).tri_id,
        static_argnames=("tile", "max_per_tile", "chunk"),
    )
    v = jnp.asarray(verts[None].astype(np.float32))
    tiled = np.asarray(f(v, tile=8, max_per_tile=n))  # capacity = F: never overflows
    dense = np.asarray(f(v, tile=8, max_per_tile=2, chunk=16))  # overflows -> dense pass
    odd = np.asarray(f(v, tile=5, max_per_tile=n))  # tiles not dividing the image
    assert (tiled >= 0).mean() > 0.5 and len(np.unique(tiled)) > 20
    np.testing.assert_array_equal(tiled, dense)
    np.testing.assert_array_equal(tiled, odd)
