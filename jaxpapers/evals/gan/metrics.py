"""GAN sample-quality metrics on feature vectors: FD/FID, KID, IS, precision/recall.

All functions take features (or logits) as host arrays and are independent of the feature
network; the network that produced the features must be named next to every number (see
``evaluator.py``). The statistics follow the reference implementations:

- Fréchet distance (Heusel et al. 2017): ``|mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`` in
  float64. The trace of the matrix square root is computed from the symmetric PSD matrix
  ``S1^{1/2} S2 S1^{1/2}`` (same eigenvalues as ``S1 S2``) with ``eigh``, which never returns
  complex values, unlike ``scipy.linalg.sqrtm`` on the non-symmetric product (pytorch-fid adds
  an ``eps*I`` retry and drops imaginary parts to cope with that).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3`` averaged over random subsets, as in StyleGAN2-ADA's
  ``kernel_inception_distance.py`` (100 subsets of at most 1000 samples).
- Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over 10 splits.
- Precision/recall (Kynkäänniemi et al. 2019): k-NN (k = 3) hyperspheres around each real
  (resp. fake) feature; precision = fraction of fakes inside the union of real balls, recall =
  fraction of reals inside the union of fake balls.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxpapers import parallel


def _check_features(name: str, feats: np.ndarray, min_rows: int = 2) -> np.ndarray:
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (num_samples, dim); got shape {feats.shape}.")
    if feats.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples; got {feats.shape[0]}.")
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{name} contains NaN or Inf values (a diverged generator?).")
    return feats


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of features in float64, as pytorch-fid computes."""
    feats = _check_features("features", feats).astype(np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; tiny negative eigenvalues (round-off) -> 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) for PSD S1, S2 via the eigenvalues of S1^{1/2} S2 S1^{1/2}.

    S1 S2 is similar to the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, so both have the same
    non-negative eigenvalues and the trace of the principal square root is the sum of their
    square roots.
    """
    s1_half = _psd_sqrt(np.asarray(sigma1, np.float64))
    m = s1_half @ np.asarray(sigma2, np.float64) @ s1_half
    w = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    method: str = "eigh",
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Args:
      mu1, sigma1: mean (d,) and covariance (d, d) of the first set.
      mu2, sigma2: same for the second set.
      method: 'eigh' (default, symmetric eigen-decomposition) or 'sqrtm' (scipy's
        ``linalg.sqrtm`` of S1 S2 with pytorch-fid's eps-retry; kept for cross-checks).

    Returns:
      The squared Fréchet (2-Wasserstein) distance as a Python float.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
            f"sigma2 {sigma2.shape}; expected (d,), (d, d) for both sets."
        )
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or Inf values.")
    diff = mu1 - mu2
    if method == "eigh":
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    elif method == "sqrtm":
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(d) * 1e-6
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        tr_covmean = float(np.real(np.trace(covmean)))
    else:
        raise ValueError(f"unknown method {method!r}; use 'eigh' or 'sqrtm'.")
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _poly_kernel(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    k = a @ b.T
    k /= d
    k += 1.0
    return k * k * k  # Not ** 3: numpy's float power is several times slower than two products.


def _kid_draws(nx: int, ny: int, m: int, num_subsets: int, seed: int):
    """The (fake, real) index subsets of every KID subset, in the reference drawing order."""
    rng = np.random.default_rng(seed)
    return [
        (rng.choice(nx, m, replace=False), rng.choice(ny, m, replace=False))
        for _ in range(num_subsets)
    ]


def kid_real_sums(
    feats_real: np.ndarray,
    num_fake: int,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The off-diagonal real-real kernel sum of every KID subset. It depends on the reals and on
    the number of fakes only (through the subset draws), so an evaluator can compute it once per
    real set and pass it to every ``kernel_distance`` call as ``real_sums``."""
    y_all = _check_features("real features", feats_real).astype(np.float64)
    m = min(num_fake, y_all.shape[0], max_subset_size)
    out = np.empty(num_subsets, np.float64)
    for i, (_, iy) in enumerate(_kid_draws(num_fake, y_all.shape[0], m, num_subsets, seed)):
        kyy = _poly_kernel(y_all[iy], y_all[iy], y_all.shape[1])
        out[i] = kyy.sum() - np.trace(kyy)
    return out


