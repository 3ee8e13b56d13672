"""Procedural face videos on the real 468-vertex face-mesh topology (tests, smoke preset).

The project's tests must not depend on the face tracker, so the ``synthetic`` data source
builds face-like meshes without it: a Tutte (harmonic) embedding of MediaPipe's triangle list
with the face-oval outline pinned to an ellipse gives a valid planar layout of all 468 vertices;
a dome gives depth; per identity, the proportions, dome height and a smooth per-vertex texture
(skin tone, darker eyes/lips/eyebrows) are random; per frame a small rigid motion (yaw, roll,
translation) and a mouth-opening expression move the mesh, which is rendered with the suite's
rasteriser over a per-identity background gradient. The landmarks are the exact posed vertices,
so the data flows through the same decomposition/conditioning as tracked real videos.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.layers import rasterizer
from jaxpapers.lib.face3d import topology


# Pure computation on the fixed topology (no inputs); every synthetic video starts from it.
@functools.lru_cache(maxsize=1)
def template() -> np.ndarray:
    """[468, 3] unit-scale face-like template (x right, y down, z smaller = closer)."""
    faces = topology.triangles()
    v = topology.NUM_VERTICES
    adj = np.zeros((v, v), np.float64)
    for a, b, c in faces:
        for i, j in ((a, b), (b, c), (c, a)):
            adj[i, j] = adj[j, i] = 1.0
    oval = topology.face_oval()
    ang = np.linspace(0, 2 * np.pi, len(oval), endpoint=False)
    pinned = np.zeros((v, 2))
    pinned[oval] = np.stack([0.8 * np.sin(ang), -np.cos(ang)], -1)
    free = np.setdiff1d(np.arange(v), oval)
    lap = np.diag(adj.sum(1)) - adj
    rhs = -lap[np.ix_(free, oval)] @ pinned[oval]
    xy = pinned.copy()
    xy[free] = np.linalg.solve(lap[np.ix_(free, free)], rhs)
    r2 = np.clip((xy[:, 0] / 0.8) ** 2 + xy[:, 1] ** 2, 0, 1)
    z = -0.6 * np.sqrt(1.0 - r2)
    return np.concatenate([xy, z[:, None]], -1).astype(np.float32)


def _rot(yaw: float, roll: float) -> np.ndarray:
    cy, sy, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (rz @ ry).astype(np.float32)


@functools.partial(jax.jit, static_argnums=(3,))
def _render(verts, colors, background, size):
    faces = jnp.asarray(topology.triangles(), jnp.int32)
    r = rasterizer.rasterize_batch(verts, faces, size, size)
    col = rasterizer.interpolate(colors, r, faces)
    return r.mask * col + (1 - r.mask) * background


def make_videos(
    num_ids: int, frames: int, size: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``num_ids`` videos of ``frames`` frames: list of (uint8 [T,S,S,3], landmarks [T,468,3])."""
    rs = np.random.default_rng(seed)
    base = template()
    lips = topology.region_vertices("lips")
    lower = lips[base[lips, 1] > np.median(base[lips, 1])]
    dark = np.concatenate(
        [topology.region_vertices(n) for n in ("left_eye", "right_eye", "lips")]
        + [topology.region_vertices(n) for n in ("left_eyebrow", "right_eyebrow")]
    )
    out = []
    for _ in range(num_ids):
        shape = base * np.array([rs.uniform(0.85, 1.1), rs.uniform(0.9, 1.1), rs.uniform(0.7, 1.3)])
        skin = rs.uniform(0.3, 0.9, 3)
        freq = rs.uniform(1.0, 3.0, 2)
        pattern = 0.15 * np.sin(freq[0] * 3 * shape[:, :1] + freq[1] * 2 * shape[:, 1:2])
        colors = np.clip(skin + pattern, 0, 1)
        colors[dark] *= 0.35
        bg_a, bg_b = rs.uniform(0, 1, 3), rs.uniform(0, 1, 3)
        ramp = np.linspace(0, 1, size)[:, None, None]
        background = np.broadcast_to(bg_a * (1 - ramp) + bg_b * ramp, (size, size, 3))
        phase = rs.uniform(0, 2 * np.pi, 4)
        verts = []
        for t in range(frames):
            ph = 2 * np.pi * t / max(frames, 2)
            canon = shape.copy()
            canon[lower, 1] += 0.08 * (1 + np.sin(2 * ph + phase[0]))  # mouth opens and closes
            rot = _rot(0.35 * np.sin(ph + phase[1]), 0.15 * np.sin(ph + phase[2]))
            scale = size * rs.uniform(0.3, 0.34)
            shift = size * (0.5 + 0.05 * np.array([np.sin(ph + phase[3]), np.cos(ph), 0.0]))
            verts.append(scale * canon @ rot.T + shift)
        verts = np.stack(verts).astype(np.float32)
        img = _render(
            jnp.asarray(verts),
            jnp.asarray(colors, jnp.float32),
            jnp.asarray(background, jnp.float32),
            size,
        )
        out.append((np.clip(np.asarray(img) * 255 + 0.5, 0, 255).astype(np.uint8), verts))
    return out
