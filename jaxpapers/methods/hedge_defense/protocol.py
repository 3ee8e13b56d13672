"""The paper's (non-adaptive) evaluation protocol and the adaptive one of Croce et al. (2022).

Non-adaptive (official burcywu/hedge_defense main_cifar10.py): each attack runs on the *bare*
model; then the adversarial points are classified by (i) the bare model, (ii) the bare model after
one uniform-noise draw, (iii) the hedge. 'worst' counts a point only if it is classified correctly
clean and under every attack.

Adaptive (fra31/evaluating-adaptive-test-time-defenses, wu_2021/): APGD runs against the
defended model end to end (BPDA-identity through a short hedge with EOT); the defended accuracy is
the pointwise worst case over those points and the bare-model attack points, each classified by
the full defense.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import parallel
from jaxpapers.evals import robust
from jaxpapers.lib import attacks
from jaxpapers.methods.hedge_defense import defense

COLUMNS = ("none", "noise", "hedge")


def _batched(fn, x: np.ndarray, y: np.ndarray, key, batch_size: int) -> np.ndarray:
    """``robust._batched`` over the devices of every process (the same numbers as one device)."""
    return robust._batched(fn, x, y, key, batch_size, parallel.make_mesh())


def _batched_predict(fn, x: np.ndarray, key, batch_size: int) -> np.ndarray:
    dummy = np.zeros(len(x), np.int32)
    return _batched(lambda xb, yb, k: fn(xb, k), x, dummy, key, batch_size)


def classifiers(logits_fn, hcfg) -> dict:
    """The three jitted classifiers of the table: ``name -> fn(x, key) -> predicted labels``."""
    hedge_kw = defense.hedge_kwargs(hcfg)
    return {
        "none": jax.jit(lambda x, k: jnp.argmax(logits_fn(x), -1)),
        "noise": jax.jit(
            lambda x, k: jnp.argmax(logits_fn(defense.random_noise(x, k, hcfg.eps)), -1)
        ),
        "hedge": jax.jit(
            lambda x, k: jnp.argmax(defense.hedge(logits_fn, x, k, **hedge_kw)[0], -1)
        ),
    }


def non_adaptive(logits_fn, x: np.ndarray, y: np.ndarray, key, config, log=print) -> dict:
    """Rows per attack (plus 'clean' and 'worst') and columns none / noise / hedge."""
    ecfg, hcfg = config.eval, config.hedge
    clfs = classifiers(logits_fn, hcfg)
    table, adv_points = {}, {}
    correct_all = {c: np.ones(len(x), bool) for c in COLUMNS}
    rows = ["clean", *ecfg.attacks]
    for i, name in enumerate(rows):
        t0 = time.time()
        if name == "clean":
            xa = x
        else:
            fn = jax.jit(robust.make_attack(name, logits_fn, eps=ecfg.eps, **robust.budgets(ecfg)))
            xa = _batched(fn, x, y, jax.random.fold_in(key, i), ecfg.batch_size)
            adv_points[name] = xa
        row = {}
        for j, (col, clf) in enumerate(clfs.items()):
            ok = (
                _batched_predict(
                    clf, xa, jax.random.fold_in(key, 1000 + 10 * i + j), ecfg.batch_size
                )
                == y
            )
            row[col] = float(ok.mean())
            correct_all[col] &= ok
        table[name] = row
        log(
            f"  {name:<8} "
            + "  ".join(f"{c}={v:.4f}" for c, v in row.items())
            + f"  ({time.time() - t0:.1f}s)"
        )
    if len(rows) > 1:
        table["worst"] = {c: float(v.mean()) for c, v in correct_all.items()}
    return {"table": table, "adv_points": adv_points}


def adaptive(logits_fn, x: np.ndarray, y: np.ndarray, key, config, base_points: dict) -> dict:
    """Defended accuracy under APGD through the defense, worst case with the base-model points."""
    acfg, hcfg, ecfg = config.adaptive, config.hedge, config.eval
    attack_logits = defense.bpda_defended_logits(
        logits_fn,
        jax.random.fold_in(key, 7),
        eot=acfg.eot,
        eps=hcfg.eps,
        step_size=hcfg.step_size,
        num_steps=acfg.hedge_steps,
        random_init=hcfg.random_init,
        unroll=defense.unroll_for(hcfg.get("unroll", "auto")),
    )
    loss = acfg.loss
    if loss == "dlr-t":
        n_cls = int(jax.eval_shape(logits_fn, jnp.asarray(x[:1])).shape[-1])
        attack = functools.partial(
            attacks.apgd_targeted,
            attack_logits,
            eps=ecfg.eps,
            num_steps=acfg.apgd_steps,
            num_target_classes=min(9, n_cls - 1),
        )
    else:
        attack = functools.partial(
            attacks.apgd, attack_logits, eps=ecfg.eps, num_steps=acfg.apgd_steps, loss=loss
        )
    fn = jax.jit(lambda xb, yb, k: attack(xb, yb, k))
    x_adaptive = _batched(fn, x, y, jax.random.fold_in(key, 1), ecfg.batch_size)
    hedge_clf = classifiers(logits_fn, hcfg)["hedge"]
    survived = np.ones(len(x), bool)
    per_set = {}
    for j, (name, pts) in enumerate({"adaptive_apgd": x_adaptive, **base_points}.items()):
        ok = np.ones(len(x), bool)
        for r in range(acfg.defense_runs):  # the random defense: every run must be correct
            ok &= (
                _batched_predict(
                    hedge_clf, pts, jax.random.fold_in(key, 5000 + 100 * j + r), ecfg.batch_size
                )
                == y
            )
        per_set[name] = float(ok.mean())
        survived &= ok
    return {
        "hedge_vs_adaptive_apgd": per_set["adaptive_apgd"],
        "hedge_worst_case_adaptive": float(survived.mean()),
        "per_set": per_set,
    }


def markdown(table: dict, adaptive_result: dict | None, header: str) -> str:
    lines = [header, "", "| attack | no defense | random noise | hedge |", "|---|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['none']:.4f} | {row['noise']:.4f} | {row['hedge']:.4f} |")
    if adaptive_result:
        lines += [
            "",
            f"Adaptive (APGD through the defense, BPDA + EOT): hedge accuracy "
            f"{adaptive_result['hedge_vs_adaptive_apgd']:.4f} on the adaptive points; "
            f"worst case over adaptive and all non-adaptive points "
            f"{adaptive_result['hedge_worst_case_adaptive']:.4f}.",
        ]
    return "\n".join(lines) + "\n"
