"""UniFaceGAN numerics: RACN vs SPADE, the barycentric temporal loss, networks' shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.unifacegan import losses
from jaxpapers.methods.unifacegan import model as M


def _grid_mesh(n: int, size: float, origin=(0.0, 0.0)):
    """An n x n vertex grid over a size x size square, two triangles per cell, a gentle bump."""
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    z = -3.0 * np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2) / 0.1)
    verts = np.stack([origin[0] + u * size, origin[1] + v * size, z], -1).reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [(a, b, c), (b, d, c)]
    return (
        verts.astype(np.float32),
        np.asarray(faces, np.int32),
        np.stack([u, v], -1).reshape(-1, 2),
    )


def _rasterize_np(verts: np.ndarray, faces: np.ndarray, h: int, w: int):
    """Brute-force reference rasteriser (pixel centres at +0.5, nearest z wins)."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    tri_id = -np.ones((h, w), np.int32)
    bary = np.zeros((h, w, 3), np.float32)
    depth = np.full((h, w), np.inf, np.float32)
    for f, (i, j, k) in enumerate(faces):
        a, b, c = verts[i], verts[j], verts[k]
        den = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(den) < 1e-12:
            continue
        l0 = ((b[1] - c[1]) * (xs - c[0]) + (c[0] - b[0]) * (ys - c[1])) / den
        l1 = ((c[1] - a[1]) * (xs - c[0]) + (a[0] - c[0]) * (ys - c[1])) / den
        l2 = 1 - l0 - l1
        inside = (l0 >= -1e-6) & (l1 >= -1e-6) & (l2 >= -1e-6)
        z = l0 * a[2] + l1 * b[2] + l2 * c[2]
        win = inside & (z < depth)
        tri_id[win], depth[win] = f, z[win]
        bary[win] = np.stack([l0, l1, l2], -1)[win]
    return tri_id, bary, depth


def _render(verts, faces, colors, h, w):
    tri, bary, depth = _rasterize_np(verts, faces, h, w)
    idx = faces[np.maximum(tri, 0)]
    img = np.sum(bary[..., None] * colors[idx], axis=-2) * (tri >= 0)[..., None]
    return img.astype(np.float32), tri, bary, depth


@pytest.fixture(scope="module")
def mesh():
    verts, faces, uv = _grid_mesh(7, 16.0, (6.0, 7.0))
    colors = np.stack([uv[:, 0], uv[:, 1], 0.5 * uv[:, 0] + 0.25], -1).astype(np.float32)
    return verts, faces, colors


def _temporal(verts_t, verts_n, faces, colors, img_next=None, h=32, w=32):
    g_t, tri, bary, _ = _render(verts_t, faces, colors, h, w)
    g_n, _, _, depth_n = _render(verts_n, faces, colors, h, w)
    if img_next is not None:
        g_n = img_next
    return float(
        losses.temporal_loss(
            jnp.asarray(g_t)[None],
            jnp.asarray(g_n)[None],
            jnp.asarray(tri)[None],
            jnp.asarray(bary)[None],
            jnp.asarray(verts_n)[None],
            jnp.asarray(faces),
            jnp.asarray(depth_n)[None],
        )
    )


def test_temporal_loss_zero_for_copied_rigid_texture(mesh):
    verts, faces, colors = mesh
    moved = verts + np.array([3.0, 2.0, 0.0], np.float32)  # rigid integer translation
    assert _temporal(verts, moved, faces, colors) < 1e-5
    # A generator that does not move the texture with the face is penalised.
    g_static, *_ = _render(verts, faces, colors, 32, 32)
    assert _temporal(verts, moved, faces, colors, img_next=g_static) > 0.05