def kernel_distance(
    feats_real: np.ndarray,
    feats_fake: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
    real_sums: np.ndarray | None = None,
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with kernel (x.y/d + 1)^3, mean and std over random subsets.

    Each subset draws m = min(n_real, n_fake, max_subset_size) samples without replacement
    from each set; the unbiased estimator drops the kernel's diagonal terms (i == j) from the
    within-set sums (Binkowski et al. 2018, eq. 3 with the polynomial kernel).

    Speed: the fake-fake and fake-real kernels are computed once over all samples when they fit
    in memory and each subset sums its block of them (subsets of a few thousand fakes overlap
    heavily: several times less work than products per subset); the real-real sums come from
    ``real_sums`` (``kid_real_sums`` of the same arguments) or are computed per subset. Float64
    and the same subsets as the per-subset formula, so the numbers agree to round-off.

    Returns:
      (mean, std) of the per-subset MMD^2 estimates (std with ddof=0, as torch-fidelity).
    """
    x_all = _check_features("fake features", feats_fake).astype(np.float64)
    y_all = _check_features("real features", feats_real).astype(np.float64)
    if x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"feature dims differ: real {y_all.shape[1]} vs fake {x_all.shape[1]}.")
    n = x_all.shape[1]
    nx, ny = x_all.shape[0], y_all.shape[0]
    m = min(nx, ny, max_subset_size)
    draws = _kid_draws(nx, ny, m, num_subsets, seed)
    if real_sums is None:
        real_sums = kid_real_sums(y_all, nx, num_subsets, max_subset_size, seed)
    elif real_sums.shape != (num_subsets,):
        raise ValueError(f"real_sums has shape {real_sums.shape}, expected ({num_subsets},).")
    # Whole kernels when they fit (~0.5 GB of float64 at most) and pay off (subsets overlap);
    # a subset's block sum is then a^T K b with its 0/1 indicator vectors a, b (the subsets are
    # drawn without replacement), all subsets in one matrix product.
    whole = nx * (nx + ny) <= 64 * 2**20 and num_subsets * m * m > nx * (nx + ny)
    if whole:
        a = np.zeros((num_subsets, nx))
        b = np.zeros((num_subsets, ny))
        for i, (ix, iy) in enumerate(draws):
            a[i, ix], b[i, iy] = 1.0, 1.0
        kxx_all = _poly_kernel(x_all, x_all, n)
        fake_sums = np.einsum("sn,sn->s", a @ kxx_all, a) - a @ np.diag(kxx_all)
        cross_sums = np.einsum("sn,sn->s", a @ _poly_kernel(x_all, y_all, n), b)
    else:
        fake_sums, cross_sums = np.empty(num_subsets), np.empty(num_subsets)
        for i, (ix, iy) in enumerate(draws):
            kxx = _poly_kernel(x_all[ix], x_all[ix], n)
            fake_sums[i] = kxx.sum() - np.trace(kxx)
            cross_sums[i] = _poly_kernel(x_all[ix], y_all[iy], n).sum()
    values = (fake_sums + real_sums) / (m * (m - 1)) - 2.0 * cross_sums / (m * m)
    return float(values.mean()), float(values.std())


def inception_score(logits: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """Inception Score from classifier logits: mean and std of exp(E KL(p(y|x)||p(y))) per split.

    Args:
      logits: (N, num_classes) unnormalised log-probabilities (softmax is applied here, in
        float64 with a log-sum-exp so that confident predictions do not underflow).
      num_splits: the standard value is 10 (Salimans et al. 2016; StyleGAN2-ADA).
    """
    logits = _check_features("logits", logits, min_rows=num_splits).astype(np.float64)
    logp = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    n = logp.shape[0]
    scores = []
    for k in range(num_splits):
        part = logp[k * n // num_splits : (k + 1) * n // num_splits]
        p = np.exp(part)
        log_py = np.log(p.mean(axis=0) + 1e-300)
        kl = (p * (part - log_py)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _sq_dists(block: jax.Array, ref: jax.Array) -> jax.Array:
    return (
        jnp.sum(block**2, axis=1, keepdims=True)
        - 2.0 * block @ ref.T
        + jnp.sum(ref**2, axis=1)[None, :]
    )


# The k-NN work is data-parallel: the query rows are split over the mesh's devices (each runs
# fixed-size blocks of its rows against all reference rows, replicated, in one ``lax.map``: no
# host trips) and the per-row results are gathered on every process. Rows are independent, so
# the numbers do not depend on the number of devices (up to float32 rounding).


@functools.partial(jax.jit, static_argnames=("k", "block", "mesh"))
def _kth_nn_radii(queries: jax.Array, ref: jax.Array, k: int, block: int, mesh) -> jax.Array:
    """Distance from each query row to its (k+1)-th nearest ``ref`` row (self = 0)."""

    def local(q, r):
        def one(b):
            neg_smallest, _ = jax.lax.top_k(-_sq_dists(b, r), k + 1)
            return jnp.sqrt(jnp.maximum(-neg_smallest[:, -1], 0.0))

        return jax.lax.map(one, q.reshape(-1, block, q.shape[1])).reshape(-1)

    return jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P()), out_specs=P("data"))(
        queries, ref
    )


@functools.partial(jax.jit, static_argnames=("block", "mesh"))
def _inside(
    queries: jax.Array, centers: jax.Array, radii: jax.Array, block: int, mesh
) -> jax.Array:
    """Whether each query row lies inside at least one ball (``centers``, ``radii``)."""

    def local(q, c, r):
        def one(b):
            dist = jnp.sqrt(jnp.maximum(_sq_dists(b, c), 0.0))
            return jnp.any(dist <= r[None, :], axis=1)

        return jax.lax.map(one, q.reshape(-1, block, q.shape[1])).reshape(-1)

    specs = (P("data"), P(), P())
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P("data"))(
        queries, centers, radii
    )


def _split_rows(x: np.ndarray, block: int, mesh: Mesh) -> tuple[jax.Array, int]:
    """``x`` padded and sharded over the mesh, and the block size each device loops over.

    Each device gets an equal share of at most ``block``-row blocks (equal blocks: padding
    wastes less than one block row per block)."""
    devices = mesh.devices.size
    per_device = -(-len(x) // devices)
    blocks = -(-per_device // block)
    b = -(-per_device // blocks)
    padded = np.zeros((devices * blocks * b, x.shape[1]), x.dtype)
    padded[: len(x)] = x
    return parallel.shard_full_batch(padded, mesh), b


def _rows_vs(fn, queries: np.ndarray, block: int, mesh: Mesh | None, *replicated) -> np.ndarray:
    """``fn(sharded query rows, *replicated, block, mesh)`` on every query row, on the host."""
    mesh = parallel.make_mesh() if mesh is None else mesh
    q, b = _split_rows(queries, block, mesh)
    out = fn(q, *parallel.replicate_full(replicated, mesh), b, mesh)
    return parallel.gather_to_host(out)[: len(queries)]


def knn_radii(
    feats: np.ndarray, k: int = 3, block: int = 1024, mesh: Mesh | None = None
) -> np.ndarray:
    """Radius of the k-NN hypersphere of every sample (distance to its k-th other neighbour).

    ``mesh``: the devices the rows are split over (default all devices of all processes)."""
    feats = _check_features("features", feats, min_rows=k + 1).astype(np.float32)
    fn = functools.partial(_kth_nn_radii, k=k)
    return _rows_vs(lambda q, r, b, m: fn(q, r, block=b, mesh=m), feats, block, mesh, feats)


def _coverage(
    queries: np.ndarray, centers: np.ndarray, radii: np.ndarray, block: int, mesh
) -> float:
    """Fraction of ``queries`` inside at least one ball (``centers``, ``radii``)."""
    return float(np.mean(_rows_vs(_inside, queries, block, mesh, centers, radii)))


def precision_recall(
    feats_real: np.ndarray,
    feats_fake: np.ndarray,
    k: int = 3,
    block: int = 1024,
    real_radii: np.ndarray | None = None,
    mesh: Mesh | None = None,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radii.

    Distances are Euclidean in float32, blocked over rows so memory is O(block * N).
    A point on a ball's boundary counts as inside (``<=``), as in the reference code.
    ``real_radii``: ``knn_radii(feats_real, k)`` when already known (the evaluator caches them
    with the real statistics). ``mesh``: the devices the rows are split over (default all).
    """
    real = _check_features("real features", feats_real, min_rows=k + 1).astype(np.float32)
    fake = _check_features("fake features", feats_fake, min_rows=k + 1).astype(np.float32)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]} vs fake {fake.shape[1]}.")
    if real_radii is None:
        real_radii = knn_radii(real, k, block, mesh)
    elif real_radii.shape != (len(real),):
        raise ValueError(f"real_radii has shape {real_radii.shape}, expected ({len(real)},).")
    real_radii = np.asarray(real_radii, np.float32)
    precision = _coverage(fake, real, real_radii, block, mesh)
    recall = _coverage(real, fake, knn_radii(fake, k, block, mesh), block, mesh)
    return precision, recall
