"""Pictures a person would rather look at than read: image grids and line plots (PIL only)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(images: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Float images in ``value_range`` (default: [-1, 1] if any value < 0 else [0, 1]) to uint8."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    images = images.astype(np.float32)
    if value_range is None:
        value_range = (-1.0, 1.0) if images.min() < 0 else (0.0, 1.0)
    lo, hi = value_range
    return np.clip((images - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tiles NHWC images (C = 1 or 3) into one HWC uint8 image."""
    images = to_uint8(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"Expected NHWC images with 1 or 3 channels, got shape {images.shape}.")
    n, h, w, c = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    grid = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + q * (w + pad) : pad + q * (w + pad) + w,
        ] = images[i]
    return grid


def save_image_grid(path: str, images: np.ndarray, nrow: int | None = None, scale: int = 1) -> str:
    """Writes an image grid as PNG (atomically) and returns the path."""
    grid = image_grid(np.asarray(images), nrow)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    _atomic_png(img, path)
    return path


def save_plot(
    path: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 420),
    scatter: bool = False,
) -> str:
    """A minimal line/scatter plot of named (x, y) series, drawn with PIL (no matplotlib needed)."""
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    w, h = size
    left, right, top, bottom = 70, 20, 30, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()] or [np.zeros(1)])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()] or [np.zeros(1)])
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = (xs[finite], ys[finite]) if finite.any() else (np.zeros(1), np.zeros(1))
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    y0, y1 = float(ys.min()), float(ys.max()) if ys.max() > ys.min() else float(ys.min()) + 1
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)
    py = lambda y: h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for t in np.linspace(0, 1, 5):
        d.text((left - 65, py(y0 + t * (y1 - y0)) - 5), f"{y0 + t * (y1 - y0):.3g}", fill="black")
        d.text(
            (px(x0 + t * (x1 - x0)) - 15, h - bottom + 5), f"{x0 + t * (x1 - x0):.3g}", fill="black"
        )
    for i, (name, (x, y)) in enumerate(series.items()):
        col = colors[i % len(colors)]
        pts = [
            (px(a), py(b)) for a, b in zip(x, y, strict=False) if np.isfinite(a) and np.isfinite(b)
        ]
        if scatter:
            for a, b in pts:
                d.ellipse([a - 2, b - 2, a + 2, b + 2], fill=col)
        elif len(pts) > 1:
            d.line(pts, fill=col, width=2)
        d.text((left + 10, top + 5 + 14 * i), name, fill=col)
    d.text((left, 8), title, fill="black")
    d.text((w // 2 - 30, h - 20), xlabel, fill="black")
    d.text((5, 8), ylabel, fill="black")
    _atomic_png(img, path)
    return path


def _atomic_png(img: Image.Image, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
