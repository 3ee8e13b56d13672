"""PIL-only figures (matplotlib is not a dependency): lines + markers, log axes, colour maps."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

COLORS = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
]


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
    """Draws named line series and marker series on one pair of axes; writes a PNG."""
    w, h = size
    left, right, top, bottom = 80, 20, 34, 52
    img = Image.new("RGB", size, "white")
    dr = ImageDraw.Draw(img)
    tx = (lambda v: np.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: np.log10(v)) if logy else (lambda v: v)

    def clean(x, y):
        x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
        m = (
            np.isfinite(x)
            & np.isfinite(y)
            & ((x > 0) if logx else True)
            & ((y > 0) if logy else True)
        )
        return tx(x[m]), ty(y[m])

    series = [(n, *clean(x, y), False) for n, x, y in lines]
    series += [(n, *clean(x, y), True) for n, x, y in points]
    xs = np.concatenate([s[1] for s in series] + [np.zeros(0)])
    ys = np.concatenate([s[2] for s in series] + [np.zeros(0)])
    if xs.size == 0:
        xs, ys = np.zeros(1), np.zeros(1)
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(ys.min()), float(ys.max())
    x1 = x1 if x1 > x0 else x0 + 1.0
    pad = 0.05 * (y1 - y0) if y1 > y0 else 0.5
    y0, y1 = y0 - pad, y1 + pad

    def px(v):
        return left + (v - x0) / (x1 - x0) * (w - left - right)

    def py(v):
        return h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom)

    dr.rectangle([left, top, w - right, h - bottom], outline="black")
    for t in np.linspace(0, 1, 5):
        yv, xv = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
        dr.text((4, py(yv) - 6), _fmt(yv, logy), fill="black")
        dr.text((px(xv) - 18, h - bottom + 6), _fmt(xv, logx), fill="black")
    for k, (name, x, y, marker) in enumerate(series):
        col = COLORS[k % len(COLORS)]
        pts = list(zip(px(x), py(y), strict=True))
        if marker:
            for a, b in pts:
                dr.ellipse([a - 3, b - 3, a + 3, b + 3], outline=col, width=2)
        elif len(pts) > 1:
            dr.line(pts, fill=col, width=2)
        dr.text((left + 10, top + 6 + 14 * k), name, fill=col)
    dr.text((left, 10), title, fill="black")
    dr.text((w // 2 - 40, h - 22), xlabel + (" (log)" if logx else ""), fill="black")
    dr.text((left + 4, top - 14), ylabel + (" (log)" if logy else ""), fill="black")
    return _save(img, path)


def _fmt(v: float, log: bool) -> str:
    return f"1e{v:.1f}" if log else f"{v:.3g}"


def scatter_map(
    path: str,
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    vmin: float,
    vmax: float,
    title: str = "",
    size: int = 360,
) -> str:
    """Side-by-side panels of (x, y) discs coloured by value (log10 scale, viridis-like)."""
    img = Image.new("RGB", (size * len(panels), size + 40), "white")
    dr = ImageDraw.Draw(img)
    for p, (name, x, y, val) in enumerate(panels):
        x, y, val = (np.asarray(a, float) for a in (x, y, val))
        if x.size == 0:
            continue
        x0, x1, y0, y1 = x.min() - 0.5, x.max() + 0.5, y.min() - 0.5, y.max() + 0.5
        s = (size - 20) / max(x1 - x0, y1 - y0)
        for a, b, v in zip(x, y, val, strict=True):
            t = np.clip((np.log10(max(v, 1e-300)) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
            col = _cmap(t) if np.isfinite(v) else (200, 200, 200)
            cx, cy = 10 + p * size + (a - x0) * s, 30 + size - 20 - (b - y0) * s
            r = 0.5 * s
            dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        dr.text((10 + p * size, 14), name, fill="black")
    dr.text((10, 2), f"{title}  colour: log10 value in [{vmin:.1f}, {vmax:.1f}]", fill="black")
    return _save(img, path)


def _cmap(t: float) -> tuple[int, int, int]:
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]])
    f = t * (len(stops) - 1)
    i = min(int(f), len(stops) - 2)
    c = stops[i] + (f - i) * (stops[i + 1] - stops[i])
    return tuple(int(v) for v in c)


def _save(img: Image.Image, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
