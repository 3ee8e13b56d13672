"""The classifier the defense protects: restored from a run of any method with a ``logits_fn``
hook (`rat`, `classifier`), or trained here.

The defense is meant for adversarially trained models (its argument is that adversarial training
gives the true class the smaller local Lipschitz constant), so when no run is given the CPU default
trains a SAT (PGD-AT) model with the `rat` method first, in ``<workdir>/base_model``; re-running
resumes or reuses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import ml_collections

from jaxpapers import checkpoint, config_lib, methods, parallel, trainer


def _read_config(run_dir: str) -> ml_collections.ConfigDict:
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: --config.base.run_dir must be a workdir written by "
            "`python -m jaxpapers.main` for the rat or classifier method."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def train_base(config, workdir: str) -> str:
    """Trains (or resumes) the SAT base model described by ``config.base`` and returns its run."""
    run_dir = os.path.join(workdir, "base_model")
    arg = f"{config.base.rat_preset},method_variant={config.base.variant}"
    if config.base.train_steps:
        arg += f",num_train_steps={config.base.train_steps}"
    base_cfg = config_lib.load_config_file(_configs_path("rat.py"), arg)
    final = os.path.join(run_dir, "final_metrics.json")
    if not os.path.isfile(final):
        print(f"hedge_defense: training the base model ({arg}) in {run_dir}", flush=True)
        trainer.train(base_cfg, run_dir)
    return run_dir


def _configs_path(name: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "..", "configs", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (the configs/ folder of the repository).")
    return os.path.normpath(path)


def load(run_dir: str) -> tuple[Callable[[jax.Array], jax.Array], ml_collections.ConfigDict]:
    """``(logits_fn on [0, 1] images, the run's config)`` from a run's latest checkpoint."""
    run_cfg = _read_config(run_dir)
    method = methods.get(run_cfg.method)
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, _ = trainer.init(method, run_cfg, mesh)
        state = checkpoint.restore_dir(run_dir, state)
    logits_fn = getattr(method, "logits_fn", None)  # the contract's hook of classifier methods
    if logits_fn is None:
        raise ValueError(
            f"{run_dir} is a {run_cfg.method!r} run, which has no logits_fn(state, config) hook; "
            "point --config.base.run_dir at a classifier run (e.g. rat or classifier)."
        )
    return logits_fn(state, run_cfg), run_cfg
