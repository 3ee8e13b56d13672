"""jaxpapers.load / runs.load_run: a run's workdir back to config, method, state and callables."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpapers
from jaxpapers import checkpoint, config_lib, methods, parallel, runs, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_run(workdir: str, name: str, step: int, extra: str = ""):
    """A tiny finished run without training: config.json and a checkpoint of a marked state."""
    config = config_lib.load_config_file(
        os.path.join(ROOT, "configs", f"{name}.py"), "smoke" + extra
    )
    method = methods.get(config.method)
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, _ = trainer.init(method, config, mesh)
        # Shift every float leaf so that a fresh init cannot pass for the restored state.
        state = jax.tree.map(
            lambda x: x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x, state
        )
        state = state.replace(step=jnp.asarray(step, state.step.dtype))
        ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
        ckpt.save(step, state, force=True)
        ckpt.close()
    trainer.write_config(config, workdir)
    return config, method, state


def test_load_classifier_run_predicts_like_its_logits_fn(tmp_path):
    workdir = str(tmp_path / "rat")
    config, method, state = _write_run(workdir, "rat", step=3)
    run = jaxpapers.load(workdir)
    assert run.config.method == "rat" and run.method is method and run.step == 3
    for a, b in zip(jax.tree.leaves(run.state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    images = np.random.default_rng(0).integers(0, 256, (11, *config.data.image_shape), np.uint8)
    logits = run.predict(images, batch_size=4)  # 11 points: a padded last batch
    want = method.logits_fn(state, config)(jnp.asarray(images, jnp.float32) / 255.0)
    assert logits.shape == want.shape == (11, config.model.num_classes)
    np.testing.assert_allclose(logits, np.asarray(want), rtol=1e-5, atol=1e-5)
    with pytest.raises(AttributeError, match="not a GAN"):
        run.sampler  # noqa: B018


def test_finished_run_trains_only_when_asked_and_unfinished(tmp_path, monkeypatch):
    workdir = str(tmp_path / "rat")
    config, _, _ = _write_run(workdir, "rat", step=3)
    trained = []
    monkeypatch.setattr(trainer, "train", lambda c, w: trained.append(w))
    assert runs.finished_run(workdir).step == 3 and trained == []  # no config: restore only
    assert runs.finished_run(workdir, config).step == 3 and trained == [workdir]  # unfinished
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
        f.write("{}")
    runs.finished_run(workdir, config)
    assert trained == [workdir]  # finished: reused as it is


def test_load_gan_run_restores_state_and_samples(tmp_path):
    workdir = str(tmp_path / "gan")
    config, method, state = _write_run(workdir, "stylegan2_dgl", step=2)
    run = runs.load_run(workdir)
    assert run.config.method == "stylegan2_dgl" and run.step == 2
    for a, b in zip(jax.tree.leaves(run.state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The sampler is the method's gan_sampler on the restored state (equal to the saved one).
    sample = run.sampler
    got = sample(jax.random.key(1), 4)
    r, c = config.model.resolution, config.model.img_channels
    assert got.shape == (4, r, r, c) and np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, sample(jax.random.key(1), 4))
    assert not np.array_equal(got, sample(jax.random.key(2), 4))
    with pytest.raises(AttributeError, match="not a classifier"):
        run.predict(np.zeros((1, 4, 4, 1), np.uint8))


def test_load_run_refuses_a_directory_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        runs.load_run(str(tmp_path))


def test_import_jaxpapers_stays_light():
    import subprocess
    import sys

    code = "import sys, jaxpapers; print([m for m in ('jax', 'flax', 'orbax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
