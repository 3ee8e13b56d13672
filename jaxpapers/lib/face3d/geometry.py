"""Rigid pose / identity / expression decomposition of tracked face meshes (numpy or jnp).

This stands in for the BFM-based 3DMM fits of UniFaceGAN and FaceAnime (BFM needs a
registration and is not redistributable). For a video with per-frame landmarks ``X_t`` [V, 3]
(pixels):

1. pose: a similarity ``X_t ~ s_t R_t C_t + t_t`` per frame, by Procrustes/Umeyama (1991)
   alignment of the frame onto a reference shape;
2. canonical frames ``C_t = R_t^T (X_t - t_t) / s_t`` (the inverse-posed landmarks);
3. identity ``I`` = the per-video neutral shape, the per-vertex median of the ``C_t``;
4. expression ``E_t = C_t - I`` (per-frame residual deformation).

Recombination ``X'_t = s_t R_t (I + E_t) + t_t`` mixes these freely: a swap is (source I,
target E_t and pose_t); a reenactment is (source I, driving E_t and pose_t). The reference
(when not given) is the generalised-Procrustes mean of the video, normalised to zero centroid
and unit RMS radius and — for the 468-vertex face mesh — rotated into an anatomical frontal
frame (x: right outer eye corner -> left outer eye corner, y: forehead -> chin, both in image
orientation, z = x cross y points away from the viewer), so canonical shapes of different
videos share one frame and one scale and can be mixed. Depth keeps MediaPipe's relative
scale, so the "identity" also absorbs a constant per-video depth bias; it is a neutral shape,
not a disentangled 3DMM identity (the deviation from the papers' BFM coefficients).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.lib.face3d import topology

Array = Any  # np.ndarray or jax.Array


def _xp(*xs):
    return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def procrustes(src: Array, dst: Array) -> tuple[Array, Array, Array]:
    """Similarity ``(s, R, t)`` minimising ``|s R src + t - dst|^2`` (Umeyama 1991).

    Args:
      src: ``[..., V, 3]`` points to move.
      dst: ``[..., V, 3]`` target points (same V; leading dims broadcast).

    Returns:
      ``s`` [...], ``R`` [..., 3, 3] a proper rotation (det +1), ``t`` [..., 3].
    """
    xp = _xp(src, dst)
    src, dst = xp.asarray(src, xp.float32), xp.asarray(dst, xp.float32)
    if src.shape[-1] != 3 or dst.shape[-1] != 3 or src.shape[-2] != dst.shape[-2]:
        raise ValueError(f"procrustes needs [..., V, 3] pairs, got {src.shape} and {dst.shape}.")
    mu_s, mu_d = src.mean(-2, keepdims=True), dst.mean(-2, keepdims=True)
    a, b = src - mu_s, dst - mu_d
    cov = xp.swapaxes(b, -1, -2) @ a / src.shape[-2]  # [..., 3, 3] = E[b a^T]
    u, d, vt = xp.linalg.svd(cov)
    # Reflection guard: flip the last singular direction when det(U V^T) < 0 (Umeyama eq. 39).
    sign = xp.sign(xp.linalg.det(u) * xp.linalg.det(vt))
    sign = xp.where(sign == 0, 1.0, sign)
    diag = xp.stack([xp.ones_like(sign), xp.ones_like(sign), sign], -1)
    rot = (u * diag[..., None, :]) @ vt
    var_s = xp.mean(xp.sum(a**2, -1), -1)
    s = xp.sum(d * diag, -1) / xp.maximum(var_s, 1e-12)
    t = mu_d[..., 0, :] - s[..., None] * xp.einsum("...ij,...j->...i", rot, mu_s[..., 0, :])
    return s, rot, t


@flax.struct.dataclass
class Pose:
    """Per-frame similarity: ``x = s R c + t``; s [T], R [T, 3, 3], t [T, 3]."""

    s: Array
    R: Array
    t: Array


def apply_pose(canon: Array, pose: Pose) -> Array:
    """Poses canonical shapes ``[T, V, 3]`` (or one ``[V, 3]`` for all frames) -> [T, V, 3]."""
    xp = _xp(canon, pose.s, pose.R, pose.t)
    canon = xp.asarray(canon, xp.float32)
    if canon.ndim == 2:
        canon = xp.broadcast_to(canon[None], (pose.s.shape[0], *canon.shape))
    return pose.s[:, None, None] * xp.einsum("tij,tvj->tvi", pose.R, canon) + pose.t[:, None, :]


def invert_pose(points: Array, pose: Pose) -> Array:
    """Canonical shapes ``R^T (x - t) / s`` of posed points ``[T, V, 3]``."""
    xp = _xp(points, pose.s)
    centred = xp.asarray(points, xp.float32) - pose.t[:, None, :]
    return xp.einsum("tji,tvj->tvi", pose.R, centred) / pose.s[:, None, None]


def _normalise(shape: Array) -> Array:
    xp = _xp(shape)
    c = shape - shape.mean(0, keepdims=True)
    return c / xp.sqrt(xp.mean(xp.sum(c**2, -1)))


def frontal_frame(shape: Array) -> Array:
    """Rotates a 468-vertex face shape into the anatomical frontal frame (module docstring)."""
    xp = _xp(shape)
    ex = shape[topology.LEFT_EYE_OUTER] - shape[topology.RIGHT_EYE_OUTER]
    ex = ex / xp.linalg.norm(ex)
    ey = shape[topology.CHIN] - shape[topology.FOREHEAD]
    ey = ey - xp.dot(ey, ex) * ex
    ey = ey / xp.linalg.norm(ey)
    ez = xp.cross(ex, ey)
    basis = xp.stack([ex, ey, ez])  # rows: new axes expressed in the old frame
    return (shape - shape.mean(0, keepdims=True)) @ basis.T


def mean_shape(landmarks: Array, iters: int = 5) -> Array:
    """Generalised Procrustes mean of ``[T, V, 3]`` shapes (unit RMS radius, zero centroid)."""
    xp = _xp(landmarks)
    landmarks = xp.asarray(landmarks, xp.float32)
    ref = _normalise(landmarks[0])
    for _ in range(iters):
        s, rot, t = procrustes(landmarks, ref[None])
        aligned = apply_pose(landmarks, Pose(s, rot, t))
        ref = _normalise(aligned.mean(0))
    if landmarks.shape[1] == topology.NUM_VERTICES:
        ref = frontal_frame(ref)
    return ref


def decompose(landmarks: Array, reference: Array | None = None) -> tuple[Pose, Array, Array]:
    """Splits tracked landmarks into pose, identity and expression (module docstring).

    Args:
      landmarks: ``[T, V, 3]`` per-frame vertices in pixels.
      reference: ``[V, 3]`` canonical reference; default: ``mean_shape(landmarks)``.

    Returns:
      ``(pose, identity [V, 3], expression [T, V, 3])`` with
      ``recombine(identity, expression, pose) == landmarks`` up to float error.
    """
    xp = _xp(landmarks, reference)
    landmarks = xp.asarray(landmarks, xp.float32)
    if landmarks.ndim != 3 or landmarks.shape[-1] != 3:
        raise ValueError(f"landmarks must be [T, V, 3], got {landmarks.shape}.")
    if not isinstance(landmarks, jax.core.Tracer) and not bool(xp.all(xp.isfinite(landmarks))):
        raise ValueError("landmarks contain NaN/inf; drop frames where the face was not found.")
    ref = mean_shape(landmarks) if reference is None else xp.asarray(reference, xp.float32)
    # Pose maps canonical -> frame: Procrustes of the reference onto each frame.
    s, rot, t = procrustes(ref[None], landmarks)
    pose = Pose(s=s, R=rot, t=t)
    canon = invert_pose(landmarks, pose)
    identity = xp.median(canon, axis=0)
    return pose, identity, canon - identity[None]


def recombine(identity: Array, expression: Array, pose: Pose) -> Array:
    """``s_t R_t (identity + expression_t) + t_t`` -> ``[T, V, 3]`` pixels."""
    return apply_pose(identity[None] + expression, pose)


@flax.struct.dataclass
class ExpressionBasis:
    """PCA basis of expression residuals; coefficients are in units of each component's std."""

    mean: Array  # [V, 3]
    basis: Array  # [k, V, 3], orthonormal when flattened
    std: Array  # [k]

    @staticmethod
    def fit_pca(expressions: Array, k: int) -> ExpressionBasis:
        """Fits the top-``k`` principal components of ``[N, V, 3]`` expression residuals."""
        x = np.asarray(expressions, np.float64)
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"expressions must be [N, V, 3], got {x.shape}.")
        n, v, _ = x.shape
        k = int(k)
        if not 1 <= k <= min(n, 3 * v):
            raise ValueError(f"k={k} must be in [1, min(N, 3V)] = [1, {min(n, 3 * v)}].")
        mean = x.mean(0)
        flat = (x - mean).reshape(n, -1)
        _, sv, vt = np.linalg.svd(flat, full_matrices=False)
        std = sv[:k] / np.sqrt(max(n - 1, 1))
        return ExpressionBasis(
            mean=mean.astype(np.float32),
            basis=vt[:k].reshape(k, v, 3).astype(np.float32),
            std=np.maximum(std, 1e-8).astype(np.float32),
        )

    def __iter__(self):
        """Unpacks as ``mean, basis, std = fit_pca(...)`` too."""
        return iter((self.mean, self.basis, self.std))

    def encode(self, expr: Array) -> Array:
        """``[..., V, 3]`` -> whitened coefficients ``[..., k]``."""
        xp = _xp(expr, self.basis)
        d = xp.asarray(expr, xp.float32) - self.mean
        return xp.einsum("...vc,kvc->...k", d, self.basis) / self.std

    def decode(self, coeffs: Array) -> Array:
        """Whitened coefficients ``[..., k]`` -> ``[..., V, 3]``."""
        xp = _xp(coeffs, self.basis)
        return self.mean + xp.einsum("...k,kvc->...vc", coeffs * self.std, self.basis)


