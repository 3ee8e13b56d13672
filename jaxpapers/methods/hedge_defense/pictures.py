"""Pictures: points the hedge flips back (with class probabilities) and local gradient norms."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import viz
from jaxpapers.methods.hedge_defense import defense


def flip_examples(
    path: str, logits_fn, x_adv: np.ndarray, y: np.ndarray, key, hcfg, k: int = 8
) -> int:
    """Adversarial inputs misclassified by the bare model but fixed by the hedge.

    A labelled table, one column per point: the adversarial input titled with the true class and
    the bare model's prediction, and below it the hedged point titled with the hedge's prediction
    (softmax of the summed logits); each title gives the probabilities of the predicted and the
    true class. Returns the number of such points among ``x_adv``.
    """
    hedge_kw = defense.hedge_kwargs(hcfg)
    x = jnp.asarray(x_adv[:256])
    before = np.asarray(jax.nn.softmax(logits_fn(x)))
    after_logits, x_t = jax.jit(lambda a, kk: defense.hedge(logits_fn, a, kk, **hedge_kw))(x, key)
    if hcfg.predict == "path_logit_sum":
        after_logits = after_logits / (hcfg.num_steps - 1)
    after = np.asarray(jax.nn.softmax(after_logits))
    yy = y[:256]
    flipped = np.nonzero((np.argmax(before, -1) != yy) & (np.argmax(after, -1) == yy))[0]
    shown = flipped[:k]
    cells = [[np.asarray(x[i]) for i in shown], [np.asarray(x_t[i]) for i in shown]]
    titles = [
        [
            f"true {yy[i]} (p {before[i, yy[i]]:.2f})\n"
            f"bare: {before[i].argmax()} (p {before[i].max():.2f})"
            for i in shown
        ],
        [f"hedge: {after[i].argmax()} (p {after[i].max():.2f})" for i in shown],
    ]
    colors = [["tab:red"] * len(shown), ["tab:green"] * len(shown)]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    viz.save_image_table(
        path,
        cells,
        ["attacked\n(bare model)", "hedged\n(defense)"],
        titles,
        colors,
        title=(
            f"hedge fixes {len(flipped)} of {len(x)} attacked points "
            f"(hedge eps {hcfg.eps:.3g}, {hcfg.num_steps} steps); first {len(shown)} shown"
        ),
    )
    return len(flipped)


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
