"""The classifier the defense protects: restored from a run of any method with a ``logits_fn``
hook (`rat`, `classifier`), or trained first.

The defense is meant for adversarially trained models (its argument is that adversarial training
gives the true class the smaller local Lipschitz constant), so when no run is given the CPU default
trains a SAT (PGD-AT) model with the `rat` method first, in ``<workdir>/base_model``; re-running
resumes or reuses it.

Training and restoring a run are the application's jobs (the registry and the trainer sit above
the methods): ``run`` receives them as ``finished_run`` (``jaxpapers.runs.finished_run``) and this
module only says which run to train or read.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import ml_collections

from jaxpapers import config_lib


def _train_arg(config) -> str:
    """The ``configs/rat.py`` argument of the SAT base model that ``config.base`` describes."""
    arg = f"{config.base.rat_preset},method_variant={config.base.variant}"
    if config.model.get("dtype", "float32") != "float32":  # runs made before the key existed
        arg += f",model.dtype={config.model.dtype}"
    if config.base.train_steps:
        arg += f",num_train_steps={config.base.train_steps}"
    return arg


def load(
    config, workdir: str, finished_run: Callable
) -> tuple[Callable[[jax.Array], jax.Array], ml_collections.ConfigDict, str]:
    """``(logits_fn on [0, 1] images, the base run's config, its directory)``.

    The base run is ``config.base.run_dir``, or the SAT model ``config.base`` describes, trained
    (or resumed) in ``<workdir>/base_model`` unless it has finished there.
    """
    run_dir, train = config.base.run_dir, None
    if not run_dir:
        run_dir, arg = os.path.join(workdir, "base_model"), _train_arg(config)
        train = config_lib.load_config_file(config_lib.config_path("rat"), arg)
        if not os.path.isfile(os.path.join(run_dir, "final_metrics.json")):
            print(f"hedge_defense: training the base model ({arg}) in {run_dir}", flush=True)
    base = finished_run(run_dir, train)
    try:
        logits_fn = base.logits_fn  # the contract's hook of classifier methods
    except AttributeError as e:
        raise ValueError(
            f"{e} Point --config.base.run_dir at a classifier run (e.g. rat or classifier)."
        ) from None
    return logits_fn, base.config, run_dir
