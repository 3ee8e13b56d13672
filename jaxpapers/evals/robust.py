"""Robust accuracy of a classifier: clean, PGD-k, CW-L∞, APGD-CE/-T, Square, AutoAttack standard.

AutoAttack *standard* (Croce & Hein 2020; `fra31/auto-attack:autoattack.py`, read) runs
APGD-CE → APGD-T → FAB-T → Square as a cascade: each attack starts from the clean image and only
sees the points still robust, so the last robust accuracy is the per-point worst case (AA issues
#45, #85). All four attacks are ours (`jaxpapers.lib.attacks`), with the reference budgets.

Data-parallel: each attack runs jitted (its iterations inside the program) on fixed-size batches
sharded over the devices of every process, and the adversarial points are gathered on every
process (`batching.map_batches` with a mesh); the cascade's bookkeeping (which points are still
robust) is NumPy on the host between attacks. Batches are cut and keyed as on one device and
only padded at their end for the device count, so the robust flags are one device's.

Command line (on a workdir written by `jaxpapers.main` for a method with a `logits_fn` hook, e.g.
`rat`): `python -m jaxpapers.tools.robust --workdir W --attacks aa_standard,pgd --eps 0.1 --n 1000`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxpapers import batching, parallel
from jaxpapers.lib import attacks

LogitsFn = Callable[[jax.Array], jax.Array]
AA_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
IMPLEMENTED = ("clean", "fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")


def make_attack(
    name: str,
    logits_fn: LogitsFn,
    *,
    eps: float,
    norm: str = "linf",
    pgd_steps: int = 20,
    pgd_step_size: float | None = None,
    apgd_steps: int = 100,
    num_target_classes: int = 9,
    square_queries: int = 5000,
    p_init: float = 0.8,
    fab_steps: int = 100,
) -> Callable:
    """`attack(x, y, key) -> x_adv` for one named attack with AutoAttack-standard budgets."""
    step = pgd_step_size if pgd_step_size is not None else 2.5 * eps / pgd_steps
    if name == "fgsm":
        return lambda x, y, k: attacks.fgsm(logits_fn, x, y, eps=eps)
    if name == "pgd":
        return lambda x, y, k: attacks.pgd(
            logits_fn, x, y, k, eps=eps, step_size=step, num_steps=pgd_steps, norm=norm
        )
    if name == "cw":
        return lambda x, y, k: attacks.pgd(
            logits_fn, x, y, k, eps=eps, step_size=step, num_steps=pgd_steps, norm=norm, loss="cw"
        )
    if name in ("apgd-ce", "apgd-dlr"):
        loss = name.split("-")[1]
        return lambda x, y, k: attacks.apgd(
            logits_fn, x, y, k, eps=eps, num_steps=apgd_steps, norm=norm, loss=loss
        )
    if name == "apgd-t":
        return _targeted(
            attacks.apgd_targeted,
            logits_fn,
            num_target_classes,
            eps=eps,
            num_steps=apgd_steps,
            norm=norm,
        )
    if name == "square":
        if norm != "linf":
            raise ValueError("only the L∞ Square attack is implemented")
        return lambda x, y, k: attacks.square_linf(
            logits_fn, x, y, k, eps=eps, num_queries=square_queries, p_init=p_init
        )
    if name == "fab-t":
        if norm != "linf":
            raise ValueError("only the L∞ FAB-T attack is implemented")
        return _targeted(
            attacks.fab_targeted, logits_fn, num_target_classes, eps=eps, num_steps=fab_steps
        )
    raise ValueError(f"unknown attack {name!r}; implemented: {IMPLEMENTED}")


def _targeted(attack: Callable, logits_fn: LogitsFn, num_target_classes: int, **kwargs):
    """`attack(x, y, key)` of a targeted attack over ``num_target_classes`` targets: AA uses 9
    (CIFAR-10); with K ≤ 9 classes only K − 1 targets exist."""

    def run(x, y, k):
        n_cls = jax.eval_shape(logits_fn, x).shape[-1]
        targets = min(num_target_classes, n_cls - 1)
        return attack(logits_fn, x, y, k, num_target_classes=targets, **kwargs)

    return run


BUDGETS = ("pgd_steps", "pgd_step_size", "apgd_steps", "square_queries")


def budgets(section) -> dict:
    """The `make_attack` budgets named in a config section (the ``eval`` of rat, hedge_defense)."""
    return {k: section[k] for k in BUDGETS}


def _batched(
    fn: Callable,
    x: np.ndarray,
    y: np.ndarray,
    key: jax.Array,
    batch_size: int,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Runs a jitted `fn(x, y, key)` over fixed-size (padded) batches; one compile per shape.

    Batch i (its first row) gets the key ``fold_in(key, i)``. With a ``mesh`` every batch is
    sharded over its ``data`` axis and the result gathered on every process
    (``batching.map_batches``); the numbers are those of one device.
    """
    if not len(x):
        return x[:0]
    # Equal batches of at most `batch_size`: padding wastes < one point per batch (AA's later
    # attacks see few points; 260 points in batches of 250 would otherwise pay for 500).
    num_batches = max(1, -(-len(x) // batch_size))
    batch_size = max(1, -(-len(x) // num_batches))
    if mesh is not None:
        key = parallel.replicate_full(key, mesh)
    return batching.map_batches(
        lambda i, xb, yb: fn(xb, yb, jax.random.fold_in(key, i)),
        x,
        y,
        batch_size=batch_size,
        mesh=mesh,
        with_start=True,
    )


def predictor(
    logits_fn: LogitsFn, batch_size: int, mesh: Mesh | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Jitted arg-max predictions over a whole array (compiled once per predictor and shape)."""
    fn = jax.jit(lambda xb, yb, k: jnp.argmax(logits_fn(xb), -1))
    key = jax.random.key(0)
    return lambda x: _batched(fn, x, np.zeros(len(x), np.int32), key, batch_size, mesh)


def evaluate(
    logits_fn: LogitsFn,
    x: np.ndarray,
    y: np.ndarray,
    key: jax.Array,
    *,
    eps: float,
    attacks_to_run: Sequence[str] = ("pgd",),
    cascade: bool = False,
    batch_size: int = 500,
    verbose: bool = False,
    mesh: Mesh | None = None,
    **budgets,
) -> dict:
    """Clean and robust accuracy of `logits_fn` on (x, y), x float in [0, 1].

    Args:
      attacks_to_run: names from IMPLEMENTED, or 'aa_standard' (expanded to AA_STANDARD).
      verbose: print one progress line per attack (points attacked, accuracy, seconds).
      cascade: run each attack only on the points still robust (AutoAttack semantics) and report
        the robust accuracy after each; otherwise every attack runs alone on every clean-correct
        point, and `worst_case` counts a point robust only if it survives all of them.
      mesh: the devices the attacks run data-parallel on (default: all devices of all
        processes, ``parallel.make_mesh()``); every process passes the same (x, y) and gets
        the whole result. The numbers do not depend on the number of devices (up to the
        float rounding of the per-device kernels): batches are cut as on one device.

    Returns:
      dict with 'clean', one accuracy per attack, 'worst_case', and arrays: the adversarial
      points ('x_adv', the first successful one per point, else x), the labels 'y' and the
      predictions on x and on x_adv ('pred_clean', 'pred_adv').
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    names: list[str] = []
    for a in attacks_to_run:
        names.extend(AA_STANDARD if a == "aa_standard" else [a])
    names = [a for a in names if a != "clean"]
    mesh = parallel.make_mesh() if mesh is None else mesh
    predict = predictor(logits_fn, batch_size, mesh)
    pred_clean = predict(x)
    correct = pred_clean == y
    robust = correct.copy()
    x_adv = x.copy()
    pred_adv = pred_clean.copy()  # the prediction on x_adv (for the example pictures)
    result: dict = {"clean": float(correct.mean()), "n": len(x), "eps": eps}
    for j, name in enumerate(names):
        t0 = time.time()
        fn = jax.jit(make_attack(name, logits_fn, eps=eps, **budgets))
        idx = np.nonzero(robust if cascade else correct)[0]
        adv = _batched(fn, x[idx], y[idx], jax.random.fold_in(key, j), batch_size, mesh)
        pred = predict(adv) if len(idx) else np.zeros(0, np.int32)
        ok = pred == y[idx]
        fooled = idx[~ok]
        first = fooled[robust[fooled]]  # keep the first successful point per example
        x_adv[first] = adv[~ok][robust[fooled]]
        pred_adv[first] = pred[~ok][robust[fooled]]
        robust[fooled] = False
        alone = correct.copy()
        alone[fooled] = False
        result[name] = float((robust if cascade else alone).mean())
        result[f"{name}_seconds"] = time.time() - t0
        if verbose:
            print(
                f"{name:<8} on {len(idx):>5} points: robust accuracy {result[name]:.4f} "
                f"({result[f'{name}_seconds']:.1f} s incl. compile)",
                flush=True,
            )
    result["worst_case"] = float(robust.mean())
    result.update(x_adv=x_adv, y=y, pred_clean=pred_clean, pred_adv=pred_adv)
    return result


def save(
    result: dict,
    workdir: str,
    x: np.ndarray,
    eps: float,
    prefix: str = "robust",
    num_pictures: int = 8,
) -> str:
    """Writes `<prefix>.json` (the numbers) and `<prefix>_examples.png` to workdir."""
    os.makedirs(workdir, exist_ok=True)
    table = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
    path = os.path.join(workdir, f"{prefix}.json")
    with open(path, "w") as f:
        json.dump(table, f, indent=2)
    if num_pictures:
        save_examples(
            os.path.join(workdir, f"{prefix}_examples.png"), result, x, eps, num_pictures, prefix
        )
    return path


def save_examples(
    path: str, result: dict, x: np.ndarray, eps: float, num: int = 8, name: str = "robust"
) -> str:
    """Rows clean / adversarial / perturbation for the first ``num`` points the model classifies
    correctly (an attack on an already-wrong point has nothing to show, so those are skipped).

    Each column is titled with the true and predicted classes; a point no attack fooled says so
    in place of an adversarial image (its perturbation would be a blank grey tile). Perturbations
    are scaled so that −ε is black and +ε white.
    """
    from jaxpapers import viz

    x = np.asarray(x, np.float32)
    y, pc, pa = result["y"], result["pred_clean"], result["pred_adv"]
    shown = np.nonzero(pc == y)[0][:num]
    cells: list[list] = [[], [], []]
    titles: list[list[str]] = [[], [], []]
    colors: list[list[str]] = [[], [], []]
    for i in shown:
        fooled = pa[i] != y[i]
        cells[0].append(x[i])
        titles[0].append(f"true {y[i]}, pred {pc[i]}")
        colors[0].append("black")
        if fooled:
            delta = result["x_adv"][i] - x[i]
            cells[1].append(result["x_adv"][i])
            titles[1].append(f"pred {pa[i]} (fooled)")
            cells[2].append(np.clip(0.5 + delta / (2 * eps), 0, 1))
            titles[2].append(f"max |δ| {np.abs(delta).max():.3g}")
            colors[1].append("tab:red")
            colors[2].append("black")
        else:
            cells[1].append(None)
            titles[1].append("robust:\nno attack\nfooled it")
            cells[2].append(None)
            titles[2].append("")
            colors[1].append("tab:green")
            colors[2].append("black")
    skipped = int((pc != y).sum())
    title = (
        f"{name}: L∞ ε = {eps:.4g}; {len(shown)} correctly classified test points "
        f"({skipped} of {len(y)} misclassified before any attack, not shown)"
    )
    return viz.save_image_table(
        path,
        cells,
        ["clean", "adversarial", "perturbation\n(−ε black, +ε white)"],
        titles,
        colors,
        title=title,
    )


def format_table(result: dict) -> str:
    rows = [f"{'attack':<12} robust accuracy", f"{'clean':<12} {result['clean']:.4f}"]
    rows += [f"{k:<12} {v:.4f}" for k, v in result.items() if k in IMPLEMENTED and k != "clean"]
    rows.append(f"{'worst_case':<12} {result['worst_case']:.4f}")
    return "\n".join(rows)
