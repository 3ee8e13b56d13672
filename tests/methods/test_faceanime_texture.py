"""FaceAnime sparse texture mapping (flat rule, source reproduction) and the GAN losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.faceanime import losses
from jaxpapers.methods.faceanime import sparse_texture as st


def grid_mesh(n: int, lo: float, hi: float, jitter: float, seed: int):
    """A planar (n x n)-vertex grid mesh with 2 triangles per cell, slightly jittered."""
    r = np.random.default_rng(seed)
    g = np.linspace(lo, hi, n)
    xs, ys = np.meshgrid(g, g)
    verts = np.stack([xs.ravel(), ys.ravel(), r.uniform(0, 1, n * n)], -1)
    verts[:, :2] += r.uniform(-jitter, jitter, (n * n, 2))
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [(a, b, d), (a, d, c)]
    return verts.astype(np.float32), np.asarray(faces, np.int32)


def test_flat_rule_pixels_equal_mean_of_sampled_vertex_colours():
    h = w = 24
    src, faces = grid_mesh(5, 3.0, 20.0, 1.0, seed=0)
    dst, _ = grid_mesh(5, 2.0, 21.0, 1.5, seed=1)
    image = np.random.default_rng(2).uniform(-1, 1, (h, w, 3)).astype(np.float32)
    n_src, n_dst, mask = st.sparse_texture(
        jnp.asarray(image), jnp.asarray(src), jnp.asarray(dst), faces, shading="flat"
    )
    # Independent reference: nearest-pixel colours (official get_colors with pixel centres at
    # i + 0.5), point-in-triangle test per pixel centre on the planar (non-overlapping) mesh.
    cols = image[
        np.clip(np.floor(src[:, 1]), 0, h - 1).astype(int),
        np.clip(np.floor(src[:, 0]), 0, w - 1).astype(int),
    ]
    tri_col = cols[faces].mean(1)
    checked = 0
    for geom, out in ((dst, np.asarray(n_dst)), (src, np.asarray(n_src))):
        for i in range(h):
            for j in range(w):
                p = np.array([j + 0.5, i + 0.5])
                for f, (a, b, c) in enumerate(faces):
                    pa, pb, pc = geom[a, :2], geom[b, :2], geom[c, :2]
                    m = np.array([pb - pa, pc - pa]).T
                    l1, l2 = np.linalg.solve(m, p - pa)
                    if min(l1, l2, 1 - l1 - l2) > 1e-3:  # strictly inside: no edge ties
                        np.testing.assert_allclose(out[i, j], tri_col[f], atol=1e-6)
                        checked += 1
    assert checked > 300
    assert float(mask.sum()) > 200
    # Outside the mesh the render is 0 (the official zero background).
    assert np.all(np.asarray(n_dst)[np.asarray(mask)[..., 0] == 0] == 0)


@pytest.mark.parametrize("shading,tol", [("flat", 0.06), ("smooth", 0.03)])
def test_render_at_source_geometry_reproduces_source(shading, tol):
    """A smooth (linear ramp) image is reproduced inside the mesh up to the sampling error."""
    h = w = 32
    verts, faces = grid_mesh(7, 4.0, 28.0, 1.0, seed=3)
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    image = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], -1).astype(np.float32) * 2 - 1
    n_src, _, _ = st.sparse_texture(
        jnp.asarray(image), jnp.asarray(verts), jnp.asarray(verts), faces, shading=shading
    )
    mask = np.any(np.asarray(n_src) != 0, -1)
    err = np.abs(np.asarray(n_src) - image)[mask]
    assert mask.sum() > 400
    # Ramp slope is 2/32 per pixel; flat colour = mean of the corners (~ centroid colour).
    assert err.mean() < tol, err.mean()


def test_region_faces_keeps_only_inside_triangles():
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]], np.int32)
    np.testing.assert_array_equal(st.region_faces(faces, np.array([0, 1, 2, 3])), faces[:2])
    with pytest.raises(ValueError):
        st.region_faces(faces, np.array([9]))
    sub = st.sparse_faces("face")
    assert sub.ndim == 2 and sub.shape[1] == 3 and len(sub) > 100


def test_wgan_gp_equals_formula_on_known_critics():
    r = np.random.default_rng(0)
    real, fake, cond = (jnp.asarray(r.normal(size=(4, 5, 5, 3)), jnp.float32) for _ in range(3))
    eps = jnp.asarray(r.uniform(size=4), jnp.float32)
    a = jnp.asarray(r.normal(size=(5, 5, 6)) * 0.1, jnp.float32)
    linear = lambda z: jnp.sum(z * a, axis=(1, 2, 3))  # noqa: E731  gradient == a everywhere
    gp = losses.gradient_penalty(linear, real, fake, cond, eps)
    np.testing.assert_allclose(gp, (np.linalg.norm(a) - 1.0) ** 2, rtol=1e-5)
    quad = lambda z: 0.5 * jnp.sum(z * z, axis=(1, 2, 3))  # noqa: E731  gradient == z
    e = np.asarray(eps)[:, None, None, None]
    x_hat = e * np.asarray(real) + (1 - e) * np.asarray(fake)
    z = np.concatenate([x_hat, np.asarray(cond)], -1).reshape(4, -1)
    want_gp = np.mean((np.linalg.norm(z, axis=1) - 1.0) ** 2)
    loss, aux = losses.critic_loss(quad, real, fake, cond, eps, gp_weight=10.0)
    d = lambda x: 0.5 * np.sum(np.concatenate([x, np.asarray(cond)], -1).reshape(4, -1) ** 2, 1)  # noqa: E731
    want = d(np.asarray(fake)).mean() - d(np.asarray(real)).mean() + 10.0 * want_gp
    np.testing.assert_allclose(aux["gp"], want_gp, rtol=1e-5)
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_generator_loss_official_weights():
    r = np.random.default_rng(1)
    fake, real, cond = (jnp.asarray(r.normal(size=(2, 4, 4, 3)), jnp.float32) for _ in range(3))
    w = jnp.asarray(r.uniform(size=(2, 4, 4, 1)), jnp.float32)
    critic = lambda z: jnp.mean(z, axis=(1, 2, 3))  # noqa: E731
    loss, aux = losses.generator_loss(
        critic, fake, real, cond, w, jnp.float32(0.25), w_l1=1e4, w_w=0.05, w_id=1e4
    )
    adv = -np.mean(np.concatenate([fake, cond], -1).mean(axis=(1, 2, 3)))
    want = (
        adv
        + 1e4 * np.abs(np.asarray(fake - real)).mean()
        + 0.05 * np.asarray(w).mean()
        + 1e4 * 0.25
    )
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert set(aux) == {"g_adv", "l1", "w_l1", "id"}
    # The fake image is detached in the critic loss: no gradient reaches it.
    g = jax.grad(lambda f: losses.critic_loss(critic, real, f, cond, jnp.ones(2) * 0.5)[0])(fake)
    assert float(jnp.abs(g).sum()) == 0.0


@pytest.mark.parametrize("shading", ["flat", "smooth"])
@pytest.mark.parametrize("targets", [0, 2])
def test_batch_equals_per_example(shading, targets):
    """`sparse_texture_batch` (one batched rasterisation) equals `sparse_texture` per example."""
    h = w = 24
    verts, faces = grid_mesh(5, 3.0, 21.0, 1.0, seed=5)
    r = np.random.default_rng(0)
    images = r.uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
    src = np.stack([verts, verts + np.float32([1.0, -1.0, 0.0])])
    shape = (2, targets) if targets else (2,)
    dst = (src.reshape(2, *([1] * bool(targets)), -1, 3) + r.uniform(-1, 1, shape + (1, 3))).astype(
        np.float32
    )
    out = st.sparse_texture_batch(
        jnp.asarray(images), jnp.asarray(src), jnp.asarray(dst), faces, shading=shading
    )
    for i in range(2):
        ref = st.sparse_texture(
            jnp.asarray(images[i]), jnp.asarray(src[i]), jnp.asarray(dst[i]), faces, shading=shading
        )
        for a, b in zip(out, ref, strict=True):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), atol=1e-6)