def _plane_texture(affine_inv: np.ndarray, h: int, w: int) -> np.ndarray:
    """A texture painted on the moving plane: colour = affine function of canonical (u, v)."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    pix = np.stack([xs, ys, np.ones_like(xs)], -1)
    uv = pix @ affine_inv.T  # [h, w, 2] canonical coordinates of each pixel
    return np.stack([uv[..., 0], uv[..., 1], 0.3 * uv[..., 0] - 0.2 * uv[..., 1]], -1)


def test_temporal_loss_zero_for_rotating_texture_copy(mesh):
    verts, faces, colors = mesh
    c = verts[:, :2].mean(0)
    a = np.deg2rad(12.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    shift = np.array([1.3, -0.7], np.float32)
    moved = verts.copy()
    moved[:, :2] = (verts[:, :2] - c) @ rot.T + c + shift
    # Frame t: canonical = pixel / 16; frame t+1: the plane rotated and shifted.
    inv_t = np.array([[1 / 16, 0, 0], [0, 1 / 16, 0]])
    lin = rot.T / 16  # pixel -> canonical for frame t+1: R^T (p - c - shift) + c, then / 16
    inv_n = np.concatenate([lin, (-(rot.T @ (c + shift)) + c)[:, None] / 16], 1)
    g_t, g_n = _plane_texture(inv_t, 32, 32), _plane_texture(inv_n, 32, 32)
    _, tri, bary, _ = _render(verts, faces, colors, 32, 32)
    _, _, _, depth_n = _render(moved, faces, colors, 32, 32)

    def loss(img_next):
        return float(
            losses.temporal_loss(
                jnp.asarray(g_t, jnp.float32)[None],
                jnp.asarray(img_next, jnp.float32)[None],
                jnp.asarray(tri)[None],
                jnp.asarray(bary)[None],
                jnp.asarray(moved)[None],
                jnp.asarray(faces),
                jnp.asarray(depth_n)[None],
            )
        )

    assert loss(g_n) < 1e-4  # copies the rigidly moving texture: zero up to float error
    assert loss(g_t) > 0.03  # ignores the motion: penalised


def test_warp_reproduces_vertex_attributes_at_identity(mesh):
    verts, faces, colors = mesh
    img, tri, bary, depth = _render(verts, faces, colors, 32, 32)
    warped, valid = losses.warp_through_mesh(
        jnp.asarray(img)[None],
        jnp.asarray(tri)[None],
        jnp.asarray(bary)[None],
        jnp.asarray(verts)[None],
        jnp.asarray(faces),
        jnp.asarray(depth)[None],
    )
    v = np.asarray(valid[0, ..., 0]) > 0
    assert v.sum() > 150
    np.testing.assert_allclose(np.asarray(warped[0])[v], img[v], atol=1e-5)


def test_bilinear_sample_exact_on_linear_image():
    h, w = 9, 11
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    img = (2.0 * xs - 3.0 * ys)[None, ..., None].astype(np.float32)
    pts = np.array([[[[3.2, 4.7], [0.5, 0.5], [10.5, 8.5]]]], np.float32)
    val, inside = losses.bilinear_sample(jnp.asarray(img), jnp.asarray(pts))
    np.testing.assert_allclose(
        np.asarray(val)[0, 0, :, 0], 2 * pts[0, 0, :, 0] - 3 * pts[0, 0, :, 1], atol=1e-5
    )
    assert bool(jnp.all(inside))
    _, out = losses.bilinear_sample(jnp.asarray(img), jnp.asarray([[[[-1.0, 2.0]]]]))
    assert not bool(out[0, 0, 0])


@pytest.fixture(scope="module")
def norm_inputs():
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (2, 8, 8, 6))
    cond = jax.random.normal(k[1], (2, 16, 16, 5))
    mask = (jax.random.uniform(k[2], (2, 16, 16, 1)) > 0.5).astype(jnp.float32)
    return x, cond, mask


def test_racn_equals_spade_when_regions_share_parameters(norm_inputs):
    x, cond, mask = norm_inputs
    racn, spade = M.RegionAwareNorm(6, 8), M.SpadeNorm(6, 8)
    p = racn.init(jax.random.key(1), x, cond, mask)["params"]
    assert set(p) == {"face", "context"}
    shared = {"face": p["face"], "context": p["face"]}
    y_racn = racn.apply({"params": shared}, x, cond, mask)
    y_spade = spade.apply({"params": {"face": p["face"]}}, x, cond, mask)
    np.testing.assert_allclose(np.asarray(y_racn), np.asarray(y_spade), atol=1e-5)
    # With separate parameters the regions are modulated differently ...
    y_sep = racn.apply({"params": p}, x, cond, mask)
    assert float(jnp.max(jnp.abs(y_sep - y_spade))) > 1e-2
    # ... and each region follows its own branch: mask 1 = face branch, mask 0 = context branch.
    ones, zeros = jnp.ones_like(mask), jnp.zeros_like(mask)
    y_face = racn.apply({"params": p}, x, cond, ones)
    np.testing.assert_allclose(np.asarray(y_face), np.asarray(y_spade), atol=1e-5)
    y_ctx = racn.apply({"params": p}, x, cond, zeros)
    ref_ctx = spade.apply({"params": {"face": p["context"]}}, x, cond, zeros)
    np.testing.assert_allclose(np.asarray(y_ctx), np.asarray(ref_ctx), atol=1e-5)


def test_generator_and_discriminator_shapes():
    cond = jnp.zeros((2, 16, 16, 14))
    mask = jnp.ones((2, 16, 16, 1))
    for norm in ("racn", "spade"):
        g = M.Generator(base=4, n_down=1, n_res=1, max_ch=8, norm=norm, hidden=4)
        p = g.init(jax.random.key(0), cond, mask)
        out = g.apply(p, cond, mask)
        assert out.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.abs(out) <= 1))
    with pytest.raises(ValueError, match="racn"):
        M.Generator(base=4, n_down=1, norm="adain").init(jax.random.key(0), cond, mask)
    d = M.MultiScaleDiscriminator(num_d=2, base=4, n_layers=2)
    outs = d.apply(d.init(jax.random.key(0), cond[..., :3], cond), cond[..., :3], cond)
    assert len(outs) == 2 and outs[0][-1].shape[-1] == 1
    assert outs[1][0].shape[1] == outs[0][0].shape[1] // 2


def test_feature_matching_and_l1_use_only_weighted_samples():
    r = [[jnp.ones((2, 4, 4, 3)), jnp.zeros((2, 2, 2, 1))]]
    f = [[jnp.stack([jnp.ones((4, 4, 3)), 3 * jnp.ones((4, 4, 3))]), jnp.zeros((2, 2, 2, 1))]]
    assert float(losses.feature_matching(r, f, jnp.array([1.0, 0.0]))) == pytest.approx(0.0)
    assert float(losses.feature_matching(r, f, jnp.array([0.0, 1.0]))) == pytest.approx(2.0)
    a = jnp.zeros((2, 3, 3, 3))
    b = jnp.stack([jnp.zeros((3, 3, 3)), jnp.ones((3, 3, 3))])
    assert float(losses.masked_l1(a, b, jnp.array([1.0, 1.0]))) == pytest.approx(0.5)


def test_polygon_mask_covers_the_analytic_pixels():
    from jaxpapers.methods.unifacegan import conditioning

    square = jnp.asarray([[[2.0, 3.0], [7.0, 3.0], [7.0, 9.0], [2.0, 9.0]]])
    m = np.asarray(conditioning.polygon_mask(square, 12, 10))[0, ..., 0]
    ys, xs = np.mgrid[0:12, 0:10] + 0.5
    want = (xs > 2) & (xs < 7) & (ys > 3) & (ys < 9)
    np.testing.assert_array_equal(m > 0, want)
    big = np.asarray(conditioning.polygon_mask(square, 12, 10, scale=1.4))[0, ..., 0]
    assert big.sum() > m.sum() and np.all(big >= m)
