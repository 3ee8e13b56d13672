"""LFW-protocol evaluator: hand-computed accuracies, TAR@FAR, ROC, rank-1, pairs files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import parallel
from jaxpapers.evals import face_verification as fv


def test_ten_fold_accuracy_hand_computed():
    # 20 pairs, folds of 2 (pos, neg).  Positives score 0.8, negatives 0.2, except pair 0
    # (a positive scored 0.1).  Folds 1..9: train holds pair 0, best thresholds are [0.2, 0.8),
    # ties keep the largest (0.795); test accuracy 1.  Fold 0: threshold 0.795, pair 0 is
    # rejected -> 0.5.  Mean 0.95, std sqrt((0.45^2 + 9 * 0.05^2) / 10) = 0.15.
    same = np.tile([1, 0], 10)
    scores = np.where(same == 1, 0.8, 0.2)
    scores[0] = 0.1
    res = fv.verification_accuracy(scores, same)
    np.testing.assert_allclose(res["fold_acc"], [0.5] + [1.0] * 9)
    assert res["mean"] == pytest.approx(0.95)
    assert res["std"] == pytest.approx(0.15)
    np.testing.assert_allclose(res["thresholds"], 0.795, atol=1e-9)


def test_perfect_and_chance_embeddings():
    rng = np.random.RandomState(0)
    centres = rng.normal(size=(10, 32))
    labels = np.repeat(np.arange(10), 6)
    emb = centres[labels] + 0.05 * rng.normal(size=(60, 32))
    pairs = fv.make_pairs(labels, 200, seed=0)
    assert pairs[:, 2].sum() == 100 and np.all(pairs[0::2, 2] == 1)
    np.testing.assert_array_equal(pairs, fv.make_pairs(labels, 200, seed=0))
    assert np.all((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == pairs[:, 2].astype(bool))
    s = fv.cosine_scores(emb[pairs[:, 0]], emb[pairs[:, 1]])
    assert fv.verification_accuracy(s, pairs[:, 2])["mean"] == 1.0
    assert fv.tar_at_far(s, pairs[:, 2], 1e-3) == 1.0
    noise = rng.normal(size=(60, 32))
    s = fv.cosine_scores(noise[pairs[:, 0]], noise[pairs[:, 1]])
    assert fv.verification_accuracy(s, pairs[:, 2])["mean"] < 0.7


def test_tar_at_far_and_roc():
    neg = np.arange(10) / 10.0  # sorted desc: 0.9, 0.8, ...
    pos = np.array([0.95, 0.85, 0.55, 0.05])
    scores = np.r_[pos, neg]
    same = np.r_[np.ones(4), np.zeros(10)]
    assert fv.tar_at_far(scores, same, 0.1) == 0.5  # threshold neg[int(1.0)] = 0.8
    assert fv.tar_at_far(scores, same, 0.0) == 0.25  # threshold 0.9
    far, tar = fv.roc_curve(scores, same)
    assert far[0] == 0 and tar[0] == 0 and far[-1] == 1 and tar[-1] == 1
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    assert tar[1] == 0.25 and far[1] == 0.0  # first threshold 0.95 accepts one positive
    np.testing.assert_allclose(
        fv.cosine_scores(np.array([[1.0, 0], [1, 1]]), np.array([[2.0, 0], [-1, 1]])),
        [1.0, 0.0],
        atol=1e-5,
    )


def test_rank1_and_flip_sum():
    gallery = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    probes = np.array([[0.9, 0.1, 0], [0.1, 0.2, 0.9], [0.6, 0.5, 0], [0, 0.7, 0.1]])
    assert fv.rank1_identification(gallery, [0, 1, 2], probes, [0, 2, 1, 1]) == 0.75
    imgs = np.random.RandomState(0).normal(size=(3, 2, 4, 1))
    fn = lambda x: x[:, 0, :, 0]  # noqa: E731
    e = fv.flip_sum_embeddings(fn, imgs)
    want = imgs[:, 0, :, 0] + imgs[:, 0, ::-1, 0]
    np.testing.assert_allclose(e, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-9)


def test_pairs_file_roundtrip(tmp_path):
    p = tmp_path / "pairs.txt"
    fv.write_pairs(str(p), [("Abel", 1, "Abel", 3), ("Abel", 2, "Zoe", 1)], n_folds=1)
    pairs = fv.read_pairs(str(p))
    assert pairs == [
        ("Abel/Abel_0001.jpg", "Abel/Abel_0003.jpg", True),
        ("Abel/Abel_0002.jpg", "Zoe/Zoe_0001.jpg", False),
    ]
    p.write_text("1 1\nAbel 1\n")
    with pytest.raises(ValueError, match="3 or 4"):
        fv.read_pairs(str(p))
    with pytest.raises(ValueError, match="NaN"):
        fv.verification_accuracy(np.array([np.nan] * 10), np.ones(10))


def test_embeddings_sharded_over_the_mesh_are_one_devices():
    """A tiny conv embedding of 19 faces in batches of 6 (padded to 8 over the 8 devices)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    w_conv = jax.random.normal(k1, (3, 3, 1, 4))
    w_out = jax.random.normal(k2, (4 * 4 * 4, 5))

    @jax.jit
    def embed(images):
        x = images.astype(jnp.float32) / 127.5 - 1.0
        h = jax.lax.conv_general_dilated(
            x, w_conv, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        e = jnp.tanh(h).reshape(len(x), -1) @ w_out
        return e / jnp.linalg.norm(e, axis=-1, keepdims=True)

    faces = np.random.default_rng(0).integers(0, 256, (19, 8, 8, 1), dtype=np.uint8)
    got = fv.embeddings(embed, faces, batch_size=6)
    one = fv.embeddings(embed, faces, batch_size=6, mesh=parallel.make_mesh(jax.devices()[:1]))
    np.testing.assert_allclose(got, one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, np.asarray(embed(faces)), rtol=1e-5, atol=1e-6)
