"""Topology and geometry of the face3d core: Procrustes, decomposition, PCA, pose vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.lib.face3d import geometry as G
from jaxpapers.lib.face3d import topology as T


def _rot(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    return G._rotvec_to_matrix(axis * angle).astype(np.float32)


def _fake_face(rng, v=T.NUM_VERTICES):
    """A random 468-point cloud whose anatomical landmarks sit where a face's would."""
    pts = rng.normal(size=(v, 3)).astype(np.float32) * np.array([1.0, 1.3, 0.4], np.float32)
    pts[T.RIGHT_EYE_OUTER] = (-1.0, -0.5, 0.0)
    pts[T.LEFT_EYE_OUTER] = (1.0, -0.5, 0.0)
    pts[T.FOREHEAD] = (0.0, -2.0, 0.0)
    pts[T.CHIN] = (0.0, 2.0, 0.0)
    return pts


def test_topology_is_a_consistent_face_mesh():
    tris = T.triangles()
    assert tris.shape == (852, 3) and tris.dtype == np.int32
    assert set(np.unique(tris)) == set(range(T.NUM_VERTICES))
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    # Consistent winding: no directed edge twice (neighbours traverse shared edges oppositely).
    assert len({tuple(e) for e in directed}) == len(directed)
    undirected = {tuple(sorted(e)) for e in directed}
    # Euler characteristic V - E + F = -2: a disk with three holes (two eyes, the mouth).
    assert T.NUM_VERTICES - len(undirected) + len(tris) == -2
    oval = T.face_oval()
    assert len(oval) == 36 and len(set(oval)) == 36 and T.FOREHEAD in oval and T.CHIN in oval
    for name in ("left_eye", "right_eye", "lips"):
        assert 10 < len(T.region_vertices(name)) < 60
    assert T.RIGHT_EYE_OUTER in T.region_vertices("right_eye")
    assert T.LEFT_EYE_OUTER in T.region_vertices("left_eye")
    assert len(T.region_vertices("face")) == T.NUM_VERTICES
    with pytest.raises(ValueError, match="unknown face region"):
        T.region_vertices("ears")


@pytest.mark.parametrize("use_jnp", [False, True])
def test_procrustes_recovers_known_similarity(use_jnp):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3)).astype(np.float32)
    rot = _rot([0.3, -1.0, 0.5], 2.4)
    dst = 1.7 * src @ rot.T + np.array([5.0, -2.0, 3.0], np.float32)
    args = (jnp.asarray(src), jnp.asarray(dst)) if use_jnp else (src, dst)
    s, r, t = G.procrustes(*args)
    assert isinstance(r, jax.Array) == use_jnp
    np.testing.assert_allclose(np.asarray(r), rot, atol=1e-4)
    assert float(s) == pytest.approx(1.7, rel=1e-4)
    np.testing.assert_allclose(np.asarray(t), [5.0, -2.0, 3.0], atol=1e-3)
    # A mirrored target still yields a proper rotation (det +1), never a reflection.
    _, r_m, _ = G.procrustes(src, dst * np.array([-1, 1, 1], np.float32))
    assert np.linalg.det(r_m) == pytest.approx(1.0, abs=1e-4)


def test_decompose_recombine_round_trip_and_swap():
    rng = np.random.default_rng(1)
    ident = _fake_face(rng)
    frames, n = [], 6
    for k in range(n):
        expr = 0.05 * rng.normal(size=ident.shape).astype(np.float32) * (k % 3)
        rot = _rot([0.2, 1.0, 0.1 * k], 0.1 * k)
        frames.append(40.0 * (ident + expr) @ rot.T + np.array([60.0 + k, 70.0, 0.0]))
    lm = np.stack(frames).astype(np.float32)
    pose, identity, expression = G.decompose(lm)
    assert identity.shape == ident.shape and expression.shape == lm.shape
    np.testing.assert_allclose(G.recombine(identity, expression, pose), lm, atol=1e-3)
    # The canonical frame is frontal and normalised: eyes on the x axis, unit RMS radius.
    ref = G.mean_shape(lm)
    eye = ref[T.LEFT_EYE_OUTER] - ref[T.RIGHT_EYE_OUTER]
    assert eye[0] > 0 and abs(eye[1]) < 1e-4 and abs(eye[2]) < 1e-4
    assert ref[T.CHIN, 1] > ref[T.FOREHEAD, 1]
    assert np.sqrt(np.mean(np.sum(ref**2, -1))) == pytest.approx(1.0, rel=1e-4)
    # Pose scale carries the pixel scale (40 px per unit of the face, times 1 / RMS radius).
    np.testing.assert_allclose(pose.s, pose.s[0], rtol=2e-2)
    np.testing.assert_allclose(np.linalg.det(pose.R), 1.0, atol=1e-4)
    # Rigid frames (expr 0) have (near) zero expression; jnp gives the same numbers.
    assert np.abs(expression[0]).max() < 0.05
    pj, ij, ej = jax.jit(G.decompose)(jnp.asarray(lm))  # traceable (no host NaN check)
    np.testing.assert_allclose(np.asarray(ij), identity, atol=1e-3)
    # Swap: another identity under this video's pose/expression keeps the video's pose.
    other = G.decompose(lm * np.float32(1.1) + 3)[1]
    swapped = G.recombine(other, expression, pose)
    s2, r2, _ = G.procrustes(G.mean_shape(swapped[:1].repeat(2, 0))[None], swapped)
    np.testing.assert_allclose(r2, pose.R, atol=2e-2)
    with pytest.raises(ValueError, match="NaN"):
        G.decompose(np.where(np.arange(n)[:, None, None] == 2, np.nan, lm))


def test_expression_pca_encode_decode():
    rng = np.random.default_rng(2)
    modes = rng.normal(size=(3, 20, 3))
    coef = rng.normal(size=(40, 3)) * np.array([3.0, 2.0, 1.0])
    expr = (coef @ modes.reshape(3, -1)).reshape(40, 20, 3).astype(np.float32)
    basis = G.fit_pca(expr, 3)
    mean, comps, std = basis  # unpacks like the (mean, basis, std) triple
    assert mean.shape == (20, 3) and comps.shape == (3, 20, 3) and std[0] > std[1] > std[2]
    flat = basis.basis.reshape(3, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(3), atol=1e-5)
    c = basis.encode(expr)
    assert c.shape == (40, 3)
    np.testing.assert_allclose(c.std(0, ddof=1), 1.0, rtol=1e-3)  # whitened
    np.testing.assert_allclose(basis.decode(c), expr, atol=1e-4)
    np.testing.assert_allclose(np.asarray(basis.decode(jnp.asarray(c))), expr, atol=1e-4)
    with pytest.raises(ValueError, match="k="):
        G.fit_pca(expr, 0)


def test_pose_vector_round_trip():
    rots = np.stack([_rot([1, 2, 3], a) for a in (0.0, 1e-4, 0.7, 2.0, np.pi - 1e-5)])
    pose = G.Pose(
        s=np.array([1.0, 2.0, 0.5, 3.0, 1.0], np.float32),
        R=rots,
        t=np.arange(15, dtype=np.float32).reshape(5, 3),
    )
    vec = G.pose_to_vector(pose)
    assert vec.shape == (5, 7)
    back = G.vector_to_pose(vec)
    np.testing.assert_allclose(back.R, rots, atol=2e-4)
    np.testing.assert_allclose(back.s, pose.s)
    np.testing.assert_allclose(back.t, pose.t)
    vj = G.vector_to_pose(jnp.asarray(vec))
    np.testing.assert_allclose(np.asarray(vj.R), rots, atol=2e-4)