fit_pca = ExpressionBasis.fit_pca


def _rotvec_to_matrix(rv: Array) -> Array:
    xp = _xp(rv)
    theta = xp.linalg.norm(rv, axis=-1)[..., None, None]
    small = theta < 1e-6
    th = xp.where(small, 1.0, theta)
    k = rv / th[..., 0]
    zero = xp.zeros_like(rv[..., 0])
    kx = xp.stack(
        [
            xp.stack([zero, -k[..., 2], k[..., 1]], -1),
            xp.stack([k[..., 2], zero, -k[..., 0]], -1),
            xp.stack([-k[..., 1], k[..., 0], zero], -1),
        ],
        -2,
    )
    eye = xp.eye(3, dtype=rv.dtype)
    rod = eye + xp.sin(th) * kx + (1 - xp.cos(th)) * (kx @ kx)  # Rodrigues' formula
    return xp.where(small, eye + kx, rod)  # small angles: k = rv (th = 1), R ~ I + [rv]x


def _matrix_to_rotvec(rot: Array) -> Array:
    xp = _xp(rot)
    cos = xp.clip((xp.trace(rot, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    theta = xp.arccos(cos)
    w = xp.stack(
        [
            rot[..., 2, 1] - rot[..., 1, 2],
            rot[..., 0, 2] - rot[..., 2, 0],
            rot[..., 1, 0] - rot[..., 0, 1],
        ],
        -1,
    )
    sin = xp.sin(theta)
    generic = w * (theta / xp.where(sin < 1e-6, 1.0, 2 * sin))[..., None]
    small = (theta < 1e-3)[..., None]
    # Near pi the antisymmetric part vanishes: the axis is the dominant column of (R + I) / 2.
    sym = (rot + xp.eye(3, dtype=rot.dtype)) / 2
    col = xp.argmax(xp.diagonal(sym, axis1=-2, axis2=-1), -1)
    axis = xp.take_along_axis(sym, col[..., None, None].repeat(3, -2), -1)[..., 0]
    axis = axis / xp.maximum(xp.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    near_pi = (xp.pi - theta < 1e-3)[..., None]
    out = xp.where(small, w / 2, generic)
    return xp.where(near_pi, axis * theta[..., None], out)


def pose_to_vector(pose: Pose) -> Array:
    """``[T, 7]``: scale (linear), axis-angle rotation vector (3), translation (3)."""
    xp = _xp(pose.s)
    return xp.concatenate([pose.s[:, None], _matrix_to_rotvec(pose.R), pose.t], -1)


def vector_to_pose(vec: Array) -> Pose:
    """Inverse of ``pose_to_vector``: ``[T, 7]`` -> ``Pose``."""
    if vec.shape[-1] != 7:
        raise ValueError(f"pose vectors are [T, 7] (s, axis-angle, t), got {vec.shape}.")
    return Pose(s=vec[..., 0], R=_rotvec_to_matrix(vec[..., 1:4]), t=vec[..., 4:])
