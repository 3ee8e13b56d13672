"""SynFace: the standard jit test (GAN phase then recognition phase of one compiled step)."""

import jax
import numpy as np
import pytest

from jaxpapers import config_lib, methods, testing
from jaxpapers.methods.synface import inputs, steps, synthesis


def _smoke(arg="smoke"):
    return config_lib.load_config_file("configs/synface.py", arg)


def _batches(config, n):
    # Tests never read the ORL folder: random real faces + a real synthesis plan.
    s = config.synth
    plan = synthesis.synthesis_plan(s.num_ids, s.per_id, s.seed, s.mixup)
    r, c, ids = config.gen.resolution, config.gen.img_channels, config.data.n_train_ids
    rng = np.random.default_rng(0)
    real = {
        "image": rng.integers(0, 256, (ids * 2, r, r, c), dtype=np.uint8),
        "label": np.repeat(np.arange(ids), 2).astype(np.int32),
    }
    rows = inputs.pair_rows(plan, real, 0)
    b = config.batch_size
    return [{k: v[i * b : (i + 1) * b] for k, v in rows.items()} for i in range(n)]


def test_synface_train_step_jit():
    config = _smoke()
    assert methods.get("synface").kind == "train"
    state, metrics = testing.check_train_step_jit(
        "synface", config, steps=2, batches=_batches(config, 2)
    )
    assert [float(m["phase"]) for m in metrics] == [0.0, 1.0]
    assert float(metrics[0]["d_loss"]) > 0 and float(metrics[0]["rec_loss"]) == 0
    assert float(metrics[1]["rec_loss"]) > 0 and float(metrics[1]["d_loss"]) == 0
    psi = float(metrics[1]["psi"])
    assert 0.0 <= psi <= 1.0 and abs(psi * 20 - round(psi * 20)) < 1e-4


def test_config_variants_and_pairing():
    c = _smoke("smoke,gen.steps=0,rec_steps=5,dm.enabled=False,synth.mixup=False")
    assert c.num_train_steps == 5 and c.optim.rec.milestones == (2, 3)
    rows = _batches(c, 1)[0]
    assert np.all(rows["syn_phi"] == 1.0)
    d = _smoke()
    assert d.num_train_steps == d.gen.steps + d.rec_steps
    with d.unlocked():  # what a late --config.gen.steps=0 flag would leave behind
        d.gen.steps = 0
    with pytest.raises(ValueError, match="preset string"):
        steps.init_state(jax.random.key(0), d)


def test_lfw_pairs_file_is_read_at_generator_resolution(tmp_path):
    from PIL import Image

    from jaxpapers.evals import face_verification as fv

    for name in ("Ann_A", "Bob_B"):
        (tmp_path / name).mkdir()
        for k in (1, 2):
            Image.fromarray(np.full((20, 18, 3), 40 * k, np.uint8)).save(
                tmp_path / name / f"{name}_{k:04d}.jpg"
            )
    fv.write_pairs(
        str(tmp_path / "pairs.txt"), [("Ann_A", 1, "Ann_A", 2), ("Ann_A", 1, "Bob_B", 2)] * 5
    )
    c = _smoke(f"smoke,eval.pairs_file={tmp_path / 'pairs.txt'},eval.lfw_dir={tmp_path}")
    images, labels, pairs = inputs.eval_pairs(c)
    r = c.gen.resolution
    assert images.shape == (3, r, r, c.gen.img_channels) and np.all(labels == -1)
    assert pairs.shape == (10, 3) and pairs[:, 2].tolist() == [1, 0] * 5


def test_lazy_r1_is_a_static_phase_and_no_step_has_a_conditional():
    """R1 runs in generator steps 0, d_reg_interval, ... as its own compiled variant."""
    from jaxpapers import parallel, trainer

    config = _smoke("smoke,gen.steps=3,rec_steps=1")
    method = methods.get("synface")
    with config.unlocked():
        config.gen_loss.d_reg_interval = 2
    assert [tuple(method.phase(config, s)) for s in range(4)] == [
        (0, True),
        (0, False),
        (0, True),
        (1, False),
    ]
    mesh = parallel.make_mesh()
    batch = parallel.global_batch(_batches(config, 1)[0], mesh)
    with jax.set_mesh(mesh):
        state, shardings = trainer.init(method, config, mesh)
        step_fn = trainer.compile_step(method, config, mesh, shardings)
        hlo = {s: step_fn.jitted(s).lower(state, batch).as_text() for s in (0, 1, 3)}
    for s, text in hlo.items():  # R1 step, plain GAN step, recognition step.
        assert "conditional" not in text and "stablehlo.case" not in text, s
    # The R1 variant carries the extra D update (a second-order gradient); the plain one not.
    assert len(hlo[0]) > 1.15 * len(hlo[1])
