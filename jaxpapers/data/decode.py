"""Bounded image decoding for files from outside (image folders, encoded records).

An image file states its own width and height, and a few hundred bytes of PNG or JPEG can claim
a 100000 x 100000 picture (tens of GB once decoded). `open_image` therefore reads only the header
and refuses anything over ``max_pixels`` before a pixel buffer is allocated; `decode_image`
then converts and resizes. Every failure is a ``ValueError`` of one line that names the file.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

# Larger than any photograph of the paper data sets (ImageNet's largest is ~ 4000 x 5000, FFHQ's
# in-the-wild originals stay below 6000 x 6000) and small enough that one decode fits any host.
MAX_PIXELS = 1 << 26  # 67M pixels, ~200 MB as RGB
CROPS = ("stretch", "center")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def open_image(src, *, where: str = "", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Opens a path or encoded bytes and checks the declared size (nothing decoded yet)."""
    where = where or (repr(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else "<bytes>")
    try:
        img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"Cannot decode image file {where}: {_one_line(e)}") from e
    w, h = img.size
    if not (0 < w and 0 < h and w * h <= max_pixels):
        img.close()
        raise ValueError(
            f"Image file {where} declares {w}x{h} pixels, outside (0, {max_pixels}]; it is "
            "refused before decoding (raise data.max_pixels if the file is genuine)."
        )
    return img


def crop_box(w: int, h: int, size: tuple[int, int], crop: str) -> tuple[int, int, int, int]:
    """The source box resized to ``size`` (H, W): the whole image ('stretch', aspect not kept)
    or the largest centred box of the target's aspect ratio ('center'; for a square target
    BigGAN's CenterCropLongEdge)."""
    if crop == "stretch":
        return 0, 0, w, h
    if crop != "center":
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}.")
    th, tw = size
    cw, ch = (w, w * th // tw) if w * th <= h * tw else (h * tw // th, h)
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def decode_image(
    src,
    size: tuple[int, int],
    channels: int,
    *,
    crop: str = "stretch",
    where: str = "",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """A path or encoded bytes -> (H, W, C) uint8 (grey 'L' for 1 channel, else RGB), bilinear."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    img = open_image(src, where=where, max_pixels=max_pixels)
    where = where or (repr(os.fspath(src)) if isinstance(src, (str, os.PathLike)) else "<bytes>")
    try:
        with img:
            img = img.convert("L" if channels == 1 else "RGB")
            box = crop_box(*img.size, tuple(size), crop)
            img = img.resize((size[1], size[0]), Image.BILINEAR, box=box)
            arr = np.asarray(img, np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"Cannot decode image file {where}: {_one_line(e)}") from e
    return arr[..., None] if channels == 1 else arr


def shape_array(
    image: np.ndarray, size: tuple[int, int], channels: int, crop: str = "stretch"
) -> np.ndarray:
    """An already decoded uint8 image (H, W[, C]) brought to (size, channels) like decode_image."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.dtype != np.uint8 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected a uint8 (H, W, C) image, got {image.dtype} {image.shape}.")
    if image.shape[:2] == tuple(size) and image.shape[-1] == channels:
        return image
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[image.shape[-1]]
    img = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
    img = img.convert("L" if channels == 1 else "RGB")
    img = img.resize((size[1], size[0]), Image.BILINEAR, box=crop_box(*img.size, size, crop))
    arr = np.asarray(img, np.uint8)
    return arr[..., None] if channels == 1 else arr


def fit_scale(w: int, h: int, short: int, max_long: int, canvas: tuple[int, int]) -> float:
    """Detectron's test-time scale (shorter side to ``short``, longer side at most ``max_long``),
    lowered further where the frame would not fit the (H, W) ``canvas`` (portrait frames)."""
    scale = min(short / min(w, h), max_long / max(w, h), canvas[0] / h, canvas[1] / w)
    if not scale > 0:
        raise ValueError(f"Cannot scale a {w}x{h} frame to the canvas {canvas}.")
    return scale


def decode_to_canvas(
    src,
    canvas: tuple[int, int],
    short: int,
    max_long: int,
    *,
    where: str = "",
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray, tuple[float, float]]:
    """A path or encoded bytes -> (uint8 RGB ``canvas`` (H, W, 3) with the frame resized by
    `fit_scale` (aspect kept, bilinear) in its top-left corner and zeros elsewhere, (x, y) factors
    from the file's pixels to the canvas's, for its boxes). The declared size is checked first."""
    with open_image(src, where=where, max_pixels=max_pixels) as img:
        w, h = img.size
    scale = fit_scale(w, h, short, max_long, canvas)
    rh, rw = min(canvas[0], max(1, round(h * scale))), min(canvas[1], max(1, round(w * scale)))
    out = np.zeros((*canvas, 3), np.uint8)
    out[:rh, :rw] = decode_image(src, (rh, rw), 3, where=where, max_pixels=max_pixels)
    return out, (rw / w, rh / h)
