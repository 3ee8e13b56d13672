"""Figures of the analysis (matplotlib, Agg canvas, no pyplot): lines + markers on one pair of
axes (``figure``) and side-by-side particle maps coloured by a log-scaled value (``scatter_map``).

The pipeline names its axes by the reduced quantity (``sigma/P``, ``xi / d``, ...); ``AXIS_LABELS``
spells each out with its unit, so that a figure reads on its own at README size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

# Pipeline axis name -> the label drawn (quantity, symbol, unit). Stresses are in units of the
# confining pressure P, lengths in mean particle diameters d; strain and C(r) have no unit.
AXIS_LABELS = {
    "strain": r"shear strain $\gamma$ (dimensionless)",
    "sigma/P": r"shear stress $\sigma/P$ (units of confining pressure $P$)",
    "xi/d": r"correlation length $\xi/d$ (particle diameters)",
    "xi / d": r"correlation length $\xi/d$ (particle diameters)",
    "drop / P": r"stress drop $\Delta\sigma/P$ (units of $P$)",
    "P(drop)": r"probability density of $\Delta\sigma/P$ (per unit $\Delta\sigma/P$)",
    "N(drop)": r"drops per unit $\Delta\sigma/P$ (count)",
    "r / d": r"distance $r/d$ (particle diameters)",
    "C(r)": r"correlation $C(r)$ of non-affine displacements (dimensionless)",
}
DPI = 100


def axis_label(name: str) -> str:
    """The drawn label of a pipeline axis name (the name itself when it has no entry)."""
    return AXIS_LABELS.get(name, name)


def _figure(size: tuple[int, int]):
    """A Figure of exactly ``size`` pixels on the Agg canvas (no pyplot: no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure(
    path: str,
    lines: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
    points: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    logy: bool = False,
    size: tuple[int, int] = (720, 460),
) -> str:
    """Draws named line series and marker series on one pair of axes; writes a ``size`` PNG.

    Points that are not finite (or not positive on a log axis) are left out; a series left
    empty is still named in the legend, marked "(no data)".
    """
    fig = _figure(size)
    ax = fig.add_subplot()
    drawn = 0
    series = [(n, x, y, False) for n, x, y in lines] + [(n, x, y, True) for n, x, y in points]
    # As many lines as marker sets: the pipeline passes each fit with its data (the k-th line
    # fits the k-th marker set), so the pair shares a colour; otherwise every series has its own.
    paired = len(lines) == len(points)
    for k, (name, x, y, marker) in enumerate(series):
        x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
        keep = np.isfinite(x) & np.isfinite(y)
        keep &= (x > 0) if logx else True
        keep &= (y > 0) if logy else True
        x, y = x[keep], y[keep]
        color = f"C{(k % len(lines) if paired else k) % 10}"
        if not x.size:
            ax.plot([], [], color="0.6", label=f"{name} (no data)")
        elif marker:
            ax.plot(x, y, "o", mfc="none", ms=5, mew=1.5, color=color, label=name)
            drawn += 1
        else:
            few = x.size <= 20  # a short series shows its points on the line
            ax.plot(x, y, "-", lw=1.5, marker="." if few else None, color=color, label=name)
            drawn += 1
    if logx and drawn:
        ax.set_xscale("log")
    if logy and drawn:
        ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(axis_label(xlabel))
    ax.set_ylabel(axis_label(ylabel))
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def scatter_map(
    path: str,
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    vmin: float,
    vmax: float,
    title: str = "",
    size: int = 360,
) -> str:
    """Side-by-side panels of (x, y) discs coloured by log10(value) in [vmin, vmax] (viridis,
    one colour bar); non-finite values grey. Writes a PNG of size*len(panels) x size+40 pixels."""
    from matplotlib import cm, colors

    fig = _figure((size * len(panels), size + 40))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    norm = colors.Normalize(vmin=vmin, vmax=vmax)
    for ax, (name, x, y, val) in zip(axes, panels, strict=True):
        x, y, val = (np.asarray(a, float) for a in (x, y, val))
        ok = np.isfinite(val) & (val > 0)
        ax.scatter(x[~ok], y[~ok], s=18, color="0.8")
        ax.scatter(x[ok], y[ok], s=18, c=np.log10(val[ok]), cmap="viridis", norm=norm)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x (track length units)", fontsize=8)
        ax.set_ylabel("y (track length units)", fontsize=8)
        ax.tick_params(labelsize=7)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=list(axes), shrink=0.8)
    bar.set_label(r"$\log_{10}$ value", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    os.replace(tmp, path)
    return path
