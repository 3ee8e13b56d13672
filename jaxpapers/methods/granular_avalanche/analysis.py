"""The paper's analysis pipeline on particle tracks + a force series (simulated or measured).

Definitions (arXiv 2107.13927 states the claims, not these definitions; they are the field's
standard ones, with their sources where named below; see also the README):

* Stress drops: maximal decreasing stretches of the sensor signal, tolerating upticks smaller
  than the noise level, kept when the drop exceeds a threshold (absolute, or `noise_factor`
  times the robust standard deviation of the sample-to-sample increments).
* Quasi-periodicity: strain intervals between "large" drops (>= a fraction of the largest); their
  coefficient of variation CV (0 = periodic, ~1 = Poisson).
* Crackling: continuous power law P(S) ~ S^-tau above x_min, maximum likelihood with x_min
  chosen by the Kolmogorov-Smirnov distance (Clauset, Shalizi & Newman 2009, eq. 3.1, 3.5).
* Non-affine displacement: Falk & Langer (1998) D2_min with a neighbour cutoff, and the
  alternative: displacement minus the best global affine map (least squares).
* Correlation: C(r) = <u_i . u_j>_{|r_ij| in bin} / <|u|^2>, fit A exp(-r / xi).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, spatial, stats


def noise_level(signal: np.ndarray) -> float:
    """Robust std (1.4826 MAD) of the increments of a sampled signal."""
    d = np.diff(np.asarray(signal, np.float64))
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def detect_drops(
    strain: np.ndarray, stress: np.ndarray, threshold: float = 0.0, noise_factor: float = 3.0
) -> dict[str, np.ndarray | float]:
    """Stress-drop catalogue of a force-vs-strain series.

    Args:
        strain, stress: 1-D series of equal length (strain increasing).
        threshold: minimum drop; <= 0 uses noise_factor * noise_level(stress).
        noise_factor: see threshold.

    Returns:
        dict with start, end (sample indices), size, strain_start, strain_end, threshold.
    """
    strain = np.asarray(strain, np.float64)
    stress = np.asarray(stress, np.float64)
    if strain.shape != stress.shape or strain.ndim != 1 or strain.size < 3:
        raise ValueError(
            f"strain/stress must be equal 1-D series (>= 3), got {strain.shape}, {stress.shape}."
        )
    if not (np.all(np.isfinite(strain)) and np.all(np.isfinite(stress))):
        raise ValueError("strain/stress contain NaN or inf.")
    noise = noise_level(stress)
    thr = threshold if threshold > 0 else noise_factor * noise
    tol = noise  # upticks below the noise do not end a drop
    starts, ends = [], []
    i, n = 0, stress.size
    while i < n - 1:
        if stress[i + 1] >= stress[i]:
            i += 1
            continue
        start, low, j = i, i + 1, i + 1
        while j < n - 1 and stress[j + 1] < stress[low] + tol:
            j += 1
            if stress[j] < stress[low]:
                low = j
        starts.append(start)
        ends.append(low)
        i = max(low, j)
    starts_a, ends_a = np.array(starts, int), np.array(ends, int)
    size = stress[starts_a] - stress[ends_a] if starts else np.zeros(0)
    keep = size > thr
    s, e = starts_a[keep], ends_a[keep]
    return dict(
        start=s,
        end=e,
        size=size[keep],
        strain_start=strain[s],
        strain_end=strain[e],
        threshold=float(thr),
        noise=noise,
    )


def large_drops(size: np.ndarray, large_abs: float = 0.0, large_fraction: float = 0.3):
    """Mask of "large" drops: >= large_abs when > 0, else >= large_fraction * the largest."""
    size = np.asarray(size)
    if size.size == 0:
        return np.zeros(0, bool)
    return size >= (large_abs if large_abs > 0 else large_fraction * size.max())


def quasi_periodicity(
    drops: dict, large_fraction: float = 0.3, large_abs: float = 0.0
) -> dict[str, float]:
    """Large drops (see `large_drops`) and the regularity of their strain intervals."""
    size = np.asarray(drops["size"])
    large = large_drops(size, large_abs, large_fraction)
    if not large.any():
        return dict(n_large=0, mean_interval=float("nan"), cv_interval=float("nan"))
    gam = np.asarray(drops["strain_start"])[large]
    iv = np.diff(gam)
    if iv.size < 2:
        return dict(
            n_large=int(large.sum()),
            mean_interval=float(iv.mean()) if iv.size else float("nan"),
            cv_interval=float("nan"),
        )
    return dict(
        n_large=int(large.sum()),
        mean_interval=float(iv.mean()),
        cv_interval=float(iv.std(ddof=1) / iv.mean()),
    )


def powerlaw_fit(sizes: np.ndarray, min_tail: int = 5) -> dict[str, float]:
    """Continuous power-law MLE with x_min by minimum KS distance (Clauset et al. 2009)."""
    x = np.sort(np.asarray(sizes, np.float64))
    x = x[x > 0]
    best = dict(tau=float("nan"), xmin=float("nan"), n_tail=0, sigma=float("nan"), ks=float("nan"))
    if x.size < min_tail:
        return best
    for xmin in np.unique(x)[:-1]:
        tail = x[x >= xmin]
        if tail.size < min_tail:
            break
        tau = 1.0 + tail.size / np.sum(np.log(tail / xmin))
        emp = np.arange(tail.size) / tail.size  # empirical CDF at the sorted tail points
        fit = 1.0 - (tail / xmin) ** (1.0 - tau)
        ks = float(np.max(np.abs(emp - fit)))
        if not np.isfinite(best["ks"]) or ks < best["ks"]:
            best = dict(
                tau=float(tau),
                xmin=float(xmin),
                n_tail=int(tail.size),
                sigma=float((tau - 1.0) / np.sqrt(tail.size)),
                ks=ks,
            )
    return best


def _min_image(d: np.ndarray, box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, np.float64)
    per = box > 0
    safe = np.where(per, box, 1.0)
    return np.where(per, d - safe * np.round(d / safe), d)


def _tree(points: np.ndarray, box: np.ndarray) -> tuple[spatial.cKDTree, np.ndarray]:
    """KD-tree, periodic along box > 0 (open axes get a box wider than the data)."""
    box = np.asarray(box, np.float64)
    lo = points.min(axis=0)
    span = points.max(axis=0) - lo
    size = np.where(box > 0, box, 3.0 * span + 10.0)
    wrapped = np.mod(points - np.where(box > 0, 0.0, lo), size)
    return spatial.cKDTree(wrapped, boxsize=size), wrapped


def neighbor_pairs(points: np.ndarray, box: np.ndarray, cutoff: float) -> np.ndarray:
    """(P, 2) array of index pairs i < j closer than cutoff (minimum image)."""
    tree, _ = _tree(points, box)
    return tree.query_pairs(cutoff, output_type="ndarray")


def d2min(
    ref: np.ndarray, cur: np.ndarray, box: np.ndarray, cutoff: float, diameter: float = 1.0
) -> dict[str, np.ndarray]:
    """Falk-Langer D2_min per particle between a reference and a current configuration.

    D2_i = min_J sum_j |d_ij - J d0_ij|^2 over neighbours j within `cutoff` in the reference,
    J = X Y^-1, X = sum d d0^T, Y = sum d0 d0^T (Falk & Langer 1998, eq. 2.11-2.13). Returned
    both raw (`d2`) and per neighbour and per d^2 (`d2_norm`). Particles with fewer than 4
    neighbours (Y singular) get NaN.
    """
    ref = np.asarray(ref, np.float64)
    cur = np.asarray(cur, np.float64)
    if ref.shape != cur.shape or ref.ndim != 2 or ref.shape[1] != 3:
        raise ValueError(f"ref/cur must both be (N, 3), got {ref.shape} and {cur.shape}.")
    n = ref.shape[0]
    pairs = neighbor_pairs(ref, box, cutoff)
    u = _min_image(cur - ref, box)
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    d0 = _min_image(ref[j] - ref[i], box)
    d = d0 + u[j] - u[i]
    x_m = np.zeros((n, 3, 3))
    y_m = np.zeros((n, 3, 3))
    np.add.at(x_m, i, d[:, :, None] * d0[:, None, :])
    np.add.at(y_m, i, d0[:, :, None] * d0[:, None, :])
    count = np.bincount(i, minlength=n)
    ok = (count >= 4) & (np.abs(np.linalg.det(y_m)) > 1e-12)
    y_safe = np.where(ok[:, None, None], y_m, np.eye(3))
    jac = np.einsum("nab,nbc->nac", x_m, np.linalg.inv(y_safe))
    res = d - np.einsum("nab,nb->na", jac[i], d0)
    d2 = np.bincount(i, weights=np.sum(res * res, axis=1), minlength=n)
    d2 = np.where(ok, d2, np.nan)
    return dict(d2=d2, d2_norm=d2 / np.maximum(count, 1) / diameter**2, count=count, jac=jac)


def nonaffine_global(ref: np.ndarray, cur: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Displacement minus the least-squares global affine map u ~ A r + b (per particle)."""
    u = _min_image(np.asarray(cur, np.float64) - ref, box)
    design = np.concatenate([ref, np.ones((ref.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, u, rcond=None)
    return u - design @ coef


def correlation_function(
    points: np.ndarray,
    values: np.ndarray,
    box: np.ndarray,
    rmax: float,
    nbins: int,
    subtract_mean: bool = True,
) -> dict[str, np.ndarray]:
    """Radially binned C(r) = <v_i . v_j> / <|v|^2> over pairs with |r_ij| < rmax."""
    v = np.asarray(values, np.float64)
    v = v[:, None] if v.ndim == 1 else v
    if v.shape[0] != points.shape[0]:
        raise ValueError(f"{v.shape[0]} values for {points.shape[0]} points.")
    if subtract_mean:
        v = v - v.mean(axis=0)
    pairs = neighbor_pairs(points, box, rmax)
    r = np.linalg.norm(_min_image(points[pairs[:, 0]] - points[pairs[:, 1]], box), axis=1)
    prod = np.sum(v[pairs[:, 0]] * v[pairs[:, 1]], axis=1)
    edges = np.linspace(0.0, rmax, nbins + 1)
    b = np.clip(np.digitize(r, edges) - 1, 0, nbins - 1)
    cnt = np.bincount(b, minlength=nbins)
    s = np.bincount(b, weights=prod, minlength=nbins)
    norm = np.mean(np.sum(v * v, axis=1))
    c = np.where(cnt > 0, s / np.maximum(cnt, 1) / max(norm, 1e-300), np.nan)
    return dict(r=0.5 * (edges[1:] + edges[:-1]), c=c, count=cnt)


def correlation_length(
    corr: dict, rmin: float = 0.0, free_amplitude: bool = False
) -> dict[str, float]:
    """Fits C(r) = A exp(-r / xi) (count-weighted least squares) over bins with r >= rmin.

    By default A = 1: C is normalised by <|u|^2>, so C(0) = 1 by construction, and fixing it
    keeps the fit from extrapolating a huge amplitude through the first occupied bins (pairs
    closer than ~d do not exist in a packing). `free_amplitude=True` fits A as well.
    """
    r, c, cnt = corr["r"], corr["c"], corr["count"]
    m = (cnt > 0) & np.isfinite(c) & (r >= rmin)
    nan = dict(xi=float("nan"), amplitude=float("nan"))
    if m.sum() < 3:
        return nan
    sig = 1.0 / np.sqrt(cnt[m])
    pos = m & (c > 0)
    guess = 1.0
    if pos.sum() >= 2:
        sl = np.polyfit(r[pos], np.log(c[pos]), 1)[0]
        guess = -1.0 / sl if sl < 0 else 1.0
    try:
        if free_amplitude:
            (amp, xi), _ = optimize.curve_fit(
                lambda x, a, length: a * np.exp(-x / length),
                r[m],
                c[m],
                p0=(max(c[m][0], 1e-3), guess),
                sigma=sig,
                bounds=((0.0, 1e-3), (np.inf, 1e3)),
                maxfev=5000,
            )
        else:
            amp = 1.0
            (xi,), _ = optimize.curve_fit(
                lambda x, length: np.exp(-x / length),
                r[m],
                c[m],
                p0=(min(guess, 10.0),),
                sigma=sig,
                bounds=((1e-3,), (1e3,)),
                maxfev=5000,
            )
    except (RuntimeError, ValueError):
        return nan
    if not 1.01e-3 < xi < 0.99e3:  # stuck at a bound: no exponential decay to fit
        return nan
    return dict(xi=float(xi), amplitude=float(amp))


def regression(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Least-squares line y = a x + b with R^2 and the confidence interval of the slope."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = np.isfinite(x) & np.isfinite(y)
    x, y = x[m], y[m]
    nan = float("nan")
    if x.size < 3 or np.ptp(x) == 0:
        return dict(slope=nan, intercept=nan, r2=nan, slope_lo=nan, slope_hi=nan, n=int(x.size))
    lr = stats.linregress(x, y)
    t = stats.t.ppf(0.5 + level / 2, x.size - 2)
    return dict(
        slope=float(lr.slope),
        intercept=float(lr.intercept),
        r2=float(lr.rvalue**2),
        slope_lo=float(lr.slope - t * lr.stderr),
        slope_hi=float(lr.slope + t * lr.stderr),
        n=int(x.size),
    )
