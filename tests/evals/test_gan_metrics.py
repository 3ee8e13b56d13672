"""Numerics of the GAN metrics against closed forms and hand-built cases."""

import jax
import numpy as np
import pytest
import scipy.linalg
from scipy.stats import ortho_group

from jaxpapers import parallel
from jaxpapers.evals.gan import metrics


def _commuting_pair(rng, d):
    q = ortho_group.rvs(d, random_state=rng.integers(1 << 31))
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    return q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T, a, b


def test_fd_closed_form_diagonal_and_commuting():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    # Closed form for commuting covariances: |mu1-mu2|^2 + sum (sqrt(a)-sqrt(b))^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for method in ("eigh", "sqrtm"):
        got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method)
        np.testing.assert_allclose(got, expected, rtol=1e-10)
    s1, s2, a, b = _commuting_pair(rng, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(metrics.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-9)
    assert abs(metrics.frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_fd_matches_scipy_sqrtm_on_random_psd():
    rng = np.random.default_rng(1)
    d = 12
    x, y = rng.normal(size=(d, 3 * d)), rng.normal(size=(d, 3 * d))
    s1, s2 = x @ x.T / d, y @ y.T / d
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ref = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(s1 + s2)
        - 2 * np.real(np.trace(scipy.linalg.sqrtm(s1 @ s2)))
    )
    np.testing.assert_allclose(metrics.frechet_distance(mu1, s1, mu2, s2), ref, rtol=1e-8)
    # Rank-deficient covariances (fewer samples than dims) stay finite and non-negative.
    z = rng.normal(size=(5, d))
    mu, sig = metrics.feature_stats(z)
    fd = metrics.frechet_distance(mu, sig, mu, sig + 1e-3 * np.eye(d))
    assert np.isfinite(fd) and fd >= -1e-9


def test_fd_from_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    d, n = 4, 200_000
    a, b = np.array([1.0, 2.0, 0.5, 1.5]), np.array([2.0, 1.0, 0.5, 3.0])
    x = rng.normal(size=(n, d)) * np.sqrt(a)
    y = rng.normal(size=(n, d)) * np.sqrt(b) + 1.0
    expected = d * 1.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = metrics.frechet_distance(*metrics.feature_stats(x), *metrics.feature_stats(y))
    assert abs(got - expected) < 0.03 * expected


def test_fd_rejects_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        metrics.feature_stats(np.full((4, 2), np.nan))


def _mmd2_unbiased_loops(x, y):
    """Direct double-loop unbiased MMD^2 with k(a,b) = (a.b/d + 1)^3 (reference)."""
    m, d = x.shape[0], x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy


def test_kid_matches_direct_formula_on_full_subset():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.5
    # A subset of all points is a permutation: the estimate is deterministic.
    mean, std = metrics.kernel_distance(y, x, num_subsets=3, max_subset_size=100)
    np.testing.assert_allclose(mean, _mmd2_unbiased_loops(x, y), rtol=1e-10)
    assert std < 1e-12


def test_kid_unbiased_same_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(4)
    d = 8
    estimates = [
        metrics.kernel_distance(rng.normal(size=(50, d)), rng.normal(size=(50, d)), 1, 50)[0]
        for _ in range(300)
    ]
    est = np.array(estimates)
    # Unbiased: the average over independent draws is ~0 (|mean| < 4 standard errors).
    assert abs(est.mean()) < 4 * est.std() / np.sqrt(len(est))
    assert est.min() < 0  # a biased (V-statistic) estimator would never go negative
    same = metrics.kernel_distance(rng.normal(size=(2000, d)), rng.normal(size=(2000, d)))
    shifted = metrics.kernel_distance(rng.normal(size=(2000, d)), rng.normal(size=(2000, d)) + 0.5)
    assert abs(same[0]) < 3 * same[1] + 1e-3
    assert shifted[0] > 10 * shifted[1] and shifted[0] > 100 * abs(same[0])


def test_inception_score_uniform_and_one_hot():
    n, c = 1000, 10
    mean, std = metrics.inception_score(np.zeros((n, c)))
    np.testing.assert_allclose([mean, std], [1.0, 0.0], atol=1e-12)
    one_hot = np.full((n, c), -1e4)
    one_hot[np.arange(n), np.arange(n) % c] = 1e4  # confident and balanced in every split
    mean, std = metrics.inception_score(one_hot)
    np.testing.assert_allclose([mean, std], [c, 0.0], atol=1e-9)
    # Confident but always the same class: no diversity -> 1.
    same = np.full((n, c), -1e4)
    same[:, 3] = 1e4
    np.testing.assert_allclose(metrics.inception_score(same)[0], 1.0, atol=1e-9)


def test_precision_recall_on_constructed_points():
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    # k=3 radius on a unit grid: 1 (>= 3 neighbours at distance 1), sqrt 2 at the 4 corners.
    corner = np.isin(grid, [0.0, 9.0]).all(axis=1)
    expected = np.where(corner, np.sqrt(2.0), 1.0)
    np.testing.assert_allclose(metrics.knn_radii(grid, k=3), expected, atol=1e-5)
    fake_in = grid[:50] + 0.3  # within 0.3*sqrt(2) < 1 of a real point
    fake_out = grid[:25] + 100.0  # far from every real point
    fake = np.concatenate([fake_in, fake_out])
    precision, recall = metrics.precision_recall(grid, fake, k=3)
    np.testing.assert_allclose(precision, 50 / 75, atol=1e-6)
    # Fake balls (radius <= sqrt 2) around rows 0-4 (+0.3) reach real rows 0-5 only.
    np.testing.assert_allclose(recall, 0.6, atol=1e-6)
    p, r = metrics.precision_recall(grid, grid + 0.01, k=3)
    assert p == 1.0 and r == 1.0


def test_kid_whole_kernel_path_and_cached_real_sums_match_per_subset_products():
    """The fast paths (whole kernels + indicator sums, cached real sums) give the numbers of the
    per-subset formula on the same subsets."""
    rng = np.random.default_rng(5)
    # 40 subsets of 50 out of 120 fakes: the whole-kernel path (40 * 50^2 > 120 * 420).
    real, fake = rng.normal(size=(300, 6)), rng.normal(size=(120, 6)) + 0.2
    fast = metrics.kernel_distance(real, fake, num_subsets=40, max_subset_size=50, seed=1)
    sums = metrics.kid_real_sums(real, len(fake), num_subsets=40, max_subset_size=50, seed=1)
    cached = metrics.kernel_distance(real, fake, 40, 50, 1, real_sums=sums)
    draws = metrics._kid_draws(len(fake), len(real), 50, 40, 1)
    slow = [_mmd2_unbiased_loops(fake[ix], real[iy]) for ix, iy in draws[:3]]
    values = []
    for ix, iy in draws:
        x, y = fake[ix], real[iy]
        kxx, kyy, kxy = ((a @ b.T / 6 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        w = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (50 * 49)
        values.append(w - 2 * kxy.sum() / 2500)
    np.testing.assert_allclose(values[:3], slow, rtol=1e-9)
    np.testing.assert_allclose(fast, [np.mean(values), np.std(values)], rtol=1e-9)
    np.testing.assert_allclose(cached, fast, rtol=1e-12)
    with pytest.raises(ValueError, match="real_sums"):
        metrics.kernel_distance(real, fake, 40, 50, 1, real_sums=sums[:3])


def test_precision_recall_with_given_real_radii_and_uneven_blocks():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(203, 4)), rng.normal(size=(77, 4)) + 0.3
    ref = metrics.precision_recall(real, fake, k=3, block=1024)
    radii = metrics.knn_radii(real, k=3, block=50)  # 203 rows: padded last block.
    np.testing.assert_allclose(radii, metrics.knn_radii(real, k=3), rtol=1e-6)
    assert metrics.precision_recall(real, fake, k=3, block=50, real_radii=radii) == ref


def test_knn_work_split_over_the_mesh_gives_one_devices_numbers():
    """203 reals over the 8 devices (26 rows each, in blocks of 13) against one device."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(203, 16)).astype(np.float32)
    fake = (1.3 * rng.normal(size=(150, 16)) + 0.2).astype(np.float32)
    one = parallel.make_mesh(jax.devices()[:1])
    radii = metrics.knn_radii(real, k=3, block=20)
    np.testing.assert_allclose(radii, metrics.knn_radii(real, k=3, block=20, mesh=one), rtol=1e-6)
    pr = metrics.precision_recall(real, fake, k=3, block=20)
    assert pr == metrics.precision_recall(real, fake, k=3, block=20, mesh=one)
    assert 0.2 < pr[0] < 1 and 0.2 < pr[1] < 1
