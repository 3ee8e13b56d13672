"""Evaluation of the DGL-GAN job: sample grids from fixed latents, FD, param/MAC counts."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import viz
from jaxpapers.methods.stylegan2_dgl import counts, steps


def make_sampler(config, role: str, gs: steps.GanState, truncation_psi: float = 1.0):
    """A jitted ``(z, key) -> images in [-1, 1]`` of the EMA generator of ``role``."""
    g_net, _ = steps.make_nets(config, role)

    @jax.jit
    def sample(z, key):
        ws = g_net.apply({"params": gs.g_ema}, z, gs.w_avg, truncation_psi, method=g_net.mapping)
        img = g_net.apply({"params": gs.g_ema}, ws, rngs={"noise": key}, method=g_net.synthesis)
        return jnp.clip(img, -1.0, 1.0)

    return sample


def fixed_latents(config, n: int) -> jax.Array:
    """The same latents at every eval, so grids show progress over training."""
    return jax.random.normal(jax.random.key(config.eval.seed), (n, config.model.z_dim))


def gan_sampler(state: steps.DGLState, config, role: str = "student", truncation_psi=1.0):
    """``(key, n) -> n images in [-1, 1]`` of the EMA generator of ``role`` (fresh z each call);
    what the GAN metrics score (in-training evals and ``jaxpapers.evals.gan_metrics``)."""
    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}.")
    sample = make_sampler(config, role, getattr(state, role), truncation_psi)

    def sample_fn(key: jax.Array, n: int) -> np.ndarray:
        z = jax.random.normal(key, (n, config.model.z_dim))
        return np.asarray(sample(z, jax.random.fold_in(key, 1)))

    return sample_fn


def evaluate(state: steps.DGLState, config, workdir: str) -> dict[str, float]:
    """Grids of teacher and student EMA generators (fixed z), counts, and FD when enabled."""
    os.makedirs(workdir, exist_ok=True)
    step = int(jax.device_get(state.step))
    s1, s2 = steps.phase_bounds(config)
    ev = config.eval
    z = fixed_latents(config, int(ev.grid_size))
    key = jax.random.key(ev.seed + 1)
    results: dict[str, float] = {}
    rows = int(ev.grid_rows)
    roles = [r for r, on in (("teacher", s1 > 0 or config.init_from), ("student", step > s1)) if on]
    grids = []
    for role in roles:
        gs = getattr(state, role)
        for psi in sorted({1.0, float(ev.truncation_psi)}):
            sample = make_sampler(config, role, gs, psi)
            imgs = np.asarray(sample(z, key))
            suffix = "" if psi == 1.0 else f"_psi{psi:g}"
            viz.save_image_grid(
                os.path.join(workdir, f"samples_{role}{suffix}_step{step}.png"),
                imgs,
                nrow=rows,
                scale=2,
            )
            if psi == 1.0:
                grids.append(imgs)
        if ev.fd:
            from jaxpapers.evals.gan import evaluator

            sample_fn = gan_sampler(state, config, role)
            results.update(evaluator.evaluate_method_sampler(sample_fn, config, workdir, role))
    if len(grids) == 2:  # Teacher (left) and student (right) from the same latents.
        pair = np.concatenate([grids[0], grids[1]], axis=2)
        viz.save_image_grid(
            os.path.join(workdir, f"teacher_vs_student_step{step}.png"),
            pair,
            nrow=max(1, rows // 2),
            scale=2,
        )
    c = counts.report(config)
    with open(os.path.join(workdir, "param_mac_counts.json"), "w") as f:
        json.dump(c, f, indent=2)
    results.update({k: float(v) for k, v in c.items() if k.endswith("params") or "ratio" in k})
    return results
