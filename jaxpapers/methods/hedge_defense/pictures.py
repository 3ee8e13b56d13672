"""Pictures: points the hedge flips back (with class probabilities) and local gradient norms."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from jaxpapers import viz
from jaxpapers.methods.hedge_defense import defense


def flip_examples(
    path: str, logits_fn, x_adv: np.ndarray, y: np.ndarray, key, hcfg, k: int = 6
) -> int:
    """Adversarial inputs misclassified by the bare model but fixed by the hedge.

    Each row: the adversarial input, the hedged point, and bar charts of the class probabilities
    before (bare model) and after (hedge prediction; softmax of the summed logits). Returns the
    number of such points among ``x_adv``.
    """
    hedge_kw = defense.hedge_kwargs(hcfg)
    x = jnp.asarray(x_adv[:256])
    before = jax.nn.softmax(logits_fn(x))
    after_logits, x_t = jax.jit(lambda a, kk: defense.hedge(logits_fn, a, kk, **hedge_kw))(x, key)
    if hcfg.predict == "path_logit_sum":
        after_logits = after_logits / (hcfg.num_steps - 1)
    after = jax.nn.softmax(after_logits)
    yy = y[:256]
    flipped = np.nonzero((np.argmax(before, -1) != yy) & (np.argmax(after, -1) == yy))[0]
    rows = []
    for i in flipped[:k]:
        img = viz.to_uint8(
            np.concatenate([np.asarray(x[i]), np.asarray(x_t[i])], axis=1), (0.0, 1.0)
        )
        img = np.repeat(img, 3, -1) if img.shape[-1] == 1 else img
        pic = Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST)
        rows.append(_with_bars(pic, np.asarray(before[i]), np.asarray(after[i]), int(yy[i])))
    if rows:
        w = max(r.width for r in rows)
        canvas = Image.new("RGB", (w, sum(r.height for r in rows)), "white")
        top = 0
        for r in rows:
            canvas.paste(r, (0, top))
            top += r.height
        os.makedirs(os.path.dirname(path), exist_ok=True)
        canvas.save(path)
    return len(flipped)


def _with_bars(
    pic: Image.Image, p_before: np.ndarray, p_after: np.ndarray, label: int
) -> Image.Image:
    bar_w, h = 12, pic.height
    k = len(p_before)
    out = Image.new("RGB", (pic.width + 2 * (k * bar_w + 20), h + 14), "white")
    out.paste(pic, (0, 0))
    d = ImageDraw.Draw(out)
    for j, (probs, name) in enumerate(((p_before, "bare"), (p_after, "hedge"))):
        x0 = pic.width + 10 + j * (k * bar_w + 20)
        d.text((x0, h), name, fill="black")
        for c in range(k):
            top = h - int(probs[c] * (h - 4))
            color = (44, 160, 44) if c == label else (214, 39, 40)
            d.rectangle([x0 + c * bar_w, top, x0 + c * bar_w + bar_w - 3, h], fill=color)
    return out


def gradient_norm_histogram(path: str, logits_fn, x: np.ndarray, y: np.ndarray) -> dict:
    """Histogram of ‖∇_x CE(f(x), c)‖₁ for the true class vs the wrong classes (paper §3)."""
    norms = np.asarray(
        jax.jit(lambda a: defense.local_gradient_norms(logits_fn, a))(jnp.asarray(x[:256]))
    )
    yy = y[: len(norms)]
    true = norms[np.arange(len(norms)), yy]
    wrong = norms[~np.eye(norms.shape[1], dtype=bool)[yy]]
    hi = float(np.percentile(np.concatenate([true, wrong]), 99))
    bins = np.linspace(0, hi, 31)
    ht, _ = np.histogram(true, bins, density=True)
    hw, _ = np.histogram(wrong, bins, density=True)
    centers = 0.5 * (bins[1:] + bins[:-1])
    viz.save_plot(
        path,
        {"true class": (centers, ht), "wrong classes": (centers, hw)},
        title="local gradient norm of CE per class",
        xlabel="||grad_x CE||_1",
        ylabel="density",
    )
    return {
        "grad_norm_true_median": float(np.median(true)),
        "grad_norm_wrong_median": float(np.median(wrong)),
    }
