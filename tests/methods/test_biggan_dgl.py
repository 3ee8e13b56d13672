"""Jit, phase schedule, frozen teacher, DGL term and evaluate of biggan_dgl (smoke preset)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib, methods, parallel, trainer
from jaxpapers.lib import dgl
from jaxpapers.methods.biggan_dgl import losses, steps
from jaxpapers.methods.biggan_dgl.evaluate import make_sampler, sample_z, sampled_generator
from jaxpapers.methods.biggan_dgl.model import make_nets

CFG = "configs/biggan_dgl.py"


def _equal(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


@pytest.fixture(scope="module")
def student_run(jit_check):
    """Teacher given (teacher.steps=0): step 0 is stage 1, step 1 stage 2 (D_T term on)."""
    cfg = config_lib.load_config_file(CFG, "smoke,teacher.steps=0,num_train_steps=2")
    state, metrics = jit_check("biggan_dgl", cfg)
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        init, _ = trainer.init(methods.get("biggan_dgl"), cfg, mesh)
    return cfg, jax.device_get(init), jax.device_get(state), metrics


def test_biggan_dgl_train_step_jit(student_run):
    _, _, _, metrics = student_run
    assert [int(m["phase"]) for m in metrics] == [1, 2]
    assert float(metrics[0]["teacher_term"]) == 0.0 and float(metrics[1]["teacher_term"]) != 0.0


def test_teacher_params_bit_identical_student_trains(student_run):
    _, init, state, _ = student_run
    t0, t1 = init.teacher, state.teacher
    for name in ("g", "g_vars", "d", "g_ema", "g_ema_vars", "g_opt", "d_opt"):
        assert _equal(getattr(t0, name), getattr(t1, name)), f"teacher {name} changed"
    # Official behaviour we keep (student.teacher_sn_update=True): D_T's SN vectors iterate in
    # stage 2, its weights do not.
    assert not _equal(t0.d_vars, t1.d_vars)
    for name in ("g", "d", "g_vars", "d_vars", "g_ema"):
        assert not _equal(getattr(init.student, name), getattr(state.student, name)), name


def test_evaluate_writes_class_grid_and_counts(student_run, tmp_path):
    cfg, _, state, _ = student_run
    out = methods.get("biggan_dgl").evaluate(state, cfg, str(tmp_path))
    assert os.path.exists(tmp_path / "samples_student_step2.png")
    # No teacher was trained or loaded in this run (teacher.steps=0, no init_from): no grid.
    assert not os.path.exists(tmp_path / "samples_teacher_step2.png")
    assert out["student_g_params"] < out["teacher_g_params"]
    assert out["student_d_params"] == out["teacher_d_params"]  # student D keeps full width


def test_lam_zero_is_vanilla_and_teacher_gets_no_gradient():
    cfg = config_lib.load_config_file(CFG, "smoke")
    st = steps.init_state(jax.random.key(0), cfg)
    g_net, d_net = make_nets(cfg, "student")
    _, t_net = make_nets(cfg, "teacher")
    z, y = steps.sample_zy(jax.random.key(1), 8, cfg)
    s, t = st.student, st.teacher

    @jax.jit
    def grads(lam, g, td):
        def loss(g, td):
            fake = g_net.apply({"params": g, **s.g_vars}, z, y, train=False)
            ls = d_net.apply({"params": s.d, **s.d_vars}, fake, y)
            lt = t_net.apply({"params": td, **t.d_vars}, fake, y)
            return dgl.generator_loss(losses.hinge_g, ls, lt, lam)[0]

        vanilla = jax.grad(
            lambda g: losses.hinge_g(
                d_net.apply(
                    {"params": s.d, **s.d_vars},
                    g_net.apply({"params": g, **s.g_vars}, z, y, train=False),
                    y,
                )
            )
        )(g)
        return jax.grad(loss, argnums=(0, 1))(g, td), vanilla

    (g0, _), vanilla = grads(0.0, s.g, t.d)
    assert _equal(g0, vanilla)  # lam = 0: exactly the vanilla hinge generator gradient
    (g1, td1), _ = grads(0.1, s.g, t.d)
    assert not _equal(g1, vanilla)
    # The step only differentiates G's params; D_T params would get a gradient if they were
    # differentiated, which is why the step never passes them to the optimiser.
    assert any(np.abs(np.asarray(x)).max() > 0 for x in jax.tree.leaves(td1))


def test_batch_must_split_over_d_steps():
    cfg = config_lib.load_config_file(CFG, "smoke,batch_size=10,gan.num_d_steps=4")
    with pytest.raises(ValueError, match="multiple of"):
        steps.d_batch(cfg)


def test_truncated_sampling_is_bounded():
    z = sample_z(jax.random.key(0), 512, 16, 0.5)
    assert float(jnp.abs(z).max()) <= 0.5 and float(jnp.abs(z).max()) > 0.4


def test_sampler_uses_ema_or_raw_generator():
    cfg = config_lib.load_config_file(CFG, "smoke")
    st = steps.init_state(jax.random.key(0), cfg).student
    st = st.replace(g_ema=jax.tree.map(lambda x: 0.5 * x, st.g_ema))
    g_net, _ = make_nets(cfg, "student")
    z, y = jnp.ones((2, cfg.model.dim_z)), jnp.array([0, 1])
    raw = g_net.apply({"params": st.g, **st.g_vars}, z, y, train=False)
    ema = g_net.apply({"params": st.g_ema, **st.g_ema_vars}, z, y, train=False)
    sample = make_sampler(cfg, "student", *sampled_generator(cfg, st))
    np.testing.assert_allclose(sample(z, y), ema, atol=1e-5)
    with cfg.unlocked():
        cfg.eval.use_ema = False
    sample = make_sampler(cfg, "student", *sampled_generator(cfg, st))
    np.testing.assert_allclose(sample(z, y), raw, atol=1e-5)
    assert float(jnp.max(jnp.abs(raw - ema))) > 1e-3


def test_imagenet128_preset_is_the_official_256x8_accumulation():
    """launch_BigGAN_bs256x8.sh: batch 256, 8 G and 8 D accumulations; step counts in micro-steps
    (8 per iteration), lr schedules in updates."""
    c = config_lib.load_config_file(CFG, "imagenet128")
    assert c.batch_size == 256 and c.gan.num_d_steps == 1
    assert c.optim.g.accum_steps == c.optim.d.accum_steps == 8
    assert c.num_train_steps == 8 * 150_000 and c.student.stage1_steps == 8 * 20_000
    assert c.gan.ema_start == 8 * 20_000
