"""Jit, phase schedule, frozen teacher, load_init and evaluate of stylegan2_dgl (smoke preset)."""

import os

import flax.serialization
import jax
import numpy as np
import pytest

from jaxpapers import config_lib, methods, parallel, testing, trainer

CFG = "configs/stylegan2_dgl.py"


def test_stylegan2_dgl_train_step_jit(jit_check):
    # Student only (teacher from init_from): step 0 is stage 1, step 1 stage 2 (D_T term on).
    cfg = config_lib.load_config_file(CFG, "smoke,teacher.steps=0,num_train_steps=2")
    _, metrics = jit_check("stylegan2_dgl", cfg)
    assert [int(m["phase"]) for m in metrics] == [1, 2]
    assert float(metrics[0]["teacher_term"]) == 0.0 and float(metrics[1]["teacher_term"]) > 0.0


@pytest.fixture(scope="module")
def job():
    """The whole smoke job (teacher, stage 1, stage 2, stage 2): one executable per phase."""
    cfg = config_lib.load_config_file(CFG, "smoke")
    method = methods.get("stylegan2_dgl")
    mesh = parallel.make_mesh()
    batches = testing.make_batches(method, cfg, cfg.num_train_steps)
    with jax.set_mesh(mesh):
        state, shardings = trainer.init(method, cfg, mesh)
        step_fn = trainer.compile_step(method, cfg, mesh, shardings)
        states, metrics = [jax.device_get(state)], []
        for i, b in enumerate(batches):
            state, m = step_fn(state, parallel.global_batch(b, mesh), i)
            states.append(jax.device_get(state))
            metrics.append(jax.device_get(m))
        # (stage, pl, r1): the lazy regularizers run in the first local step of each stage.
        assert step_fn.phases_seen() == [(0, True, True), (1, True, True), (2, False, False)]
        assert step_fn.num_compiles() == 3, "a phase must compile once and never retrace"
        # No conditional anywhere in the programs: the regularizers are static variants.
        for i in range(3):  # Steps 0, 1, 2 are the three phases above.
            hlo = step_fn.jitted(i).lower(state, parallel.global_batch(b, mesh)).as_text()
            assert "conditional" not in hlo and "stablehlo.case" not in hlo
    return cfg, method, state, states, metrics


def test_lazy_regularizers_follow_the_local_step():
    """Path length every g_reg_interval, R1 every d_reg_interval steps of each stage."""
    cfg = config_lib.load_config_file(CFG, "scratch")
    method = methods.get("stylegan2_dgl")
    t = cfg.teacher.steps
    seen = [method.phase(cfg, s) for s in range(t + 40)]
    for s, p in enumerate(seen):
        local = s if s < t else s - t
        assert p.stage == (0 if s < t else 1)
        assert p.pl == (local % cfg.loss.g_reg_interval == 0)
        assert p.r1 == (local % cfg.loss.d_reg_interval == 0)


