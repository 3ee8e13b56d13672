"""jaxpapers.load / runs.load_run: a run's workdir back to config, method, state and callables.

One test per kind trains (or runs) the method's smoke preset for a step or two into tmp_path and
checks that the loaded object reproduces a number or array the run itself computed.
"""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpapers
from jaxpapers import checkpoint, config_lib, methods, parallel, runs, testing, trainer
from jaxpapers.evals import face_verification as fv

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
    with pytest.raises(FileNotFoundError, match="config.json"):
        jaxpapers.load(str(tmp_path))


def test_load_refuses_unfinished_runs_and_unknown_methods(tmp_path):
    config = config_lib.load_config_file(os.path.join(ROOT, "configs", "rat.py"), "smoke")
    trainer.write_config(config, str(tmp_path / "train"))
    with pytest.raises(FileNotFoundError, match="not a finished rat run .*no checkpoint"):
        jaxpapers.load(str(tmp_path / "train"))
    config = config_lib.load_config_file(
        os.path.join(ROOT, "configs", "granular_avalanche.py"), "smoke"
    )
    trainer.write_config(config, str(tmp_path / "analysis"))
    with pytest.raises(FileNotFoundError, match="not a finished granular_avalanche run"):
        jaxpapers.load(str(tmp_path / "analysis"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"method": "nope"}))
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        jaxpapers.load(str(tmp_path / "other"))


def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def orl_faces(tmp_path, monkeypatch):
    """Generated ORL faces where the face presets read them (no download)."""
    testing.write_orl_faces(str(tmp_path / "data" / "att_faces"))
    monkeypatch.setenv("JAXPAPERS_DATA_DIR", str(tmp_path / "data"))


def test_load_from_occlusion_embeds_like_its_evaluator(tmp_path, orl_faces, smoke_run):
    from jaxpapers.methods.from_occlusion import faces

    evaluate = importlib.import_module("jaxpapers.methods.from_occlusion.evaluate")

    workdir, result = smoke_run("from_occlusion")
    run = jaxpapers.load(workdir)
    assert isinstance(run, runs.Recognizer) and run.config.method == "from_occlusion"
    images, labels, pairs = faces.eval_pairs(run.config)
    emb = run.embed(images, batch_size=32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    variables = {"params": run.state.params["net"], "batch_stats": run.state.batch_stats}
    want = evaluate.embed(jax.device_get(variables), images, run.config, masked=True)["embedding"]
    np.testing.assert_allclose(emb, _unit_rows(want), atol=1e-5)
    # The clean verification accuracy the run reported, from the loaded model's similarities.
    scores = run.similarity(images[pairs[:, 0]], images[pairs[:, 1]])
    acc = fv.verification_accuracy(scores, pairs[:, 2])["mean"]
    assert acc == pytest.approx(result["eval/from/clean_acc"], abs=1e-6)
    # Identification: every gallery image finds itself.
    np.testing.assert_array_equal(run.identify(images[:5], images[:5], labels[:5]), labels[:5])
    assert run.verify(images[:3], images[:3], 0.99).all()


def test_load_synface_verifies_like_its_evaluator(tmp_path, orl_faces, smoke_run):
    from jaxpapers.methods.synface import inputs

    workdir, result = smoke_run("synface")
    run = jaxpapers.load(workdir)
    assert isinstance(run, runs.Recognizer)
    images, labels, pairs = inputs.eval_pairs(run.config)
    scores = run.similarity(images[pairs[:, 0]], images[pairs[:, 1]])
    acc = fv.verification_accuracy(scores, pairs[:, 2])["mean"]
    assert acc == pytest.approx(result["eval/verif_acc"], abs=1e-6)
    first = np.asarray([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])
    probes = np.setdiff1d(np.arange(len(labels)), first)
    hits = run.identify(images[probes], images[first], labels[first]) == labels[probes]
    assert hits.mean() == pytest.approx(result["eval/rank1"], abs=1e-6)


def test_load_stra_predicts_and_embeds(tmp_path, smoke_run):
    from jaxpapers import data

    evaluate = importlib.import_module("jaxpapers.methods.stra.evaluate")

    workdir, result = smoke_run("stra")
    run = jaxpapers.load(workdir)
    assert isinstance(run, runs.Recognizer) and run.step == run.config.num_train_steps
    test = data.load(run.config.data, run.config.data.eval_split)
    logits = run.predict(test["image"], batch_size=64)
    acc = np.mean(np.argmax(logits, -1) == test["label"])
    assert acc == pytest.approx(result["eval/test_accuracy"], abs=1e-6)
    emb = run.embed(test["image"][:10], batch_size=8)
    _, feat = evaluate.jit_forward(run.state, run.config)(test["image"][:10])
    np.testing.assert_allclose(emb, _unit_rows(feat), atol=1e-5)


def test_import_jaxpapers_stays_light():
    import subprocess
    import sys

    code = "import sys, jaxpapers; print([m for m in ('jax', 'flax', 'orbax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow  # like test_trace_vidsgg's evaluation test: the synthetic clips render slowly
def test_load_trace_predicts_scene_graphs_like_its_evaluator(tmp_path, smoke_run):
    from jaxpapers.methods.trace_vidsgg import inputs, metrics

    evaluate = importlib.import_module("jaxpapers.methods.trace_vidsgg.evaluate")
    workdir, result = smoke_run("trace_vidsgg")
    run = jaxpapers.load(workdir)
    assert isinstance(run, runs.Inference)
    src = inputs.make_source(run.config, "test")
    out = run.infer({k: v for k, v in src.items() if k != "rels"}, top_k=5)  # detections only
    frames = evaluate.frame_dicts(src, out, run.config.model.mode)
    got = metrics.evaluate_frames(frames, ks=tuple(run.config.eval_ks), prd_k=1)
    for k, v in got.items():
        assert v == pytest.approx(result[f"eval/with_{k}"], abs=1e-9), k
    graph, k = out["graphs"][0], int(src["num_boxes"][0])
    assert graph["triplets"].shape == (min(5, k * (k - 1)), 3)
    s, o, p = graph["triplets"][0]
    assert s != o and graph["scores"][0] == pytest.approx(float(out["rel"][0, s, o].max()))


def test_load_unifacegan_edits_videos_like_its_evaluator(tmp_path, smoke_run):
    evaluate = importlib.import_module("jaxpapers.methods.unifacegan.evaluate")
    workdir, result = smoke_run("unifacegan")
    run = jaxpapers.load(workdir)
    assert isinstance(run, runs.Inference)
    frames, lm, n_train, _, _ = evaluate.eval_clip(run.config)
    # The held-out self-reconstruction the run scored as rec_l1.
    out = run.infer(frames[n_train:], lm[n_train:], frames[0], lm[0], "self")
    assert out["frames"].dtype == np.uint8 and out["frames"].shape == frames[n_train:].shape
    err = np.abs(out["frames"].astype(np.float32) - frames[n_train:].astype(np.float32))
    assert float(err.mean()) == pytest.approx(result["eval/rec_l1"], rel=1e-6)


@pytest.mark.slow  # the smoke run's evaluation tracks, animates and encodes videos (~4 min)
def test_load_faceanime_animates_the_still_its_evaluator_animated(tmp_path, smoke_run):
    from PIL import Image

    from jaxpapers import viz
    from jaxpapers.methods.faceanime import inference

    workdir, _ = smoke_run("faceanime")
    run = jaxpapers.load(workdir)
    assert isinstance(run, runs.Inference)
    still = inference.read_still(run.config.infer.stills[0])  # what evaluate animated (seed 0)
    out = run.infer(still, seed=0)
    t, s = int(run.config.infer.num_frames), int(run.config.data.image_size)
    assert out["frames"].shape == (t, s, s, 3) and out["still"].shape == (s, s, 3)
    # evaluate's strip: still then 8 frames (top), still then their renders (bottom), scale 2.
    pick = np.linspace(0, t - 1, min(8, t)).astype(int)
    top = np.concatenate([out["still"][None], out["frames"][pick]])
    bottom = np.concatenate([out["still"][None], out["renders"][pick]])
    want = viz.image_grid(np.concatenate([top, bottom]), nrow=len(top))
    want = want.repeat(2, axis=0).repeat(2, axis=1)
    name = run.config.infer.stills[0].replace(":", "")
    with Image.open(os.path.join(workdir, "videos", f"{name}_prediction_strip.png")) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), want)


