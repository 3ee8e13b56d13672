"""Evaluation: class-conditional sample grids, FD/IS through the suite's GAN evaluator, counts.

Samples come from the EMA generator in eval mode (running BN statistics, stored SN vectors),
which is how BigGAN-PyTorch samples ``G_ema`` for its metrics. ``eval.truncation > 0`` draws z
from a normal truncated to [-t, t] (the BigGAN truncation trick); 0 samples plain N(0, I).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import viz
from jaxpapers.lib import dgl
from jaxpapers.methods.biggan_dgl import model as M
from jaxpapers.methods.biggan_dgl import steps
from jaxpapers.methods.biggan_dgl.model import make_nets


def sample_z(key: jax.Array, n: int, dim_z: int, truncation: float) -> jax.Array:
    """N(0, I), or a normal truncated to [-truncation, truncation] when truncation > 0."""
    if truncation > 0:
        return jax.random.truncated_normal(key, -truncation, truncation, (n, dim_z))
    return jax.random.normal(key, (n, dim_z))


def sampled_generator(config, gs: steps.GanState) -> tuple:
    """(params, variables) of the G that evaluations sample: the EMA G, or the raw one with
    ``eval.use_ema=False`` (a short run's EMA still holds mostly older weights)."""
    if bool(config.eval.get("use_ema", True)):
        return gs.g_ema, gs.g_ema_vars
    return gs.g, gs.g_vars


def make_sampler(config, role: str, params, variables):
    """A jitted ``(z, y) -> images in [-1, 1]`` of the generator ``params`` (+ its BN stats and
    SN vectors ``variables``) of ``role``, in eval mode."""
    g_net, _ = make_nets(config, role)

    @jax.jit
    def sample(z, y):
        return g_net.apply({"params": params, **variables}, z, y, train=False)

    return sample


def num_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _attn_macs(c: int, r: int) -> int:
    hw = r * r
    return hw * c * (c // 8 * 2 + c // 2) + hw * (c // 2) * c + hw * (hw // 4) * (c // 8 + c // 2)


def generator_macs(g: M.Generator) -> int:
    """Analytic multiply-accumulates of one G forward (convs, linears, attention matmuls)."""
    ins, outs, res = M.g_arch(g.resolution, g.ch)
    chunk = g.dim_z // g.num_slots()
    cond = g.shared_dim + chunk if g.hier else 0
    macs = chunk * ins[0] * g.bottom_width**2
    attn = M.attention_set(g.attention)
    for c, o, r in zip(ins, outs, res, strict=True):
        macs += 9 * c * o * r * r + 9 * o * o * r * r + c * o * r * r + 2 * cond * (c + o)
        macs += _attn_macs(o, r) if r in attn else 0
    return macs + 9 * outs[-1] * g.out_channels * g.resolution**2


def discriminator_macs(d: M.Discriminator, img_channels: int) -> int:
    ins, outs, down, res = M.d_arch(d.resolution, d.ch)
    ins = [img_channels] + ins[1:]
    macs, r_in, attn = 0, d.resolution, M.attention_set(d.attention)
    for c, o, dn, r in zip(ins, outs, down, res, strict=True):
        macs += 9 * c * o * r_in**2 + 9 * o * o * r_in**2  # convs run before the pooling
        if c != o or dn:
            macs += c * o * (r_in**2 if dn and c != o else r**2)
        macs += _attn_macs(o, r) if r in attn else 0
        r_in = r_in // 2 if dn else r_in
    return macs + outs[-1] * 2


def counts(config) -> dict[str, float]:
    """Parameter and MAC counts of teacher and student G and D (params from eval_shape)."""
    out: dict[str, float] = {}
    m = config.model
    for role in ("teacher", "student"):
        g, d = make_nets(config, role)
        y = jnp.zeros((2,), jnp.int32)
        x = jnp.zeros((2, m.resolution, m.resolution, m.img_channels))
        zs = jnp.zeros((2, m.dim_z))
        gp = jax.eval_shape(lambda g=g, y=y, zs=zs: g.init(jax.random.key(0), zs, y))
        dp = jax.eval_shape(lambda d=d, x=x, y=y: d.init(jax.random.key(0), x, y))
        out[f"{role}_g_params"] = num_params(gp["params"])
        out[f"{role}_d_params"] = num_params(dp["params"])
        out[f"{role}_g_macs"] = generator_macs(g)
        out[f"{role}_d_macs"] = discriminator_macs(d, m.img_channels)
    out["g_params_ratio"] = out["student_g_params"] / out["teacher_g_params"]
    out["g_macs_ratio"] = out["student_g_macs"] / out["teacher_g_macs"]
    return out


def gan_sampler(state: steps.DGLState, config, role: str = "student"):
    """``(key, n) -> n images in [-1, 1]`` of the EMA generator of ``role`` with random classes;
    what the GAN metrics score (in-training evals and ``python -m jaxpapers.tools.gan_metrics``)."""
    dgl.check_role(role)
    sample = make_sampler(config, role, *sampled_generator(config, getattr(state, role)))
    m = config.model

    def sample_fn(key: jax.Array, n: int) -> np.ndarray:
        kz, ky = jax.random.split(key)
        z = sample_z(kz, n, m.dim_z, float(config.eval.truncation))
        return np.asarray(sample(z, jax.random.randint(ky, (n,), 0, m.num_classes)))

    return sample_fn


def evaluate(state: steps.DGLState, config, workdir: str) -> dict[str, float]:
    """Per-class grids (one row per class, the same z in each column), metrics and counts."""
    os.makedirs(workdir, exist_ok=True)
    step = int(jax.device_get(state.step))
    ev, m = config.eval, config.model
    k = int(ev.per_class)
    z = sample_z(jax.random.key(ev.seed), k, m.dim_z, float(ev.truncation))
    classes = min(m.num_classes, 10)
    zz = jnp.tile(z, (classes, 1))
    yy = jnp.repeat(jnp.arange(classes), k)
    results: dict[str, float] = {}
    for role in dgl.trained_roles(config, step):
        sample = make_sampler(config, role, *sampled_generator(config, getattr(state, role)))
        imgs = np.asarray(sample(zz, yy))
        viz.save_image_grid(
            os.path.join(workdir, f"samples_{role}_step{step}.png"), imgs, nrow=k, scale=2
        )
        if ev.fd:
            from jaxpapers.evals.gan import evaluator

            sample_fn = gan_sampler(state, config, role)
            results.update(evaluator.evaluate_method_sampler(sample_fn, config, workdir, role))
    c = counts(config)
    with open(os.path.join(workdir, "param_mac_counts.json"), "w") as f:
        json.dump(c, f, indent=2)
    results.update({k: float(v) for k, v in c.items() if "params" in k or "ratio" in k})
    return results