def _equal(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


def test_phases_follow_the_step_and_teacher_stays_frozen(job):
    cfg, _, _, states, metrics = job
    assert [int(m["phase"]) for m in metrics] == [0, 1, 2, 2]
    for m in metrics:
        assert all(np.isfinite(v) for v in m.values())
    # Phase 0 trains the teacher only.
    assert not _equal(states[0].teacher.g, states[1].teacher.g)
    assert not _equal(states[0].teacher.d, states[1].teacher.d)
    assert _equal(states[0].student, states[1].student)
    # Student phases: every teacher array (params, EMA, Adam moments, stats) bit-identical.
    for s in states[2:]:
        assert _equal(states[1].teacher, s.teacher)
    for a, b in zip(states[1:], states[2:], strict=False):
        assert not _equal(a.student.g, b.student.g) and not _equal(a.student.d, b.student.d)
    # The D_T term is only on in stage 2.
    assert float(metrics[1]["teacher_term"]) == 0.0
    assert float(metrics[2]["teacher_term"]) > 0.0


def test_load_init_puts_a_teacher_checkpoint_into_the_state(job):
    cfg, method, _, states, _ = job
    tree = {"teacher": flax.serialization.to_state_dict(states[1].teacher)}
    cfg0 = config_lib.load_config_file(CFG, "smoke,teacher.steps=0")
    fresh = jax.jit(lambda k: method.init_state(k, cfg0))(jax.random.key(5))
    loaded = method.load_init(fresh, tree, cfg0)
    for name in ("g", "d", "g_ema", "w_avg"):
        assert _equal(getattr(loaded.teacher, name), getattr(states[1].teacher, name))
    with pytest.raises(ValueError, match="teacher.steps=0"):
        method.load_init(fresh, tree, cfg)
    bad = {"teacher": dict(tree["teacher"], d={"b4_out": tree["teacher"]["d"]["b4_out"]})}
    with pytest.raises(ValueError, match="does not match"):
        method.load_init(fresh, bad, cfg0)


def test_evaluate_writes_grids_and_counts(job, tmp_path, capsys):
    cfg, method, state, _, _ = job
    out = method.evaluate(state, cfg, str(tmp_path))
    printed = capsys.readouterr().out
    files = os.listdir(tmp_path)
    step = int(jax.device_get(state.step))
    for name in (
        f"samples_teacher_step{step}.png",
        f"samples_student_step{step}.png",
        f"teacher_vs_student_step{step}.png",
        "param_mac_counts.json",
        f"teacher_vs_student_step{step}.md",
    ):
        assert name in files, (name, files)
    table = open(tmp_path / f"teacher_vs_student_step{step}.md").read().splitlines()
    assert [r.split("|")[1].strip() for r in table[2:]] == ["teacher", "student"]
    assert f"{int(out['student_g_params']):,} ({out['g_param_ratio']:.3f})" in table[3]
    # The console ends with the same table and the pictures, the comparison first.
    assert "\n".join(table) in printed
    shown = printed.split("pictures:")[1].split()
    assert shown[0] == str(tmp_path / f"teacher_vs_student_step{step}.png")
    assert str(tmp_path / f"samples_student_step{step}.png") in shown
    assert 0 < out["g_param_ratio"] < 1  # smoke student is half width
    assert out["student_d_params"] == out["teacher_d_params"]


def test_every_preset_parses():
    mod_presets = ("default", "uncompressed", "teacher", "scratch", "ffhq256", "ffhq1024", "smoke")
    for p in mod_presets:
        c = config_lib.load_config_file(CFG, p)
        assert c.method == "stylegan2_dgl"
        assert c.optim.g.lr_multipliers == (("mapping/.*", 0.01),)
    wide = config_lib.load_config_file(CFG, "uncompressed")
    assert (wide.student.g_divisor, wide.student.mapping_layers) == (1, 0)  # 0: the teacher's
    assert wide.teacher.weights == config_lib.load_config_file(CFG, "default").teacher.weights
    with pytest.raises(ValueError, match="Unknown preset"):
        config_lib.load_config_file(CFG, "nope")


def test_default_student_meets_the_size_targets():
    """The default preset's student: <= 40% of G's params and <= 30% of its MACs (mapping
    included), counted from the real param trees and the layer shapes."""
    import importlib

    ev = importlib.import_module("jaxpapers.methods.stylegan2_dgl.evaluate")
    cfg = config_lib.load_config_file(CFG)
    assert cfg.teacher.steps == 0 and cfg.teacher.weights.endswith(".msgpack")
    r = ev.report(cfg)
    assert r["g_param_ratio"] <= 0.40 and r["g_mac_ratio"] <= 0.30, r
    assert r["student_g_mapping_params"] < r["teacher_g_mapping_params"]
    # Mapping MACs: z_dim * w_dim for the first FC, w_dim^2 for the others.
    g, _ = ev.make_nets(config_lib.load_config_file(CFG, "smoke,model.z_dim=24"), "teacher")
    assert ev.generator_macs(g)["mapping"] == 24 * 16 + 16 * 16
