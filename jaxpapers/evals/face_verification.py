"""Face verification and identification evaluators (LFW protocol, TAR@FAR, rank-1).

Follows haibo-qiu/FROM lib/core/lfw_eval.py (also SynFace's copy):
  * score = cosine similarity of the two embeddings (A.B / (|A||B| + 1e-5));
  * predicted "same" iff score > threshold;
  * 10 *contiguous* folds (fold i = pairs [i*n/10, (i+1)*n/10));
  * threshold grid np.arange(-1.0, 1.0, 0.005), chosen on the other 9 folds; ties keep the *largest*
    threshold (the official loop uses `accuracy >= best_acc`);
  * mean and std (population, np.std) of the 10 test-fold accuracies;
  * TAR@FAR: negatives sorted descending, threshold = negative score at index int(FAR * #neg),
    TAR = fraction of positives with score >= threshold.
Identification rank-1: each probe takes the label of its most cosine-similar gallery embedding.

Pairs files use the standard LFW `pairs.txt` format: an optional header line "<folds> <n>", then
"name i j" (same person, images i and j) or "name1 i name2 j" (different people); image k of
`name` is `name/name_%04d.<ext>`; they are read and written by ``jaxpapers.data.lfw_pairs``
(``read_pairs``/``write_pairs`` are re-exported here).

The scores are NumPy (host-side) so the evaluator is exact and independent of the model code;
``embeddings`` computes the embeddings they score data-parallel over the device mesh.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from jax.sharding import Mesh

from jaxpapers import batching, parallel
from jaxpapers.data.lfw_pairs import read_pairs, write_pairs  # noqa: F401  (re-exported)

DEFAULT_THRESHOLDS = np.arange(-1.0, 1.0, 0.005)


def cosine_scores(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity as in the official code (1e-5 added to the norm product)."""
    emb1 = np.asarray(emb1, np.float64)
    emb2 = np.asarray(emb2, np.float64)
    if emb1.shape != emb2.shape or emb1.ndim != 2:
        raise ValueError(
            f"Expected two (N, D) arrays of equal shape, got {emb1.shape}, {emb2.shape}."
        )
    num = np.sum(emb1 * emb2, axis=1)
    den = np.linalg.norm(emb1, axis=1) * np.linalg.norm(emb2, axis=1) + 1e-5
    return num / den


