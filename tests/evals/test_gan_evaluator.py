"""FD-FMNIST behaviour on real data, the evaluator API/JSON/cache, and the Inception refusal."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxpapers import data, parallel
from jaxpapers.evals.gan import evaluator, feature_nets, metrics, stats_cache

N = 1000  # images per set: enough for a stable 128-d FD ordering, small enough for 2 CPU cores


@pytest.fixture(scope="module")
def fmnist():
    cfg = ml_collections.ConfigDict(dict(name="fashion_mnist"))
    return data.load(cfg, "train")["image"][:4000], data.load(cfg, "test")["image"][:4000]


@pytest.fixture(scope="module")
def extractor():
    return feature_nets.Extractor(feature_nets.fmnist_feature_net(), batch_size=200)


def _fd(extractor, a_u8, b_u8):
    fa, _ = extractor.array(a_u8)
    fb, _ = extractor.array(b_u8)
    return metrics.frechet_distance(*metrics.feature_stats(fa), *metrics.feature_stats(fb))


def _blur(images_u8, passes):
    x = images_u8.astype(np.float32)
    for _ in range(passes):  # 3x3 box blur, edge-padded
        p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        x = sum(p[:, i : i + 28, j : j + 28] for i in range(3) for j in range(3)) / 9.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def test_fd_fmnist_small_for_real_and_grows_with_corruption(fmnist, extractor):
    train, test = fmnist[0][:N], fmnist[1][:N]
    rng = np.random.default_rng(0)
    real_vs_real = _fd(extractor, test, train)
    noisy = [
        _fd(
            extractor, test, np.clip(train + rng.normal(0, s, train.shape), 0, 255).astype(np.uint8)
        )
        for s in (20.0, 50.0, 100.0)
    ]
    blurred = [_fd(extractor, test, _blur(train, k)) for k in (1, 3)]
    perm = rng.permutation(28 * 28)
    shuffled = train.reshape(N, -1)[:, perm].reshape(train.shape)
    fd_shuffled = _fd(extractor, test, shuffled)
    assert real_vs_real < noisy[0] < noisy[1] < noisy[2], (real_vs_real, noisy)
    assert real_vs_real < blurred[0] < blurred[1], (real_vs_real, blurred)
    assert fd_shuffled > 5 * max(noisy[0], blurred[0]), (fd_shuffled, noisy, blurred)
    assert real_vs_real < 0.1 * fd_shuffled


def _cfg(tmp_path, **kw):
    cfg = evaluator.default_eval_config()
    cfg.update(
        dict(
            num_samples=500,
            batch_size=200,
            real_num_samples=1000,
            kid_subsets=10,
            kid_subset_size=200,
            pr_num_samples=500,
            stats_dir=str(tmp_path / "stats"),
        )
    )
    cfg.update(kw)
    return cfg


def test_evaluate_generator_api_json_and_cache(fmnist, tmp_path, monkeypatch):
    pool = jnp.asarray(fmnist[0][:2000].astype(np.float32) / 127.5 - 1.0)
    calls = []

    def sample_fn(key, n):
        calls.append(n)
        return pool[jax.random.choice(key, pool.shape[0], (n,), replace=False)]

    cfg = _cfg(tmp_path)
    res = evaluator.evaluate_generator(sample_fn, cfg, str(tmp_path / "w"))
    assert set(res) == {
        "fd",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "is_fmnist_mean",
        "is_fmnist_std",
        "class_share_min",
        "class_share_max",
    }
    assert calls == [200, 200, 200]  # 500 fakes in batches of 200 (last one truncated)
    assert all(np.isfinite(v) for v in res.values())
    assert res["precision"] > 0.5 and res["recall"] > 0.5
    assert 1.0 < res["is_fmnist_mean"] <= 10.0
    assert 0.04 < res["class_share_min"] < 0.1 < res["class_share_max"] < 0.18  # real: balanced
    report = json.load(open(tmp_path / "w" / "gan_metrics_fmnist.json"))
    assert report["metrics"] == res and report["num_fake"] == 500
    key = report["real_stats_key"]
    assert (key["dataset"], key["split"], key["resolution"], key["count"]) == (
        "fashion_mnist",
        "test",
        "28x28x1",
        1000,
    )
    assert key["feature_net"].startswith("fmnist:") and "FD-FMNIST" in report["feature_net_label"]
    path = stats_cache.key_path(key, cfg.stats_dir)
    mtime = os.path.getmtime(path)
    # Same seed -> same numbers, real statistics read back from the cache (file not rewritten)
    # without decoding the real set again (a job scores teacher and student in one process).
    decoded = []
    real_images = evaluator._real_images
    monkeypatch.setattr(evaluator, "_real_images", lambda *a: decoded.append(1) or real_images(*a))
    assert evaluator.evaluate_generator(sample_fn, cfg, str(tmp_path / "w")) == res
    assert os.path.getmtime(path) == mtime and decoded == []
    os.remove(path)  # A deleted cache file: the real set is decoded and the file written again.
    assert evaluator.evaluate_generator(sample_fn, cfg, str(tmp_path / "w")) == res
    assert os.path.isfile(path) and decoded == [1]
    # A generator of pure noise is far worse on every metric.
    noise = evaluator.evaluate_generator(
        lambda key, n: jax.random.uniform(key, (n, 28, 28, 1), minval=-1, maxval=1),
        cfg,
        str(tmp_path / "noise"),
    )
    assert noise["fd"] > 10 * res["fd"] and noise["kid_mean"] > 10 * res["kid_mean"]
    assert noise["recall"] < 0.1  # all noise images land in one small region: no coverage


def test_evaluate_with_given_real_array_and_bad_samples(fmnist, tmp_path):
    cfg = _cfg(tmp_path, num_samples=200, real_num_samples=0)
    real = fmnist[1][:300]
    res = evaluator.evaluate_images(fmnist[0][:200], cfg, str(tmp_path), real_images=real)
    report = json.load(open(tmp_path / "gan_metrics_fmnist.json"))
    assert report["real_stats_key"]["dataset"].startswith("array-") and res["fd"] > 0
    with pytest.raises(ValueError, match="must return"):
        evaluator.evaluate_generator(
            lambda k, n: jnp.zeros((n, 28, 28)), cfg, str(tmp_path), real_images=real
        )


def test_inception_without_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXPAPERS_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = _cfg(tmp_path, feature_net="inception")
    with pytest.raises(FileNotFoundError, match="Random weights are never used"):
        evaluator.evaluate_generator(lambda k, n: jnp.zeros((n, 28, 28, 1)), cfg, str(tmp_path))


def test_stats_cache_roundtrip_and_key_check(tmp_path):
    key = stats_cache.make_key("ds", "test", "net:abc", "8x8x1", 50)
    feats = np.random.default_rng(0).normal(size=(50, 4))
    entry = stats_cache.save(key, feats, directory=str(tmp_path))
    back = stats_cache.load(key, str(tmp_path))
    np.testing.assert_array_equal(back["mu"], entry["mu"])
    np.testing.assert_allclose(back["sigma"], np.cov(feats, rowvar=False))
    assert back["mu"].dtype == np.float64
    assert stats_cache.load(dict(key, count=51), str(tmp_path)) is None
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []


def test_method_sampler_crops_padded_fashion_mnist_fakes(fmnist, tmp_path):
    """A GAN method generating 32x32 (28x28 padded by 2) scores like the 28x28 images."""
    pool = jnp.asarray(fmnist[0][:1000].astype(np.float32) / 127.5 - 1.0)
    padded = jnp.pad(pool, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
    cfg = _cfg(tmp_path)

    def pick(images):
        return lambda key, n: images[jax.random.choice(key, images.shape[0], (n,), replace=False)]

    method_cfg = ml_collections.ConfigDict(
        dict(
            data=dict(name="fashion_mnist", path="", pad_to=32),
            eval=dict(cfg.to_dict(), seed=123, grid_size=16),
        )
    )
    got = evaluator.evaluate_method_sampler(pick(padded), method_cfg, str(tmp_path), "student")
    want = evaluator.evaluate_generator(pick(pool), cfg, str(tmp_path / "ref"))
    assert got == {f"student_{k}": v for k, v in want.items()}
    assert os.path.exists(tmp_path / "eval_student" / "gan_metrics_fmnist.json")


def test_score_images_and_gan_run(fmnist, tmp_path):
    """What ``python -m jaxpapers.tools.gan_metrics`` runs: an .npz, and a stylegan2_dgl run
    (its step-0 checkpoint: the scoring path is the same for a trained run)."""
    from jaxpapers import config_lib, runs, testing
    from jaxpapers.evals.gan import score

    np.savez(tmp_path / "fakes.npz", images=fmnist[0][:300])
    common = dict(num_samples=200, real_num_samples=400, stats_dir=str(tmp_path / "s"))
    res = score.score_images(str(tmp_path / "fakes.npz"), str(tmp_path / "a"), **common)
    assert res["precision"] > 0.5 and np.isfinite(res["fd"])

    cfg_path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "stylegan2_dgl.py")
    run_dir = str(tmp_path / "run")
    testing.initial_run(config_lib.load_config_file(cfg_path, "smoke"), run_dir)
    run = runs.load_run(run_dir)  # its config.json
    res = score.score_sampler(
        run.make_sampler("student"), run.config, str(tmp_path / "b"), "student", **common
    )
    assert set(res) >= {"student_fd", "student_kid_mean", "student_precision"}
    assert res["student_fd"] > 0 and np.isfinite(res["student_fd"])
    assert os.path.exists(tmp_path / "b" / "eval_student" / "gan_metrics_fmnist.json")
    with pytest.raises(ValueError, match="choose one with --key"):
        np.savez(tmp_path / "two.npz", a=fmnist[0][:2], b=fmnist[0][:2])
        score.read_images(str(tmp_path / "two.npz"))


def test_sharded_features_are_those_of_one_device():
    """45 images in batches of 20 (padded to 24 over the 8 devices, the last one from 5 rows):
    the gathered features are one device's to float32 rounding, and in the images' order."""
    net = feature_nets.fmnist_feature_net()
    images = np.random.default_rng(0).integers(0, 256, (45, 28, 28, 1), dtype=np.uint8)
    sharded = feature_nets.Extractor(net, batch_size=20)
    assert sharded.mesh.devices.size == 8
    f8, l8 = sharded.array(images)
    one = feature_nets.Extractor(net, batch_size=20, mesh=parallel.make_mesh(jax.devices()[:1]))
    f1, l1 = one.array(images)
    assert f8.shape == (45, net.dim) and l8.shape[0] == 45
    np.testing.assert_allclose(f8, f1, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(l8, -1), np.argmax(l1, -1))
    f_first, _ = one.batch(images[:7])  # one short batch, padded
    np.testing.assert_allclose(f_first, f1[:7], rtol=1e-5, atol=1e-5)
