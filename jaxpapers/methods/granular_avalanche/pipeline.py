"""From one track set (scans + force series) to the paper's quantities and figures."""

from __future__ import annotations

import os

import numpy as np

from jaxpapers.methods.granular_avalanche import analysis, plots


def _interval_fields(pos: np.ndarray, box: np.ndarray, diam: float, acfg):
    """Per scan interval: D2_min, the non-affine field and its correlation length.

    Returns (xi/d, non-affine rms/d, sqrt(mean D2_min) inside the wall margins, D2_min fields,
    correlation functions).
    """
    n_iv = pos.shape[0] - 1
    xi, na_rms, d2_mean = (np.full(n_iv, np.nan) for _ in range(3))
    d2_fields, corrs = [], []
    for k in range(n_iv):
        ref, cur = pos[k], pos[k + 1]
        y = ref[:, 1]
        inner = (y > y.min() + acfg.wall_margin * diam) & (y < y.max() - acfg.wall_margin * diam)
        d2 = analysis.d2min(ref, cur, box, acfg.d2min_cutoff * diam, diam)["d2_norm"]
        d2_fields.append(d2)
        u_na = analysis.nonaffine_global(ref[inner], cur[inner], box)
        na_rms[k] = float(np.sqrt(np.mean(np.sum(u_na**2, 1)))) / diam
        d2_mean[k] = float(np.sqrt(np.nanmean(d2[inner])))
        field = u_na if acfg.corr_field == "nonaffine" else np.nan_to_num(d2[inner])
        corr = analysis.correlation_function(
            ref[inner], field, box, acfg.corr_rmax * diam, acfg.corr_bins
        )
        corrs.append(corr)
        xi[k] = analysis.correlation_length(corr)["xi"] / diam
    return xi, na_rms, d2_mean, d2_fields, corrs


