"""3D dynamic prediction (3DDP): a stochastic LSTM over per-frame pose + expression parameters.

The paper's 3DDP network predicts a sequence of 3DMM parameters (pose + expression) from one
image; the official release (pingponglabs/FaceAnime) does not contain it, so the architecture
here is ours [unverified].  Ours works on the suite's FaceMesh decomposition
(`lib/face3d/geometry.py`):

  per-frame parameter vector p_t (RELATIVE to the source frame 0, so it transfers to any face):
    [log(s_t / s_0), rotvec(R_t R_0^T) (3), (t_t - t_0) / S (3), c_t - c_0 (k)]
  with c = whitened PCA coefficients of the canonical expression (ExpressionBasis), S the crop
  size; each dimension is divided by its training std (`ParamStats`).

Model (a conditional VAE with LSTMs, `Dynamics`):
  * image encoder: small strided CNN on the source still -> feature f;
  * posterior encoder q(z | p_1..T): an LSTM over the true sequence -> (mu, log var) of z;
  * decoder: an LSTM whose step input is [p_{t-1}, f, z] and whose output is p_t (p_0 = 0).
  Training: teacher forcing (the decoder sees the true p_{t-1}), loss = mean squared error
  + beta * KL(q || N(0, I)).  Sampling (face-video PREDICTION): z ~ N(0, I), autoregressive
  rollout; different z give different futures (diversity is measured in evaluate.py).

Why an LSTM rather than a transformer: the training data at CPU scale is one 120-frame clip, the
sequences are short (16-32 frames) and generated autoregressively one frame at a time; an LSTM
has the right inductive bias (smooth state), a few thousand parameters, O(1) memory per step of
the rollout, and is the likely design of the unreleased 3DDP [unverified].  A transformer would
need far more data to learn temporal smoothness.
RETARGETING mode needs no prediction: the driving video's relative parameters (same vector) are
transferred onto the source geometry (`params_to_vertices`), as 3DMM-based retargeting does.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.lib.face3d import geometry as g3

Array = jax.Array
POSE_DIM = 7


@flax.struct.dataclass
class Geometry:
    """Data-derived constants of the parameterisation (held in the train state, not trained)."""

    reference: Array  # [V, 3] canonical reference shape (unit RMS radius)
    basis_mean: Array  # [V, 3]
    basis: Array  # [k, V, 3]
    basis_std: Array  # [k]
    p_std: Array  # [P] per-dimension std of the relative parameters
    size: Array  # scalar crop size S (pixels)

    @property
    def expression_basis(self) -> g3.ExpressionBasis:
        return g3.ExpressionBasis(mean=self.basis_mean, basis=self.basis, std=self.basis_std)


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def _rel_rotvec(r_t: Array, r_0: Array) -> Array:
    xp = _xp(r_t)
    rel = xp.einsum("tij,kj->tik", r_t, r_0)  # R_t R_0^T
    return g3.pose_to_vector(
        g3.Pose(s=xp.ones(rel.shape[0], rel.dtype), R=rel, t=xp.zeros((rel.shape[0], 3), rel.dtype))
    )[:, 1:4]


def sequence_params(landmarks: Array, geom: Geometry, normalise: bool = True) -> Array:
    """Tracked landmarks [T, V, 3] (frame 0 = source) -> relative parameters [T, P].

    numpy in -> numpy out (host data preparation), jax in -> jax out.
    """
    xp = _xp(landmarks)
    if xp is np:
        geom = jax.tree.map(np.asarray, geom)
    pose, _, expr = g3.decompose(landmarks, xp.asarray(geom.reference))
    c = geom.expression_basis.encode(expr)
    p = xp.concatenate(
        [
            xp.log(pose.s / pose.s[0])[:, None],
            _rel_rotvec(pose.R, pose.R[0]),
            (pose.t - pose.t[0]) / geom.size,
            c - c[0],
        ],
        axis=-1,
    )
    return p / geom.p_std if normalise else p


def params_to_vertices(params: Array, src_landmarks: Array, geom: Geometry) -> Array:
    """Applies relative parameters [T, P] (normalised) to a source face [V, 3] -> [T, V, 3].

    The source's identity and its own expression stay; pose is composed with the source pose
    (R_t = R_rel R_0, s_t = s_0 exp(ds), t_t = t_0 + S dt) and the expression offset decoded
    from the PCA coefficient deltas is added in the canonical frame.
    """
    p = params * geom.p_std
    pose0, identity, _ = g3.decompose(jnp.asarray(src_landmarks)[None], geom.reference)
    rel = g3.vector_to_pose(jnp.concatenate([jnp.ones_like(p[:, :1]), p[:, 1:4], p[:, 4:7]], -1))
    pose = g3.Pose(
        s=pose0.s[0] * jnp.exp(p[:, 0]),
        R=jnp.einsum("tij,jk->tik", rel.R, pose0.R[0]),
        t=pose0.t[0] + geom.size * p[:, 4:7],
    )
    eb = geom.expression_basis
    d_expr = jnp.einsum("tk,kvc->tvc", p[:, 7:] * eb.std, eb.basis)  # decode(c) - decode(0)
    return g3.recombine(identity, d_expr, pose)


def fit_geometry(landmarks: np.ndarray, size: int, k: int, window: int) -> Geometry:
    """Reference shape, expression PCA and parameter stds from tracked training frames [T, V, 3]."""
    lm = np.asarray(landmarks, np.float32)
    ref = np.asarray(g3.mean_shape(lm))
    _, _, expr = g3.decompose(lm, ref)
    eb = g3.fit_pca(np.asarray(expr), k)
    geom = Geometry(
        reference=ref,
        basis_mean=eb.mean,
        basis=eb.basis,
        basis_std=eb.std,
        p_std=np.ones(POSE_DIM + k, np.float32),
        size=np.float32(size),
    )
    starts = range(0, max(1, len(lm) - window + 1), max(1, window // 4))
    raw = np.concatenate(
        [np.asarray(sequence_params(lm[s : s + window], geom, False))[1:] for s in starts]
    )
    std = np.maximum(raw.std(0), 1e-4).astype(np.float32)
    return geom.replace(p_std=std)


class ImageEncoder(nn.Module):
    """Strided CNN on the source still -> feature vector."""

    width: int = 16
    features: int = 32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for i in range(4):
            x = nn.Conv(self.width * 2 ** min(i, 2), (3, 3), strides=(2, 2))(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.Dense(self.features)(jnp.mean(x, axis=(1, 2)))


class Dynamics(nn.Module):
    """CVAE-LSTM 3DDP (module docstring).  Parameters are shared by all methods below."""

    param_dim: int
    hidden: int = 64
    latent: int = 8
    img_width: int = 16
    img_features: int = 32

    def setup(self) -> None:
        self.encoder_img = ImageEncoder(self.img_width, self.img_features)
        self.post_cell = nn.OptimizedLSTMCell(self.hidden)
        self.post_out = nn.Dense(2 * self.latent)
        self.dec_cell = nn.OptimizedLSTMCell(self.hidden)
        self.dec_init = nn.Dense(2 * self.hidden)
        self.dec_out = nn.Dense(self.param_dim)

    def posterior(self, params: Array) -> tuple[Array, Array]:
        """q(z | p_1..T): params [B, T, P] -> (mu, logvar) [B, latent]."""
        carry = self.post_cell.initialize_carry(jax.random.key(0), params[:, 0].shape)
        scan = nn.scan(
            lambda c, carry, x: c(carry, x),
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        carry, _ = scan(self.post_cell, carry, params)
        mu, logvar = jnp.split(self.post_out(carry[1]), 2, axis=-1)
        return mu, jnp.clip(logvar, -8.0, 8.0)

    def _start(self, image: Array, z: Array):
        f = self.encoder_img(image)
        ctx = jnp.concatenate([f, z], axis=-1)
        c0, h0 = jnp.split(jnp.tanh(self.dec_init(ctx)), 2, axis=-1)
        return (c0, h0), ctx

    def _step(self, carry, prev: Array, ctx: Array):
        carry, h = self.dec_cell(carry, jnp.concatenate([prev, ctx], axis=-1))
        return carry, self.dec_out(h)

    def teacher_forced(self, image: Array, params: Array, z: Array) -> Array:
        """Predicts p_1..p_{T-1} from the true p_0..p_{T-2}: [B, T, P] -> [B, T-1, P]."""
        carry, ctx = self._start(image, z)
        outs = []
        for t in range(params.shape[1] - 1):  # T is small and static; unrolled for clarity
            carry, y = self._step(carry, params[:, t], ctx)
            outs.append(y)
        return jnp.stack(outs, axis=1)

    def rollout(self, image: Array, z: Array, length: int) -> Array:
        """Autoregressive sampling of p_0..p_{length-1} (p_0 = 0, the source itself)."""
        carry, ctx = self._start(image, z)
        prev = jnp.zeros((image.shape[0], self.param_dim))
        outs = [prev]
        for _ in range(length - 1):
            carry, prev = self._step(carry, prev, ctx)
            outs.append(prev)
        return jnp.stack(outs, axis=1)

    def __call__(self, image: Array, params: Array, z: Array) -> Array:
        self.posterior(params)
        self.rollout(image, z, 2)
        return self.teacher_forced(image, params, z)


def dynamics_loss(
    model: Dynamics, variables, image: Array, params: Array, key: Array, beta: float
) -> tuple[Array, dict[str, Array]]:
    """Teacher-forced MSE + beta * KL for one batch: image [B,H,W,3] in [-1,1], params [B,T,P]."""
    mu, logvar = model.apply(variables, params, method=Dynamics.posterior)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    pred = model.apply(variables, image, params, z, method=Dynamics.teacher_forced)
    mse = jnp.mean(jnp.square(pred - params[:, 1:]))
    kl = jnp.mean(jnp.sum(0.5 * (jnp.exp(logvar) + mu**2 - 1.0 - logvar), axis=-1))
    return mse + beta * kl, {"dyn_mse": mse, "dyn_kl": kl}
