"""FaceAnime 3DDP: parameterisation round trip, output shapes, teacher-forced loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers.data import face_video
from jaxpapers.methods.faceanime import dynamics


@pytest.fixture(scope="module")
def clip():
    v = face_video.load_face_video("carphone_pristine.mp4", 32)
    return v.frames[v.found][:40], v.landmarks[v.found][:40].astype(np.float32)


def test_params_roundtrip_reproduces_tracked_geometry(clip):
    _, lm = clip
    t = 12
    geom = dynamics.fit_geometry(lm[:t], 32, k=t - 1, window=6)  # full-rank expression basis
    p = dynamics.sequence_params(lm[:t], geom)
    assert p.shape == (t, 7 + t - 1) and isinstance(p, np.ndarray)
    np.testing.assert_allclose(p[0], 0.0, atol=1e-4)  # relative to the source frame
    verts = dynamics.params_to_vertices(jnp.asarray(p), jnp.asarray(lm[0]), geom)
    np.testing.assert_allclose(np.asarray(verts), lm[:t], atol=0.05)  # pixels
    # jax path equals numpy path
    pj = dynamics.sequence_params(jnp.asarray(lm[:t]), jax.tree.map(jnp.asarray, geom))
    np.testing.assert_allclose(np.asarray(pj), p, atol=1e-3)


def test_shapes_and_teacher_forced_loss(clip):
    frames, lm = clip
    geom = dynamics.fit_geometry(lm, 32, k=4, window=6)
    seq = np.stack([dynamics.sequence_params(lm[s : s + 6], geom) for s in (0, 5, 10, 20)])
    img = jnp.asarray(frames[[0, 5, 10, 20]], jnp.float32) / 127.5 - 1
    net = dynamics.Dynamics(param_dim=seq.shape[-1], hidden=8, latent=2, img_width=4)
    z = jnp.zeros((4, 2))
    v = net.init(jax.random.key(0), img, jnp.asarray(seq), z)
    tf = net.apply(v, img, jnp.asarray(seq), z, method=dynamics.Dynamics.teacher_forced)
    ro = net.apply(v, img, z, 9, method=dynamics.Dynamics.rollout)
    assert tf.shape == (4, 5, seq.shape[-1]) and ro.shape == (4, 9, seq.shape[-1])
    np.testing.assert_array_equal(ro[:, 0], 0.0)
    key = jax.random.key(3)
    loss, aux = dynamics.dynamics_loss(net, v, img, jnp.asarray(seq), key, beta=0.5)
    mu, logvar = net.apply(v, jnp.asarray(seq), method=dynamics.Dynamics.posterior)
    zz = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    pred = net.apply(v, img, jnp.asarray(seq), zz, method=dynamics.Dynamics.teacher_forced)
    mse = jnp.mean((pred - seq[:, 1:]) ** 2)
    kl = jnp.mean(jnp.sum(0.5 * (jnp.exp(logvar) + mu**2 - 1 - logvar), -1))
    np.testing.assert_allclose(loss, mse + 0.5 * kl, rtol=1e-5)
    np.testing.assert_allclose(aux["dyn_mse"], mse, rtol=1e-5)
    # Teacher forcing: changing the LAST true frame does not change any prediction.
    seq2 = seq.copy()
    seq2[:, -1] += 5.0
    tf2 = net.apply(v, img, jnp.asarray(seq2), z, method=dynamics.Dynamics.teacher_forced)
    np.testing.assert_allclose(tf2, tf, atol=1e-6)
    # A few Adam steps lower the teacher-forced loss.
    tx = optax.adam(1e-2)
    params, opt = v, tx.init(v)

    @jax.jit
    def step(params, opt, k):
        (lv, _), g = jax.value_and_grad(dynamics.dynamics_loss, argnums=1, has_aux=True)(
            net, params, img, jnp.asarray(seq), k, 0.01
        )
        u, opt = tx.update(g, opt)
        return optax.apply_updates(params, u), opt, lv

    ls = []
    for i in range(30):
        params, opt, lv = step(params, opt, jax.random.key(i))
        ls.append(float(lv))
    assert np.mean(ls[-5:]) < 0.7 * np.mean(ls[:3]), ls
