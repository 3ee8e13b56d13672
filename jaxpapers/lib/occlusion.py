"""Occlusion synthesis and FROM's occlusion patterns.

haibo-qiu/FROM lib/core/utils.py (get_grids, cal_IoU, occluded_image_ratio),
lib/datasets/dataset.py (WebFace_LMDB.occlude_img) and data/generate_occ_lfw.py.

Boxes are (y0, x0, y1, x1) with exclusive ends, in pixels of an (H, W) image.

Patterns (the targets of FROM's occlusion-pattern predictor): cut the image by a K x K grid
(cut points linspace(0, W|H, K+1) as ints); pattern 0 is the empty mask, then every rectangle whose
corners are grid vertices, enumerated like `get_grids`: start vertex (row-major over (y, x)), then
end vertex (row-major), keeping end.y > start.y and end.x > start.x.  Count = 1 + C(K+1, 2)^2
(K=4: 101, K=5: 226).  A sample's label is argmax IoU(pattern, occluder box) with np.argmax's
first-index tie rule; a clean image (empty box) gets label 0.

Pasting (`occluded_image_ratio`): occluder resized to (min(W-1, int(f*w)), min(H-1, int(f*h))) with
f from {1.0, 1.5, ..., 5.0}; centre (cx, cy) uniform over the image pixels; box = [c - n//2,
c + (n+1)//2) per axis, clipped to the image; rectangular paste (no alpha).  One deviation: the
official mask clips the end to W-1 / H-1, leaving the last row/column out of the mask although
the occluder covers it; we clip to W / H so the box equals the pasted pixels.

The paper's occluder images (PDSN) are not available here: `procedural_occluders` draws the same
nine classes as textured shapes on a textured rectangle, and `load_occluders` reads real occluder
images from a folder.  `build_bank` pre-resizes every occluder at every scale so that
`occlude_batch` runs on device inside a jitted step (same pixels as the NumPy `paste_occluder`).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

OCCLUDER_CLASSES = (
    "book_cover",
    "cup",
    "eye_mask",
    "eyeglasses",
    "hand",
    "mouth_mask",
    "phone",
    "scarf",
    "sunglasses",
)
TRAIN_FACTORS = tuple(np.linspace(1.0, 5.0, 9))  # {1.0, 1.5, ..., 5.0}
TEST_FACTOR = 2.0  # data/generate_occ_lfw.py
TEST_SEED = 100

# get_occ_boxs_v2 in data/generate_occ_lfw.py, (x0, y0, x1, y1) on a 96 x 112 (W x H) face.
REGION_BOXES_96x112 = {
    "left_eye": (10, 30, 50, 70),
    "right_eye": (50, 30, 90, 70),
    "twoeyes": (10, 30, 90, 70),
    "nose": (34, 48, 62, 86),
    "mouth": (25, 82, 75, 107),
    "down_face": (8, 60, 92, 110),
    "up_face": (8, 8, 92, 72),
    "left_face": (8, 8, 50, 100),
    "right_face": (50, 8, 92, 100),
}


def num_patterns(k: int) -> int:
    """1 + C(K+1, 2)^2."""
    return 1 + math.comb(k + 1, 2) ** 2


def pattern_boxes(h: int, w: int, k: int) -> np.ndarray:
    """(P, 4) int32 pattern rectangles (y0, x0, y1, x1); row 0 is the empty pattern (all zero)."""
    xs = np.linspace(0, w, k + 1, endpoint=True, dtype=int)
    ys = np.linspace(0, h, k + 1, endpoint=True, dtype=int)
    verts = [(y, x) for y in ys for x in xs]
    boxes = [(0, 0, 0, 0)]
    for sy, sx in verts:
        for ey, ex in verts:
            if ey > sy and ex > sx:
                boxes.append((sy, sx, ey, ex))
    out = np.asarray(boxes, np.int32)
    assert len(out) == num_patterns(k)
    return out


def box_to_mask(box: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) float mask of a box."""
    m = np.zeros((h, w), np.float32)
    y0, x0, y1, x1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = 1.0
    return m


def mask_iou_label(mask: np.ndarray, patterns: np.ndarray) -> int:
    """Official `cal_similarity_label` on pixel masks: argmax_p IoU(pattern_p, mask)."""
    h, w = mask.shape
    scores = []
    for box in patterns:
        g = box_to_mask(box, h, w)
        scores.append(np.sum(g * mask) / (np.sum(np.clip(g + mask, 0, 1)) + 1e-10))
    return int(np.argmax(scores))