def analyse(tracks: dict, acfg, workdir: str, tag: str) -> tuple[dict, dict]:
    """Runs the analysis of one system; returns (summary numbers, arrays for joint figures)."""
    strain, stress = np.asarray(tracks["strain"]), np.asarray(tracks["stress"])
    pos, scan = np.asarray(tracks["positions"]), np.asarray(tracks["scan_strain"])
    box = np.asarray(tracks.get("box", np.zeros(3)), np.float64)
    diam = 2.0 * float(np.mean(tracks["radius"]))
    drops = analysis.detect_drops(strain, stress, acfg.drop_threshold, acfg.noise_factor)
    qp = analysis.quasi_periodicity(drops, acfg.large_drop_fraction, acfg.large_drop_abs)
    pl = analysis.powerlaw_fit(drops["size"])
    large = analysis.large_drops(drops["size"], acfg.large_drop_abs, acfg.large_drop_fraction)

    n_iv = pos.shape[0] - 1
    xi, na_rms, d2_mean, d2_fields, corrs = _interval_fields(pos, box, diam, acfg)

    # Stress released inside each interval (sum of the detected drops whose midpoint is in it).
    mid = 0.5 * (drops["strain_start"] + drops["strain_end"])
    iv = np.clip(np.searchsorted(scan, mid, side="right") - 1, 0, n_iv - 1)
    released = np.bincount(iv, weights=drops["size"], minlength=n_iv)
    has_large = np.bincount(iv[large], minlength=n_iv) > 0 if large.any() else np.zeros(n_iv, bool)
    with_drop = released > 0
    reg = analysis.regression(xi[with_drop], released[with_drop])
    reg_large = analysis.regression(xi[has_large], released[has_large])
    quiet = ~with_drop
    jump = (
        float(np.nanmean(xi[has_large]) / np.nanmean(xi[quiet]))
        if (has_large.any() and quiet.any())
        else float("nan")
    )

    summary = dict(
        n_drops=int(drops["size"].size),
        drop_threshold=float(drops["threshold"]),
        max_drop=float(drops["size"].max()) if drops["size"].size else 0.0,
        n_large=qp["n_large"],
        mean_large_interval=qp["mean_interval"],
        cv_large_interval=qp["cv_interval"],
        tau=pl["tau"],
        **_prefixed("tau_", pl, ("sigma", "xmin", "n_tail")),
        mean_stress=float(np.mean(stress[len(stress) // 4 :])),
        nonaffine_rms_over_d=float(np.nanmean(na_rms)),
        sqrt_d2min_over_d=float(np.nanmean(d2_mean)),
        xi_mean_over_d=float(np.nanmean(xi)),
        xi_large_over_quiet=jump,
        **_prefixed("drop_vs_xi_", reg, ("slope", "r2", "slope_lo", "slope_hi", "n")),
        **_prefixed("large_drop_vs_xi_", reg_large, ("slope", "r2", "n")),
    )
    arrays = dict(
        strain=strain,
        stress=stress,
        drops=drops,
        large=large,
        xi=xi,
        released=released,
        with_drop=with_drop,
        scan=scan,
        reg=reg,
    )
    _figures(workdir, tag, pos, d2_fields, corrs, xi, released, drops, large, arrays, diam)
    return summary, arrays


def _prefixed(prefix: str, fit: dict, keys: tuple[str, ...]) -> dict:
    """The summary entries ``prefix + key`` of a fit's numbers, in the order of ``keys``."""
    return {prefix + k: fit[k] for k in keys}


def _figures(workdir, tag, pos, d2_fields, corrs, xi, released, drops, large, arr, diam):
    _stress_strain_figure(workdir, tag, drops, large, arr)
    _xi_figure(workdir, tag, xi, drops, large, arr)
    if drops["size"].size >= 2:
        _drop_size_figure(workdir, tag, drops["size"])
    if drops["size"].size and len(d2_fields):
        _d2min_slice_figure(workdir, tag, pos, d2_fields, drops, arr, diam)
    if corrs:
        _correlation_figure(workdir, tag, corrs, xi, released, diam)


def _stress_strain_figure(workdir, tag, drops, large, arr):
    strain, stress = arr["strain"], arr["stress"]
    plots.figure(
        os.path.join(workdir, f"stress_strain_{tag}.png"),
        lines=[("shear stress / P", strain, stress)],
        points=[
            ("detected drops", drops["strain_start"], stress[drops["start"]]),
            ("large drops", drops["strain_start"][large], stress[drops["start"][large]]),
        ],
        title=f"{tag}: sensor stress vs imposed strain",
        xlabel="strain",
        ylabel="sigma/P",
    )


def _xi_figure(workdir, tag, xi, drops, large, arr):
    mid_scan = 0.5 * (arr["scan"][1:] + arr["scan"][:-1])
    big = np.zeros(len(xi), bool)
    if large.any():
        mid = 0.5 * (drops["strain_start"] + drops["strain_end"])[large]
        big[np.clip(np.searchsorted(arr["scan"], mid, side="right") - 1, 0, len(xi) - 1)] = True
    plots.figure(
        os.path.join(workdir, f"xi_vs_strain_{tag}.png"),
        lines=[("xi / d per scan interval", mid_scan, xi)],
        points=[("intervals with a large drop", mid_scan[big], xi[big])],
        title=f"{tag}: correlation length of the non-affine field vs strain",
        xlabel="strain",
        ylabel="xi/d",
    )


def _drop_size_figure(workdir, tag, sizes):
    edges = np.logspace(np.log10(sizes.min()), np.log10(sizes.max()) + 1e-9, 12)
    hist, _ = np.histogram(sizes, edges)
    dens = hist / np.diff(edges) / sizes.size
    ctr = np.sqrt(edges[1:] * edges[:-1])
    pl = analysis.powerlaw_fit(sizes)
    lines = []
    if np.isfinite(pl["tau"]):
        xx = ctr[ctr >= pl["xmin"]]
        frac = pl["n_tail"] / sizes.size
        yy = frac * (pl["tau"] - 1) / pl["xmin"] * (xx / pl["xmin"]) ** (-pl["tau"])
        lines = [(f"MLE tau={pl['tau']:.2f} (x_min={pl['xmin']:.2g})", xx, yy)]
    plots.figure(
        os.path.join(workdir, f"drop_sizes_{tag}.png"),
        lines=lines,
        points=[("P(drop)", ctr, dens)],
        logx=True,
        logy=True,
        title=f"{tag}: stress-drop size distribution",
        xlabel="drop / P",
        ylabel="P(drop)",
    )


def _d2min_slice_figure(workdir, tag, pos, d2_fields, drops, arr, diam):
    """D2_min slice through the packing before and at the largest drop."""
    sizes = drops["size"]
    k = int(
        np.clip(
            np.searchsorted(arr["scan"], drops["strain_start"][np.argmax(sizes)], side="right") - 1,
            0,
            len(d2_fields) - 1,
        )
    )
    zc = np.median(pos[0][:, 2])
    panels = []
    for kk, name in ((max(k - 1, 0), "before the largest drop"), (k, "across it")):
        sl = np.abs(pos[kk][:, 2] - zc) < 0.5 * diam
        panels.append(
            (f"{name} (scan {kk}->{kk + 1})", pos[kk][sl, 0], pos[kk][sl, 1], d2_fields[kk][sl])
        )
    allv = np.concatenate([p[3] for p in panels])
    allv = allv[np.isfinite(allv) & (allv > 0)]
    if allv.size:
        lo, hi = np.percentile(np.log10(allv), [2, 98])
        plots.scatter_map(
            os.path.join(workdir, f"d2min_slice_{tag}.png"),
            panels,
            lo,
            hi,
            title=f"{tag}: D2_min/(n d^2), slice |z - z_c| < d/2, x-y plane",
        )


def _correlation_figure(workdir, tag, corrs, xi, released, diam):
    """C(r) of the interval with the largest release and of a quiet one, with their fits."""
    order = np.argsort(-np.nan_to_num(released))
    pick = [
        int(order[0]),
        int(np.nanargmin(np.where(released > 0, np.inf, xi)))
        if np.any(released == 0)
        else int(order[-1]),
    ]
    lines, points = [], []
    for k in pick:
        c = corrs[k]
        fit = analysis.correlation_length(c)
        points.append((f"interval {k}: drop {released[k]:.3f}", c["r"] / diam, c["c"]))
        if np.isfinite(fit["xi"]):
            lines.append(
                (
                    f"fit xi={fit['xi'] / diam:.2f} d",
                    c["r"] / diam,
                    fit["amplitude"] * np.exp(-c["r"] / fit["xi"]),
                )
            )
    plots.figure(
        os.path.join(workdir, f"correlation_{tag}.png"),
        lines=lines,
        points=points,
        title=f"{tag}: C(r) of the non-affine field",
        xlabel="r / d",
        ylabel="C(r)",
    )


def joint_figures(workdir: str, results: dict[str, dict]) -> None:
    """Rough vs smooth side by side: stress-strain and drop vs correlation length."""
    plots.figure(
        os.path.join(workdir, "stress_strain_rough_vs_smooth.png"),
        lines=[(t, a["strain"], a["stress"]) for t, a in results.items()],
        title="shear stress vs strain",
        xlabel="strain",
        ylabel="sigma/P",
    )
    hist_pts = []
    for t, a in results.items():
        sz = a["drops"]["size"]
        if sz.size >= 2:
            edges = np.logspace(np.log10(sz.min()), np.log10(sz.max()) + 1e-9, 10)
            hist, _ = np.histogram(sz, edges)
            hist_pts.append((t, np.sqrt(edges[1:] * edges[:-1]), hist / np.diff(edges)))
    plots.figure(
        os.path.join(workdir, "drop_sizes_rough_vs_smooth.png"),
        lines=hist_pts,
        title="stress-drop size distributions (counts per unit drop)",
        xlabel="drop / P",
        ylabel="N(drop)",
        logx=True,
        logy=True,
    )
    points, lines = [], []
    for t, a in results.items():
        m = a["with_drop"]
        points.append((f"{t}: stress released per scan interval", a["xi"][m], a["released"][m]))
        reg = a["reg"]
        if np.isfinite(reg["slope"]):
            xx = np.linspace(np.nanmin(a["xi"][m]), np.nanmax(a["xi"][m]), 20)
            lines.append(
                (
                    f"{t}: slope {reg['slope']:.3g}, R2 {reg['r2']:.2f}",
                    xx,
                    reg["slope"] * xx + reg["intercept"],
                )
            )
    plots.figure(
        os.path.join(workdir, "drop_vs_xi.png"),
        lines=lines,
        points=points,
        title="stress drop vs correlation length of the non-affine displacement",
        xlabel="xi / d",
        ylabel="drop / P",
    )
