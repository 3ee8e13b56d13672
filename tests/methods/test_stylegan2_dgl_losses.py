"""Losses, regularizers (lib.gan), architecture sizes and the DGL term of stylegan2_dgl."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import config_lib
from jaxpapers.layers import stylegan2 as M
from jaxpapers.lib import dgl
from jaxpapers.lib import gan as losses
from jaxpapers.methods.stylegan2_dgl import steps
from jaxpapers.methods.stylegan2_dgl.evaluate import report


def test_r1_penalty_matches_finite_differences():
    # float64 so central differences are accurate to ~1e-8 (lrelu kinks are not crossed).
    with jax.enable_x64(True):
        d = M.Discriminator(resolution=8, fmap_base=32, fmap_max=4, mbstd_group_size=2)
        x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1), jnp.float64)
        p = d.init(jax.random.key(1), x)["params"]
        p = jax.tree.map(lambda a: a.astype(jnp.float64), p)
        fn = jax.jit(lambda v: jnp.sum(d.apply({"params": p}, v)))
        pen = np.asarray(losses.r1_penalty(lambda v: d.apply({"params": p}, v), x))
        flat = np.asarray(x).reshape(-1)
        eps = 1e-5
        g = np.zeros_like(flat)
        for i in range(flat.size):
            e = np.zeros_like(flat)
            e[i] = eps
            g[i] = (fn((flat + e).reshape(x.shape)) - fn((flat - e).reshape(x.shape))) / (2 * eps)
    ref = np.sum(g.reshape(x.shape) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(pen, ref, rtol=1e-5)


def test_alpha_zero_is_exactly_the_vanilla_loss_and_gradient():
    logits = jax.random.normal(jax.random.key(0), (16,))
    t_logits = jax.random.normal(jax.random.key(1), (16,)) * 3

    def total(a, b, alpha):
        return dgl.generator_loss(losses.g_nonsaturating, a, b, alpha)[0]

    np.testing.assert_array_equal(total(logits, t_logits, 0.0), losses.g_nonsaturating(logits))
    ga = jax.grad(total, argnums=0)(logits, t_logits, 0.0)
    gv = jax.grad(losses.g_nonsaturating)(logits)
    np.testing.assert_array_equal(ga, gv)
    # With alpha > 0 the teacher term is added with weight alpha.
    tot, term = dgl.generator_loss(losses.g_nonsaturating, logits, t_logits, 0.5)
    np.testing.assert_allclose(tot, losses.g_nonsaturating(logits) + 0.5 * term, rtol=1e-6)
    np.testing.assert_allclose(term, np.mean(np.log1p(np.exp(-np.asarray(t_logits)))), rtol=1e-5)


def test_path_length_matches_explicit_jacobian():
    w = jax.random.normal(jax.random.key(0), (2, 3, 4))
    a = jax.random.normal(jax.random.key(1), (3, 4, 2 * 2 * 1))

    def synth(v):  # A small nonlinear "generator" ws -> images [N, 2, 2, 1].
        return jnp.tanh(jnp.einsum("nlw,lwp->np", v, a)).reshape(-1, 2, 2, 1)

    key = jax.random.key(2)
    got = losses.path_lengths(synth, w, key, (2, 2, 2, 1))
    y = jax.random.normal(key, (2, 2, 2, 1)) / 2.0
    for i in range(2):
        jac = jax.jacobian(lambda v: synth(v[None])[0].reshape(-1))(w[i])  # [4, 3, 4]
        jty = np.einsum("p,plw->lw", np.asarray(y[i]).reshape(-1), np.asarray(jac))
        ref = np.sqrt(np.mean(np.sum(jty**2, axis=1)))
        np.testing.assert_allclose(got[i], ref, rtol=1e-5)
    pen, new_mean = losses.path_length_penalty(got, jnp.asarray(1.0), 0.01)
    np.testing.assert_allclose(new_mean, 1.0 + 0.01 * (float(jnp.mean(got)) - 1.0), rtol=1e-6)
    np.testing.assert_allclose(pen, (got - new_mean) ** 2, rtol=1e-6)


def test_official_sizes_config_f_and_dgl_student():
    cfg = config_lib.load_config_file("configs/stylegan2_dgl.py", "ffhq1024")
    c = report(cfg)
    # StyleGAN2 config-f 1024: 30.37 M G params (mapping included); DGL student k=2: 11.06 M.
    assert round(c["teacher_g_params"] / 1e6, 2) == 30.37
    assert round(c["student_g_params"] / 1e6, 2) == 11.06
    assert round(c["teacher_d_params"] / 1e6, 2) == 29.01
    assert c["student_d_params"] == c["teacher_d_params"]  # student D full width by default
    assert 0.3 < c["g_param_ratio"] < 0.4  # "nearly 1/3"
    assert 0.2 < c["g_mac_ratio"] < 0.3
    # Mapping and the constant stay full size in the student.
    assert c["student_g_mapping_params"] == c["teacher_g_mapping_params"]


def test_truncation_and_style_mixing():
    g = M.Generator(
        resolution=8, img_channels=1, z_dim=8, w_dim=8, mapping_layers=2, fmap_base=32, fmap_max=4
    )
    z = jax.random.normal(jax.random.key(0), (3, 8))
    p = g.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, z)["params"]
    w_avg = jnp.ones((8,))
    ws = g.apply({"params": p}, z, method=g.mapping)
    wt = g.apply({"params": p}, z, w_avg, 0.5, method=g.mapping)
    assert ws.shape == (3, M.num_ws(8), 8)
    np.testing.assert_allclose(wt, w_avg + 0.5 * (ws - w_avg), rtol=1e-6)
    mixed = steps.run_mapping(g, p, z, jax.random.key(3), mixing_prob=1.0)
    # With p=1 there is a crossover: early layers from z, later ones from a second latent.
    same = np.all(np.isclose(mixed, ws), axis=(0, 2))
    assert same[0] and not same[-1] and np.all(np.diff(same.astype(int)) <= 0)


def test_r1_update_is_one_adam_step_on_the_scaled_penalty():
    """Lazy R1: (gamma / 2) * E||grad_x D||^2 * interval as its own optimizer update."""
    import optax

    d = M.Discriminator(resolution=8, fmap_base=32, fmap_max=4, mbstd_group_size=2)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    p = d.init(jax.random.key(1), x)["params"]
    tx = optax.adam(1e-3)
    opt = tx.init(p)

    def apply(q, v):
        return d.apply({"params": q}, v)

    p1, opt1, pen = losses.r1_update(apply, p, opt, tx, x, gamma=0.5, interval=16)
    grads = jax.grad(lambda q: jnp.mean(losses.r1_penalty(lambda v: apply(q, v), x)) * 0.25 * 16)(p)
    upd, opt2 = tx.update(grads, opt, p)
    want = optax.apply_updates(p, upd)
    for u, v in zip(jax.tree.leaves((p1, opt1)), jax.tree.leaves((want, opt2)), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        pen, jnp.mean(losses.r1_penalty(lambda v: apply(p, v), x)), rtol=1e-6
    )
    assert float(pen) > 0
