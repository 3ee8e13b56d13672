"""End to end: base model -> non-adaptive table -> adaptive number -> pictures, JSON, Markdown."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxpapers import data
from jaxpapers.methods.hedge_defense import base_model, pictures, protocol


def _test_points(config, run_cfg) -> tuple[np.ndarray, np.ndarray]:
    data_cfg = run_cfg.data if not config.data.name else config.data
    test = data.load(data_cfg, config.data.get("eval_split", "test") or "test")
    n = min(config.eval.num_examples, len(test["label"]))
    x = test["image"][:n].astype(np.float32) / 255.0
    return x, test["label"][:n].astype(np.int32)


def run(config, workdir: str, *, finished_run: Callable) -> dict:
    """Runs the whole evaluation and writes hedge_table.{json,md} and pictures into workdir.

    ``finished_run(run_dir, train_config_or_None)``: the application's ``runs.finished_run``,
    which trains the base model when asked and restores it (``base_model.load``).
    """
    os.makedirs(workdir, exist_ok=True)
    t0 = time.time()
    logits_fn, run_cfg, run_dir = base_model.load(config, workdir, finished_run)
    x, y = _test_points(config, run_cfg)
    key = jax.random.PRNGKey(config.seed)
    print(
        f"hedge_defense: base model {run_dir} ({run_cfg.method}), {len(x)} test points, "
        f"attack eps {config.eval.eps}, hedge eps {config.hedge.eps} x {config.hedge.num_steps} "
        f"steps ({config.hedge.predict})",
        flush=True,
    )
    na = protocol.non_adaptive(logits_fn, x, y, jax.random.fold_in(key, 0), config)
    adaptive = None
    if config.adaptive.enabled:
        print("  adaptive APGD through the defense ...", flush=True)
        adaptive = protocol.adaptive(
            logits_fn, x, y, jax.random.fold_in(key, 1), config, na["adv_points"]
        )
        print(
            f"  adaptive: hedge {adaptive['hedge_vs_adaptive_apgd']:.4f}, worst case "
            f"{adaptive['hedge_worst_case_adaptive']:.4f}",
            flush=True,
        )
    extra = {}
    if config.pictures and na["adv_points"]:
        first = next(iter(na["adv_points"]))
        extra["flipped_points_of_256"] = pictures.flip_examples(
            os.path.join(workdir, "hedge_flips.png"),
            logits_fn,
            na["adv_points"][first],
            y,
            jax.random.fold_in(key, 2),
            config.hedge,
        )
        extra.update(
            pictures.gradient_norm_histogram(
                os.path.join(workdir, "gradient_norms.png"), logits_fn, x, y
            )
        )
    header = (
        f"Base model `{run_dir}` ({run_cfg.method}, {run_cfg.get('method_variant', '')}); "
        f"{len(x)} test points; attacks on the bare model at eps={config.eval.eps}; hedge "
        f"eps={config.hedge.eps}, step={config.hedge.step_size}, {config.hedge.num_steps} steps, "
        f"predict={config.hedge.predict}; seed {config.seed}."
    )
    md = protocol.markdown(na["table"], adaptive, header)
    result = {
        "table": na["table"],
        "adaptive": adaptive,
        "base_run": run_dir,
        "n": len(x),
        "seconds": time.time() - t0,
        **extra,
    }
    with open(os.path.join(workdir, "hedge_table.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(workdir, "hedge_table.md"), "w") as f:
        f.write(md)
    print(md, flush=True)
    flat = {f"{row}/{col}": v for row, cols in na["table"].items() for col, v in cols.items()}
    if adaptive:
        flat["adaptive/hedge"] = adaptive["hedge_vs_adaptive_apgd"]
        flat["adaptive/worst_case"] = adaptive["hedge_worst_case_adaptive"]
    return flat
