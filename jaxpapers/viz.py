"""Pictures a person would rather look at than read: image grids (PIL), plots and labelled image
tables (matplotlib on its Agg canvas, no display needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image


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


def write_mp4(path: str, frames: np.ndarray, fps: float) -> str:
    """Writes uint8 RGB frames [T, H, W, 3] as an MP4 with PyAV; returns path.

    H.264, or MPEG-4 Part 2 where PyAV's FFmpeg lacks libx264; both store yuv420p, which halves
    the chroma planes, so H and W must be even (callers pad or crop).
    """
    import av

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"write_mp4 needs even frame sizes (yuv420p), got {h}x{w}.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    return path


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


def _figure(size: tuple[int, int], dpi: int = 100):
    """A matplotlib Figure on the Agg canvas, without pyplot (no global backend switch, so a
    notebook's inline backend is left alone, and no figure registry to leak from)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plots need matplotlib: pip install matplotlib (or pip install -e . in the repository)."
        ) from e

    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, format="png", facecolor="white")
    os.replace(tmp, path)
    return path


def _no_data(ax, message: str = "no data") -> None:
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="0.4",
        fontsize=14,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def save_plot(
    path: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 420),
    scatter: bool = False,
    *,
    xscale: str = "linear",
    yscale: str = "linear",
) -> str:
    """A line (or scatter) plot of named ``(x, y)`` series as PNG (matplotlib, Agg); returns path.

    ``xscale``/``yscale`` ``"log"`` draws a log axis labelled in powers of ten; points that are
    not finite (or not positive on a log axis) are left out. A series without any point to draw
    shows as "(no data)" in the legend, and a plot with none at all as a "no data" panel.
    """
    fig = plot_figure(series, title, xlabel, ylabel, size, scatter, xscale=xscale, yscale=yscale)
    return _save_figure(fig, path)


def plot_figure(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 420),
    scatter: bool = False,
    *,
    xscale: str = "linear",
    yscale: str = "linear",
):
    """The matplotlib Figure that `save_plot` writes."""
    fig = _figure(size)  # first: its import error names the missing package
    from matplotlib import ticker

    ax = fig.add_subplot()
    drawn, empty = 0, []
    for name, (x, y) in series.items():
        x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
        n = min(len(x), len(y))
        x, y = x[:n], y[:n]
        keep = np.isfinite(x) & np.isfinite(y)
        if xscale == "log":
            keep &= x > 0
        if yscale == "log":
            keep &= y > 0
        x, y = x[keep], y[keep]
        if not len(x):
            empty.append(name)
            continue
        drawn += 1
        if scatter:
            ax.scatter(x, y, s=12, label=name)
        else:
            ax.plot(x, y, marker="o" if len(x) <= 20 else None, markersize=3, label=name)
    for name in empty:  # Keeps the colour cycle's meaning: an empty series is named, not lost.
        ax.plot([], [], label=f"{name} (no data)", color="0.6")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if not drawn:
        _no_data(ax)
    else:
        for axis, scale in ((ax.xaxis, xscale), (ax.yaxis, yscale)):
            if scale == "log":
                getattr(ax, f"set_{axis.axis_name}scale")("log")
                axis.set_major_locator(ticker.LogLocator(base=10))
                axis.set_major_formatter(ticker.LogFormatterSciNotation(base=10))
            else:
                axis.set_major_locator(ticker.MaxNLocator(nbins=6))
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one entry per name
    if unique:
        ax.legend(unique.values(), unique.keys(), loc="best", fontsize="small")
    return fig


def save_image_table(path: str, cells, row_labels, cell_titles=None, cell_colors=None, **kw) -> str:
    """Writes `image_table_figure` as PNG; returns the path."""
    return _save_figure(image_table_figure(cells, row_labels, cell_titles, cell_colors, **kw), path)


def image_table_figure(
    cells: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str],
    cell_titles: Sequence[Sequence[str]] | None = None,
    cell_colors: Sequence[Sequence[str]] | None = None,
    title: str = "",
    cell_inches: float = 1.2,
    value_range: tuple[float, float] | None = (0.0, 1.0),
):
    """A labelled table of images: one row per ``row_labels`` entry, a title over each cell.

    A cell that is None shows its title as a note in an empty panel (e.g. "not attacked").
    Images are HWC (C = 1 or 3) floats in ``value_range`` or uint8.
    """
    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    fig = _figure((int(100 * (cols * cell_inches + 1.2)), int(100 * (rows * cell_inches + 0.8))))
    if not rows or not cols:
        _no_data(fig.add_subplot(), "no examples")
        if title:
            fig.suptitle(title)
        return fig
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            image = cells[r][c] if c < len(cells[r]) else None
            text = cell_titles[r][c] if cell_titles and c < len(cell_titles[r]) else ""
            color = cell_colors[r][c] if cell_colors and c < len(cell_colors[r]) else "black"
            if image is None:
                if text:
                    ax.text(
                        0.5,
                        0.5,
                        text,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=color,
                        wrap=True,
                        transform=ax.transAxes,
                    )
            else:
                img = to_uint8(image, value_range)
                ax.imshow(
                    img[..., 0] if img.shape[-1] == 1 else img,
                    cmap="gray",
                    vmin=0,
                    vmax=255,
                    interpolation="nearest",
                )
                ax.set_title(text, fontsize=7, color=color)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _atomic_png(img: Image.Image, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