def kfold_indices(n: int, n_folds: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """Contiguous folds: returns [(train_idx, test_idx)] with test = [i*n/k, (i+1)*n/k)."""
    if n < n_folds:
        raise ValueError(f"Need at least {n_folds} pairs for {n_folds} folds, got {n}.")
    folds = []
    base = np.arange(n)
    for i in range(n_folds):
        test = base[int(i * n / n_folds) : int((i + 1) * n / n_folds)]
        train = np.setdiff1d(base, test)
        folds.append((train, test))
    return folds


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs where (score > threshold) equals the ground truth."""
    return float(np.mean((scores > threshold) == same.astype(bool)))


def best_threshold(
    scores: np.ndarray, same: np.ndarray, thresholds: np.ndarray = DEFAULT_THRESHOLDS
) -> float:
    """Threshold of maximal accuracy; ties go to the largest threshold (official `>=`)."""
    acc = np.mean((scores[None, :] > thresholds[:, None]) == same.astype(bool)[None, :], axis=1)
    best = np.flatnonzero(acc == acc.max())[-1]
    return float(thresholds[best])


def verification_accuracy(
    scores: np.ndarray,
    same: np.ndarray,
    n_folds: int = 10,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
) -> dict[str, object]:
    """LFW 10-fold verification accuracy.

    Args:
      scores: (n,) similarity per pair, in the pairs-file order.
      same: (n,) bool/int ground truth (1 = same identity).
      n_folds: number of contiguous folds.
      thresholds: candidate thresholds.

    Returns:
      dict(mean, std, fold_acc (n_folds,), thresholds (n_folds,)).
    """
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same).astype(bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and same must be equal-length vectors, got {scores.shape}, {same.shape}."
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("Verification scores contain NaN/inf; check the embeddings.")
    accs, thds = [], []
    for train, test in kfold_indices(len(scores), n_folds):
        thd = best_threshold(scores[train], same[train], thresholds)
        accs.append(accuracy_at(scores[test], same[test], thd))
        thds.append(thd)
    accs_arr = np.asarray(accs)
    return dict(
        mean=float(accs_arr.mean()),
        std=float(accs_arr.std()),
        fold_acc=accs_arr,
        thresholds=np.asarray(thds),
    )


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """TAR at a FAR as the official `tar_far`.

    Threshold = negatives sorted descending, at index int(far * #neg); TAR = P(pos >= threshold).
    """
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same).astype(bool)
    neg = np.sort(scores[~same])[::-1]
    pos = scores[same]
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("TAR@FAR needs both positive and negative pairs.")
    threshold = neg[min(int(len(neg) * far), len(neg) - 1)]
    return float(np.mean(pos >= threshold))


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every distinct score as threshold (descending), from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same).astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tar = np.r_[0.0, tp[last] / max(y.sum(), 1)]
    far = np.r_[0.0, fp[last] / max((~y).sum(), 1)]
    return far, tar


def rank1_identification(
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, probe_labels: np.ndarray
) -> float:
    """Rank-1 identification accuracy by cosine similarity (probe -> nearest gallery embedding)."""
    g = np.asarray(gallery, np.float64)
    p = np.asarray(probes, np.float64)
    g = g / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-12)
    p = p / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-12)
    nearest = np.argmax(p @ g.T, axis=1)
    return float(np.mean(np.asarray(gallery_labels)[nearest] == np.asarray(probe_labels)))


def embeddings(
    embed_fn: Callable, images: np.ndarray, batch_size: int = 256, mesh: Mesh | None = None
) -> np.ndarray:
    """``embed_fn`` over all images in fixed-size batches, data-parallel over ``mesh``.

    Every batch is sharded over the mesh's ``data`` axis and the embeddings are gathered, so
    every process (each passing the same images) gets all of them (``batching.map_batches``).

    Args:
      embed_fn: a jitted ``images -> (B, D)`` embedding (jit it once and reuse it: every new
        jit compiles again).
      images: (N, ...) images, in whatever form ``embed_fn`` takes.
      batch_size: images per compiled batch (the last batch is padded).
      mesh: the devices to run on; default all devices of all processes.
    """
    mesh = parallel.make_mesh() if mesh is None else mesh
    return batching.map_batches(embed_fn, np.asarray(images), batch_size=batch_size, mesh=mesh)


def flip_sum_embeddings(
    embed_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray
) -> np.ndarray:
    """L2-normalised embed(x) + embed(horizontally flipped x) (FROM's MegaFace features), NHWC."""
    e = np.asarray(embed_fn(images), np.float64) + np.asarray(
        embed_fn(images[:, :, ::-1]), np.float64
    )
    return e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)


def make_pairs(labels: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    """Deterministic balanced pair list over a labelled set: (n_pairs, 3) = (i, j, same).

    Positives and negatives alternate in blocks so that every contiguous fold holds half of each
    (LFW's folds are balanced the same way).  Pairs are drawn without replacement when possible.

    Args:
      labels: (N,) identity labels of the evaluation images.
      n_pairs: total number of pairs (even).
      seed: NumPy seed.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    idx = np.arange(len(labels))
    pos = [(i, j) for i in idx for j in idx if i < j and labels[i] == labels[j]]
    neg = [(i, j) for i in idx for j in idx if i < j and labels[i] != labels[j]]
    half = n_pairs // 2
    if len(pos) < half:
        raise ValueError(f"Only {len(pos)} positive pairs available, {half} requested.")
    pos_sel = np.asarray(pos)[rng.choice(len(pos), half, replace=False)]
    neg_sel = np.asarray(neg)[rng.choice(len(neg), half, replace=False)]
    out = np.zeros((2 * half, 3), np.int64)
    out[0::2, :2], out[0::2, 2] = pos_sel, 1
    out[1::2, :2], out[1::2, 2] = neg_sel, 0
    return out
