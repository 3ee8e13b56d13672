"""Guidance maps of the face3d core on analytic meshes (a tilted plane) and the face topology."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.lib.face3d import render, topology

H, W = 20, 24


def _plane(a=0.3, b=-0.2, c=10.0, flip=False):
    xy = np.array([[2.0, 3.0], [21.0, 2.0], [22.0, 18.0], [1.0, 17.0]], np.float32)
    z = a * xy[:, 0] + b * xy[:, 1] + c
    verts = np.concatenate([xy, z[:, None]], -1)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    return verts, (faces[:, ::-1] if flip else faces)


def test_plane_normals_depth_coord_mask():
    verts, faces = _plane()
    verts2 = verts.copy()
    verts2[:, 2] = 5.0  # a fronto-parallel copy: normal (0, 0, -1), constant depth code
    batch = jnp.asarray(np.stack([verts, verts2]))
    f = jax.jit(lambda v, fc: render.guidance_maps(v, fc, H, W))
    g = f(batch, jnp.asarray(faces))
    assert g["normal"].shape == (2, H, W, 3) and g["depth"].shape == (2, H, W, 1)
    assert g["coord"].shape == (2, H, W, 3) and g["mask"].shape == (2, H, W, 1)
    m = np.asarray(g["mask"][0, ..., 0]) > 0
    assert m.sum() > 200 and not m.all()
    expect = np.array([0.3, -0.2, -1.0]) / np.linalg.norm([0.3, -0.2, -1.0])  # faces the camera
    np.testing.assert_allclose(
        np.asarray(g["normal"][0])[m], np.broadcast_to(expect, (m.sum(), 3)), atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(g["normal"][1])[m][:, 2], -1.0, atol=1e-6)
    # The winding does not change the normals (meshes are oriented to face the camera).
    vf, ff = _plane(flip=True)
    gf = f(jnp.asarray(np.stack([vf, vf])), jnp.asarray(ff))  # same shapes: no recompile
    np.testing.assert_allclose(np.asarray(gf["normal"][0]), np.asarray(g["normal"][0]), atol=1e-5)
    # Depth code: linear in z, +1 at the nearest vertex's depth, -1 at the farthest, 0 outside.
    z = verts[:, 2]
    ii, jj = np.nonzero(m)
    zpix = 0.3 * (jj + 0.5) - 0.2 * (ii + 0.5) + 10.0
    want = 1 - 2 * (zpix - z.min()) / (z.max() - z.min())
    np.testing.assert_allclose(np.asarray(g["depth"][0, ..., 0])[m], want, atol=1e-4)
    assert np.all(np.asarray(g["depth"])[:, ~m] == 0)
    # Coordinate code: in [0, 1], x code grows to the right.
    code = np.asarray(g["coord"][0])
    assert code[m].min() >= -1e-6 and code[m].max() <= 1 + 1e-6
    assert code[10, 20, 0] > code[10, 3, 0]


def test_face_mesh_guidance_and_gradient():
    # A dome over the 468 vertices placed on a disc: every triangle of the real topology renders.
    rng = np.random.default_rng(0)
    tris = topology.triangles()
    ang = np.linspace(0, 2 * np.pi, topology.NUM_VERTICES, endpoint=False)
    rad = np.sqrt(rng.uniform(0, 1, topology.NUM_VERTICES))
    xy = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], -1)
    verts = np.concatenate([16 + 12 * xy, -5 * np.sqrt(1 - rad[:, None] ** 2 * 0.9)], -1)
    canon = jnp.asarray(verts.astype(np.float32))

    def loss(v):
        g = render.guidance_maps(v[None], jnp.asarray(tris), 32, 32, canonical=canon)
        return jnp.sum(g["coord"] ** 2) + jnp.sum(g["depth"]) + jnp.sum(g["normal"][..., 2])

    val, grad = jax.jit(jax.value_and_grad(loss))(canon)
    assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(grad)))
    assert np.abs(np.asarray(grad)).sum() > 0
