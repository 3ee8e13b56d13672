"""`evaluate` of the rat method: clean / PGD-k / optional AutoAttack on the test split, pictures,
and Rice-style early stopping (the params with the best robust test-subset accuracy are kept)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import flax.serialization
import jax
import numpy as np

from jaxpapers import data
from jaxpapers.evals import robust
from jaxpapers.methods.rat.model import eval_logits


def logits_fn(st, config) -> Callable[[jax.Array], jax.Array]:
    """Eval-mode logits of the state's model on [0, 1] pixels: what every attack differentiates."""
    return eval_logits({"params": st.params, "batch_stats": st.batch_stats}, config)


def evaluate(st, config, workdir: str) -> dict[str, float]:
    e = config.eval
    test = data.load(config.data, config.data.eval_split)
    n = min(e.num_examples, len(test["label"]))
    x = test["image"][:n].astype(np.float32) / 255.0
    y = np.asarray(test["label"][:n], np.int32)
    f = logits_fn(jax.device_get(st), config)
    res = robust.evaluate(
        f,
        x,
        y,
        jax.random.key(config.seed),
        eps=config.attack.eps,
        attacks_to_run=tuple(a for a in e.attacks.split(",") if a),
        cascade=e.cascade,
        batch_size=e.batch_size,
        **robust.budgets(e),
    )
    step = int(jax.device_get(st.step))
    if jax.process_index() == 0 and workdir:
        robust.save(
            res,
            workdir,
            x,
            config.attack.eps,
            prefix=f"robust_step{step}",
            num_pictures=e.num_pictures,
        )
    out = {"clean_accuracy": res["clean"], "worst_case_accuracy": res["worst_case"]}
    out.update({f"{k}_accuracy": res[k] for k in robust.IMPLEMENTED if k in res and k != "clean"})
    if jax.process_index() == 0 and workdir:
        out.update(_early_stopping(st, workdir, step, res["worst_case"]))
    return out


def _early_stopping(st, workdir: str, step: int, robust_acc: float) -> dict[str, float]:
    """Keeps `best_params.msgpack` (params + batch_stats) of the best robust accuracy so far.

    Rice et al. (2020) select the checkpoint with the best PGD robust *validation* accuracy; here
    the first `eval.num_examples` test points play that role (documented in the README).
    """
    path = os.path.join(workdir, "best.json")
    best = {"robust_accuracy": -1.0, "step": -1}
    if os.path.isfile(path):
        with open(path) as f:
            best = json.load(f)
    if robust_acc > best["robust_accuracy"]:
        best = {"robust_accuracy": robust_acc, "step": step}
        blob = flax.serialization.to_bytes(
            {"params": jax.device_get(st.params), "batch_stats": jax.device_get(st.batch_stats)}
        )
        with open(os.path.join(workdir, "best_params.msgpack"), "wb") as f:
            f.write(blob)
        with open(path, "w") as f:
            json.dump(best, f)
    return {"best_robust_accuracy": best["robust_accuracy"], "best_step": float(best["step"])}
