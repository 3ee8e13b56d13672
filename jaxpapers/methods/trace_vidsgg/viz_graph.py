"""Pictures: a key frame with its predicted scene graph (top triplets) and its HRTree (PIL only)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from jaxpapers.methods.trace_vidsgg import hrtree, synthetic

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
]


def draw_example(
    frame: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rel: np.ndarray,
    gt: np.ndarray,
    top: int = 6,
    scale: int = 5,
) -> Image.Image:
    """frame (S,S,3) uint8; boxes (n,4); labels (n,); rel (n,n,P) scores; gt (n,n,P) 0/1."""
    n, size = len(boxes), frame.shape[0]
    img = Image.fromarray(frame).resize((size * scale, size * scale), Image.NEAREST)
    d = ImageDraw.Draw(img)
    layers, node_boxes = hrtree.build_layers_np(boxes)
    for i in range(n, len(node_boxes)):  # region nodes: thin white outlines
        d.rectangle(list(node_boxes[i] * scale), outline=(255, 255, 255), width=1)
    for i in range(n):
        col = _PALETTE[i % len(_PALETTE)]
        d.rectangle(list(boxes[i] * scale), outline=col, width=3)
        d.text(
            (boxes[i, 0] * scale + 3, boxes[i, 1] * scale + 2),
            f"{i}:{synthetic.CLASSES[labels[i]]}",
            fill=col,
        )
    # Side panel: top triplets (green = in GT) and the tree, one row per level.
    panel = Image.new("RGB", (300, img.height), (255, 255, 255))
    p = ImageDraw.Draw(panel)
    s, o, q = np.nonzero(~np.eye(n, dtype=bool)[..., None] & np.ones_like(rel, bool))
    order = np.argsort(-rel[s, o, q])[:top]
    p.text((5, 5), "top predicted triplets", fill=(0, 0, 0))
    for r, k in enumerate(order):
        ok = gt[s[k], o[k], q[k]] > 0
        p.text(
            (5, 22 + 15 * r),
            f"{s[k]} {synthetic.PREDICATES[q[k]]} {o[k]}  {rel[s[k], o[k], q[k]]:.2f}",
            fill=(0, 140, 0) if ok else (200, 0, 0),
        )
    y0 = 40 + 15 * top
    p.text((5, y0), "HRTree (leaves at the bottom)", fill=(0, 0, 0))
    levels = [list(range(n))] + [sorted(lay) for lay in layers]
    pos = {}
    height = img.height - y0 - 40
    for li, ids in enumerate(levels):
        y = y0 + 20 + height - li * height / max(len(levels) - 1, 1)
        for j, v in enumerate(ids):
            pos[v] = (20 + (j + 0.5) * 260 / len(ids), y)
    for lay in layers:
        for par, ch in lay.items():
            for c in ch:
                p.line([pos[c], pos[par]], fill=(120, 120, 120), width=1)
    for v, (x, y) in pos.items():
        col = _PALETTE[v % len(_PALETTE)] if v < n else (0, 0, 0)
        p.ellipse([x - 6, y - 6, x + 6, y + 6], outline=col, width=2)
        p.text((x - 4, y - 20 if v >= n else y + 8), str(v), fill=col)
    out = Image.new("RGB", (img.width + panel.width, img.height))
    out.paste(img, (0, 0))
    out.paste(panel, (img.width, 0))
    return out


def save_examples(workdir: str, src: dict, pred: dict, config, count: int = 3) -> list[str]:
    """Writes scene_graph_<i>.png for the first ``count`` test frames with relations."""
    os.makedirs(workdir, exist_ok=True)
    paths = []
    key = config.model.clip_len // 2
    idx = [i for i in range(len(src["num_boxes"])) if src["rels"][i].any()][:count]
    for i in idx:
        k = int(src["num_boxes"][i])
        im = draw_example(
            src["frames"][i, key],
            src["boxes"][i, :k],
            src["labels"][i, :k],
            pred["rel"][i, :k, :k],
            src["rels"][i, :k, :k],
        )
        path = os.path.join(workdir, f"scene_graph_{i}.png")
        im.save(path)
        paths.append(path)
    return paths