def box_iou(box: jax.Array, patterns: jax.Array) -> jax.Array:
    """Analytic IoU of a box (..., 4) with each pattern (P, 4) -> (..., P); equals pixel IoU."""
    box = box[..., None, :].astype(jnp.float32)
    pat = patterns.astype(jnp.float32)
    ih = jnp.clip(jnp.minimum(box[..., 2], pat[:, 2]) - jnp.maximum(box[..., 0], pat[:, 0]), 0)
    iw = jnp.clip(jnp.minimum(box[..., 3], pat[:, 3]) - jnp.maximum(box[..., 1], pat[:, 1]), 0)
    inter = ih * iw
    area_b = (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])
    area_p = (pat[:, 2] - pat[:, 0]) * (pat[:, 3] - pat[:, 1])
    return inter / (area_b + area_p - inter + 1e-10)


def pattern_labels(boxes: jax.Array, patterns: jax.Array) -> jax.Array:
    """Max-IoU pattern id per box (..., 4) -> (...,) int32; empty boxes -> 0."""
    return jnp.argmax(box_iou(boxes, patterns), axis=-1).astype(jnp.int32)


def region_boxes(h: int, w: int) -> dict[str, tuple[int, int, int, int]]:
    """FROM's fixed region boxes scaled to (h, w), as (y0, x0, y1, x1)."""
    out = {}
    for name, (x0, y0, x1, y1) in REGION_BOXES_96x112.items():
        out[name] = (
            round(y0 * h / 112),
            round(x0 * w / 96),
            round(y1 * h / 112),
            round(x1 * w / 96),
        )
    return out


def scaled_size(
    occ_hw: tuple[int, int], image_hw: tuple[int, int], factor: float
) -> tuple[int, int]:
    """(new_h, new_w) = (min(H-1, int(f*h)), min(W-1, int(f*w))), at least 1 pixel."""
    (oh, ow), (h, w) = occ_hw, image_hw
    return max(1, min(h - 1, int(factor * oh))), max(1, min(w - 1, int(factor * ow)))


def paste_box(center: tuple[int, int], size: tuple[int, int], image_hw: tuple[int, int]):
    """Unclipped start/end and clipped box of an occluder of `size` centred at `center` (y, x)."""
    (cy, cx), (nh, nw), (h, w) = center, size, image_hw
    sy, sx = cy - nh // 2, cx - nw // 2
    ey, ex = cy + (nh + 1) // 2, cx + (nw + 1) // 2
    return (sy, sx), (max(sy, 0), max(sx, 0), min(ey, h), min(ex, w))