def test_load_granular_avalanche_returns_its_tables_and_arrays(tmp_path, smoke_run):
    from jaxpapers.methods.granular_avalanche import io

    workdir, flat = smoke_run("granular_avalanche")
    res = jaxpapers.load(workdir)
    assert isinstance(res, runs.Results) and res.state is None
    assert set(res.tables["summary"]) == {"rough", "smooth"}
    for key, value in res.tables["final_metrics"].items():
        assert value == pytest.approx(flat[key], nan_ok=True), key
    assert res.tables["summary"]["rough"]["n_drops"] == flat["eval/rough/n_drops"]
    tracks = io.load_tracks(os.path.join(workdir, "tracks_rough.npz"))
    for key in ("positions", "stress", "strain"):
        np.testing.assert_array_equal(res.arrays["tracks_rough"][key], tracks[key])
    assert res.reports["report"].startswith("# Granular avalanche report")
    from PIL import Image

    for name in ("stress_strain_rough.png", "stress_strain_rough_vs_smooth.png", "drop_vs_xi.png"):
        with Image.open(os.path.join(workdir, name)) as im:  # the matplotlib figures
            assert im.format == "PNG" and im.size == (720, 460), name


def test_load_hedge_defense_predicts_and_defends_like_its_table(tmp_path, smoke_run):
    from jaxpapers import data

    workdir, _ = smoke_run("hedge_defense")
    res = jaxpapers.load(workdir)
    config = res.config
    assert isinstance(res, runs.DefenseResults) and res.base.config.method == "rat"
    table = res.tables["hedge_table"]["table"]
    n, bs = int(config.eval.num_examples), int(config.eval.batch_size)
    test = data.load(res.base.config.data, "test")
    x, y = test["image"][:n], test["label"][:n]
    clean = np.argmax(res.base.predict(x, batch_size=bs), -1) == y
    assert clean.mean() == pytest.approx(table["clean"]["none"])
    # The table's clean-row hedge column: its key is fold_in(run key, 1000 + column 2), folded
    # in per batch start as defended_predict does.
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), 0), 1002)
    defended = res.defended_predict(x, key, batch_size=bs)
    assert defended.shape == (n, res.base.config.model.num_classes)
    assert np.mean(np.argmax(defended, -1) == y) == pytest.approx(table["clean"]["hedge"])