def resize_occluder(occ: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bicubic resize (as PIL.Image.resize in the official code) to (h, w)."""
    img = Image.fromarray(occ)
    return np.asarray(img.resize((size[1], size[0]), Image.BICUBIC))


def paste_occluder(
    image: np.ndarray, occ: np.ndarray, center: tuple[int, int], factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference paste.  Returns (occluded image, clipped box (4,) int32)."""
    h, w = image.shape[:2]
    size = scaled_size(occ.shape[:2], (h, w), factor)
    occ_r = resize_occluder(occ, size)
    (sy, sx), box = paste_box(center, size, (h, w))
    y0, x0, y1, x1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = occ_r[y0 - sy : y1 - sy, x0 - sx : x1 - sx, : image.shape[2]]
    return out, np.asarray(box, np.int32)


def _texture(rng: np.random.RandomState, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Smooth random texture around a base colour (stripes + low-frequency noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    f = rng.uniform(0.2, 1.2)
    stripes = 25 * np.sin(f * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)))
    noise = rng.normal(0, 12, (h, w))
    img = base[None, None, :] + (stripes + noise)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# Native occluder size as (height, width) fractions of a 112 x 96 face [unverified: PDSN's images'
# native sizes are not known here]; factors 1..5 then span small to face-covering occluders.
_NATIVE_FRAC = {
    "book_cover": (0.30, 0.25),
    "cup": (0.25, 0.18),
    "eye_mask": (0.12, 0.30),
    "eyeglasses": (0.10, 0.35),
    "hand": (0.30, 0.22),
    "mouth_mask": (0.20, 0.30),
    "phone": (0.28, 0.14),
    "scarf": (0.20, 0.45),
    "sunglasses": (0.12, 0.35),
}


def _draw_shape(name: str, draw: ImageDraw.ImageDraw, h: int, w: int, col: tuple, rng) -> None:
    """Draws the class' silhouette in `col` over the textured background."""
    if name in ("sunglasses", "eyeglasses", "eye_mask"):
        r = int(w * 0.22)
        for cx in (w * 0.27, w * 0.73):
            draw.ellipse(
                (cx - r, h * 0.15, cx + r, h * 0.85),
                fill=col if name != "eyeglasses" else None,
                outline=col,
                width=max(1, h // 6),
            )
        draw.line((w * 0.45, h * 0.45, w * 0.55, h * 0.45), fill=col, width=max(1, h // 8))
    elif name in ("mouth_mask", "scarf"):
        draw.rounded_rectangle((0, h * 0.1, w - 1, h - 1), radius=max(1, h // 4), fill=col)
        for k in range(1, 4):
            draw.line((0, h * k / 4, w, h * k / 4), fill=tuple(c // 2 for c in col), width=1)
    elif name == "hand":
        draw.ellipse((w * 0.1, h * 0.4, w * 0.9, h - 1), fill=col)
        for k in range(4):
            x = w * (0.15 + 0.2 * k)
            draw.rounded_rectangle(
                (x, h * 0.05 + rng.randint(0, max(1, h // 8)), x + w * 0.15, h * 0.6),
                radius=max(1, w // 12),
                fill=col,
            )
    elif name == "cup":
        draw.rectangle((w * 0.15, h * 0.1, w * 0.75, h * 0.95), fill=col)
        draw.ellipse((w * 0.6, h * 0.3, w * 0.98, h * 0.7), outline=col, width=max(1, w // 10))
    else:  # book_cover, phone
        draw.rectangle((w * 0.05, h * 0.05, w * 0.95, h * 0.95), fill=col)
        draw.rectangle((w * 0.2, h * 0.2, w * 0.8, h * 0.45), fill=tuple(255 - c for c in col))


def procedural_occluders(
    seed: int = 0, variants: int = 3, image_hw: tuple[int, int] = (112, 96), grayscale: bool = False
) -> list[tuple[str, np.ndarray]]:
    """Generates `variants` occluders per FROM class as (class name, uint8 (h, w, 3) image)."""
    rng = np.random.RandomState(seed)
    out = []
    for name in OCCLUDER_CLASSES:
        for _ in range(variants):
            fh, fw = _NATIVE_FRAC[name]
            jitter = rng.uniform(0.85, 1.15)
            h = max(2, int(round(fh * image_hw[0] * jitter)))
            w = max(2, int(round(fw * image_hw[1] * jitter)))
            bg = _texture(rng, h, w, rng.uniform(30, 225, 3))
            img = Image.fromarray(bg)
            col = tuple(int(v) for v in rng.randint(0, 256, 3))
            _draw_shape(name, ImageDraw.Draw(img), h, w, col, rng)
            arr = np.asarray(img.convert("RGB"))
            if grayscale:
                arr = np.repeat(np.asarray(img.convert("L"))[..., None], 3, axis=-1)
            out.append((name, arr))
    return out


def load_occluders(folder: str, grayscale: bool = False) -> list[tuple[str, np.ndarray]]:
    """Reads occluder images (png/jpg/bmp) below `folder`; the class is the parent folder name."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Occluder folder not found: {folder}")
    out = []
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")):
                img = Image.open(os.path.join(root, f))
                arr = np.asarray(img.convert("L" if grayscale else "RGB"))
                if grayscale:
                    arr = np.repeat(arr[..., None], 3, axis=-1)
                out.append((os.path.basename(root), arr))
    if not out:
        raise ValueError(f"No occluder images (png/jpg/bmp) found under {folder}.")
    return out


def build_bank(
    occluders: list[tuple[str, np.ndarray]],
    image_hw: tuple[int, int],
    factors: tuple[float, ...] = TRAIN_FACTORS,
) -> dict[str, np.ndarray]:
    """Pre-resizes each occluder at each factor into a (n_occ, n_f, H-1, W-1, 3) canvas.

    Returns dict(canvas uint8, sizes int32 (n_occ, n_f, 2)).
    """
    h, w = image_hw
    canvas = np.zeros((len(occluders), len(factors), h - 1, w - 1, 3), np.uint8)
    sizes = np.zeros((len(occluders), len(factors), 2), np.int32)
    for i, (_, occ) in enumerate(occluders):
        for j, f in enumerate(factors):
            size = scaled_size(occ.shape[:2], image_hw, f)
            canvas[i, j, : size[0], : size[1]] = resize_occluder(occ, size)[..., :3]
            sizes[i, j] = size
    return dict(canvas=canvas, sizes=sizes)


def occlude_one(
    image: jax.Array,
    canvas: jax.Array,
    sizes: jax.Array,
    occ_idx: jax.Array,
    factor_idx: jax.Array,
    center: jax.Array,
    clean: jax.Array,
):
    """Pastes bank occluder (occ_idx, factor_idx) centred at `center` (y, x) unless `clean`.

    Returns (image (H, W, C) same dtype, box (4,) int32; zeros when clean).
    """
    h, w, c = image.shape
    nh, nw = sizes[occ_idx, factor_idx, 0], sizes[occ_idx, factor_idx, 1]
    sy, sx = center[0] - nh // 2, center[1] - nw // 2
    ey, ex = center[0] + (nh + 1) // 2, center[1] + (nw + 1) // 2
    ys, xs = jnp.arange(h), jnp.arange(w)
    inside = ((ys >= sy) & (ys < ey))[:, None] & ((xs >= sx) & (xs < ex))[None, :]
    inside = inside & ~clean
    occ = canvas[occ_idx, factor_idx]
    iy = jnp.clip(ys - sy, 0, occ.shape[0] - 1)
    ix = jnp.clip(xs - sx, 0, occ.shape[1] - 1)
    patch = occ[iy[:, None], ix[None, :]][..., :c].astype(image.dtype)
    out = jnp.where(inside[..., None], patch, image)
    box = jnp.stack(
        [jnp.maximum(sy, 0), jnp.maximum(sx, 0), jnp.minimum(ey, h), jnp.minimum(ex, w)]
    ).astype(jnp.int32)
    return out, jnp.where(clean, jnp.zeros_like(box), box)


def occlude_batch(
    key: jax.Array,
    images: jax.Array,
    bank: dict[str, jax.Array],
    clean_ratio: int,
    patterns: jax.Array,
):
    """FROM's training-time synthesis on device: each image clean w.p. 1/clean_ratio, else one
    random occluder at a random factor and uniformly random centre.

    Args:
      key: PRNG key.
      images: (N, H, W, C) images (any dtype).
      bank: `build_bank` output (as arrays).
      clean_ratio: `ratio` of the official loader (start.sh uses 3 -> 1/3 clean).
      patterns: (P, 4) `pattern_boxes`.

    Returns:
      (occluded images, boxes (N, 4), pattern labels (N,) int32).
    """
    n, h, w, _ = images.shape
    k_occ, k_f, k_y, k_x, k_c = jax.random.split(key, 5)
    canvas, sizes = jnp.asarray(bank["canvas"]), jnp.asarray(bank["sizes"])
    occ_idx = jax.random.randint(k_occ, (n,), 0, sizes.shape[0])
    f_idx = jax.random.randint(k_f, (n,), 0, sizes.shape[1])
    center = jnp.stack(
        [jax.random.randint(k_y, (n,), 0, h), jax.random.randint(k_x, (n,), 0, w)], axis=-1
    )
    clean = jax.random.randint(k_c, (n,), 0, clean_ratio) == 0
    out, boxes = jax.vmap(occlude_one, in_axes=(0, None, None, 0, 0, 0, 0))(
        images, canvas, sizes, occ_idx, f_idx, center, clean
    )
    return out, boxes, pattern_labels(boxes, jnp.asarray(patterns))


def occlude_dataset(
    images: np.ndarray,
    occluders: list[tuple[str, np.ndarray]],
    seed: int = TEST_SEED,
    factor: float = TEST_FACTOR,
    region: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic occluded test set (generate_occ_lfw.py): one random occluder per image at a
    fixed factor and random centre, or resized into a fixed FROM region box when `region` is set.

    Returns (occluded uint8 images, boxes (N, 4)).
    """
    rng = np.random.RandomState(seed)
    h, w = images.shape[1:3]
    out, boxes = np.empty_like(images), np.zeros((len(images), 4), np.int32)
    for i, img in enumerate(images):
        occ = occluders[rng.randint(len(occluders))][1]
        if region is not None:
            y0, x0, y1, x1 = region_boxes(h, w)[region]
            out[i] = img
            out[i, y0:y1, x0:x1] = resize_occluder(occ, (y1 - y0, x1 - x0))[..., : img.shape[2]]
            boxes[i] = (y0, x0, y1, x1)
        else:
            center = (rng.randint(h), rng.randint(w))
            out[i], boxes[i] = paste_occluder(img, occ, center, factor)
    return out, boxes
