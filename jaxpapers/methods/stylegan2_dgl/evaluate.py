"""Evaluation of the DGL-GAN job: sample grids from fixed latents, FD, param/MAC counts.

Params are counted from the real Flax param trees (``jax.eval_shape``, no compute). MACs are
analytic per image: synthesis convs + ToRGB (an upsampling conv counted at its input resolution,
as a transposed conv performs k*k*Cin*Cout MACs per input pixel), style affines and mapping FCs;
D convs at their output resolution. FIR blurs and bias/activation ops are not counted.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import viz
from jaxpapers.layers import stylegan2 as sg
from jaxpapers.lib import dgl
from jaxpapers.methods.stylegan2_dgl import steps
from jaxpapers.methods.stylegan2_dgl.model import make_nets


def make_sampler(
    config,
    role: str,
    g_params,
    w_avg,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    noise_const=None,
):
    """A ``(z, key) -> images in [-1, 1]`` of generator ``g_params`` of ``role`` (the EMA
    G in evaluations). ``noise_mode='const'`` adds the fixed buffers ``noise_const`` (the
    synthesis network's ``'noise_const'`` collection) and ignores ``key``. The params are
    arguments of one jitted program per network shape, so every eval of a job reuses it."""
    g_net, _ = make_nets(config, role)
    sample = _sampler(g_net, float(truncation_psi), noise_mode)
    extra = {"noise_const": {"synthesis": noise_const}} if noise_mode == "const" else {}
    return functools.partial(sample, g_params, w_avg, extra)


@functools.lru_cache(maxsize=16)
def _sampler(g_net: sg.Generator, truncation_psi: float, noise_mode: str):
    @jax.jit
    def sample(g_params, w_avg, extra, z, key):
        ws = g_net.apply({"params": g_params}, z, w_avg, truncation_psi, method=g_net.mapping)
        img = g_net.apply(
            {"params": g_params, **extra},
            ws,
            noise_mode,
            rngs={"noise": key},
            method=g_net.synthesis,
        )
        return jnp.clip(img, -1.0, 1.0)

    return sample


def _in_batches(sample, z: jax.Array, key: jax.Array, batch: int) -> np.ndarray:
    """``sample`` on ``z`` in batches of ``batch`` (the last one zero-padded): the grid then
    runs the program the FD sampler compiled for ``eval.batch_size`` (one compile per network
    instead of two; ~4 s each on 2 CPU cores)."""
    out = []
    for i in range(0, len(z), batch):
        chunk = z[i : i + batch]
        pad = jnp.zeros((batch - len(chunk), z.shape[1]), z.dtype)
        out.append(np.asarray(sample(jnp.concatenate([chunk, pad]), jax.random.fold_in(key, i))))
    return np.concatenate(out)[: len(z)]


def fixed_latents(config, n: int) -> jax.Array:
    """The same latents at every eval, so grids show progress over training."""
    return jax.random.normal(jax.random.key(config.eval.seed), (n, config.model.z_dim))


def gan_sampler(state: steps.DGLState, config, role: str = "student", truncation_psi=1.0):
    """``(key, n) -> n images in [-1, 1]`` of the EMA generator of ``role`` (fresh z each call);
    what the GAN metrics score (in-training evals and ``python -m jaxpapers.tools.gan_metrics``)."""
    dgl.check_role(role)
    gs = getattr(state, role)
    sample = make_sampler(config, role, gs.g_ema, gs.w_avg, truncation_psi)

    def sample_fn(key: jax.Array, n: int) -> np.ndarray:
        z = jax.random.normal(key, (n, config.model.z_dim))
        return np.asarray(sample(z, jax.random.fold_in(key, 1)))

    return sample_fn


def evaluate(state: steps.DGLState, config, workdir: str) -> dict[str, float]:
    """Grids of teacher and student EMA generators (fixed z), counts, and FD when enabled."""
    os.makedirs(workdir, exist_ok=True)
    step = int(jax.device_get(state.step))
    ev = config.eval
    z = fixed_latents(config, int(ev.grid_size))
    key = jax.random.key(ev.seed + 1)
    results: dict[str, float] = {}
    rows = int(ev.grid_rows)
    roles = dgl.trained_roles(config, step)
    grids = []
    for role in roles:
        gs = getattr(state, role)
        for psi in sorted({1.0, float(ev.truncation_psi)}):
            sample = make_sampler(config, role, gs.g_ema, gs.w_avg, psi)
            imgs = _in_batches(sample, z, key, int(ev.batch_size) if ev.fd else len(z))
            suffix = "" if psi == 1.0 else f"_psi{psi:g}"
            viz.save_image_grid(
                os.path.join(workdir, f"samples_{role}{suffix}_step{step}.png"),
                imgs,
                nrow=rows,
                scale=2,
            )
            if psi == 1.0:
                grids.append(imgs)
        if ev.fd and (role == "student" or ev.get("score_teacher", True)):
            from jaxpapers.evals.gan import evaluator

            sample_fn = _Timed(gan_sampler(state, config, role))
            results.update(evaluator.evaluate_method_sampler(sample_fn, config, workdir, role))
            if sample_fn.images_per_s():
                results[f"{role}_images_per_s"] = sample_fn.images_per_s()
    pictures = sorted(
        os.path.join(workdir, f) for f in os.listdir(workdir) if f.endswith(f"_step{step}.png")
    )
    if len(grids) == 2:  # Teacher (left) and student (right) from the same latents.
        pair = np.concatenate([grids[0], grids[1]], axis=2)
        pictures.insert(0, os.path.join(workdir, f"teacher_vs_student_step{step}.png"))
        viz.save_image_grid(pictures[0], pair, nrow=max(1, rows // 2), scale=2)
    c = report(config)
    with open(os.path.join(workdir, "param_mac_counts.json"), "w") as f:
        json.dump(c, f, indent=2)
    results.update({k: float(v) for k, v in c.items() if k.endswith("params") or "ratio" in k})
    table = comparison_table(c, results) if len(roles) == 2 else ""
    if table:
        with open(os.path.join(workdir, f"teacher_vs_student_step{step}.md"), "w") as f:
            f.write(table)
    if jax.process_index() == 0:
        print(
            f"step {step}: teacher vs student\n{table}pictures:", *pictures, sep="\n  ", flush=True
        )
    return results


class _Timed:
    """A ``(key, n) -> images`` sampler that records its wall time per call; ``images_per_s``
    leaves out the first call (it compiles), so it is the generator's steady throughput."""

    def __init__(self, sample_fn):
        self._fn, self._calls = sample_fn, []

    def __call__(self, key, n):
        t0 = time.perf_counter()
        out = self._fn(key, n)
        self._calls.append((n, time.perf_counter() - t0))
        return out

    def images_per_s(self) -> float | None:
        rest = self._calls[1:]
        seconds = sum(t for _, t in rest)
        return sum(n for n, _ in rest) / seconds if rest and seconds > 0 else None


def comparison_table(counts: dict, results: dict) -> str:
    """Markdown: G params and MACs of teacher and student and the metrics each was scored on."""
    labels = dict(fd="FD", kid_mean="KID", precision="precision", recall="recall")
    labels.update(class_share_min="smallest class share", images_per_s="sampling images/s")
    names = tuple(labels)
    lines = [
        "| generator | G params | G MACs / image | " + " | ".join(labels.values()) + " |",
        "| --- | --- | --- |" + " --- |" * len(names),
    ]
    for role in ("teacher", "student"):
        cells = [f"{results[f'{role}_{n}']:.4g}" if f"{role}_{n}" in results else "" for n in names]
        p, m = counts[f"{role}_g_params"], counts[f"{role}_g_macs"]
        row = [role, f"{p:,} ({p / counts['teacher_g_params']:.3f})"]
        row += [f"{m / 1e6:.2f} M ({m / counts['teacher_g_macs']:.3f})", *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def num_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def generator_macs(g: sg.Generator) -> dict[str, int]:
    """{'mapping', 'synthesis'} MACs of one image (synthesis includes the style affines)."""
    # First FC z_dim -> w_dim, the others w_dim -> w_dim.
    mapping = (g.z_dim * g.w_dim + (g.mapping_layers - 1) * g.w_dim**2) if g.mapping_layers else 0
    syn = sg.SynthesisNetwork(
        g.resolution, g.img_channels, g.fmap_base, g.fmap_max, g.channel_divisor
    )
    cin = sg.nf(1, g.fmap_base, g.fmap_max)  # The constant keeps full width.
    macs = 0

    def layer(k: int, ci: int, co: int, hw: int) -> int:
        return k * k * ci * co * hw + g.w_dim * ci  # conv + style affine

    c = syn.width(1)
    macs += layer(3, cin, c, 16) + layer(1, c, g.img_channels, 16)
    for res in range(3, sg.log2_res(g.resolution) + 1):
        r = 2**res
        co = syn.width(res - 1)
        macs += layer(3, c, co, (r // 2) ** 2) + layer(3, co, co, r * r)
        macs += layer(1, co, g.img_channels, r * r)
        c = co
    return {"mapping": mapping, "synthesis": macs}


def discriminator_macs(d: sg.Discriminator, img_channels: int) -> int:
    lr = sg.log2_res(d.resolution)
    c = d.width(lr - 1)
    macs = img_channels * c * d.resolution**2
    for res in range(lr, 2, -1):
        r = 2**res
        c0, c1 = d.width(res - 1), d.width(res - 2)
        macs += 9 * c * c0 * r * r + 9 * c0 * c1 * (r // 2) ** 2 + c * c1 * (r // 2) ** 2
        c = c1
    extra = 1 if d.mbstd_group_size > 1 else 0
    macs += 9 * (c + extra) * d.width(1) * 16 + d.width(1) * 16 * d.width(0) + d.width(0)
    return macs


def report(config) -> dict[str, float]:
    """Params and MACs of teacher and student G/D for this config (flat dict of numbers)."""
    out: dict[str, float] = {}
    m = config.model
    for role in ("teacher", "student"):
        g, d = make_nets(config, role)
        gp = jax.eval_shape(
            lambda g=g: g.init(
                {"params": jax.random.key(0), "noise": jax.random.key(1)}, jnp.zeros((1, m.z_dim))
            )["params"]
        )
        img = jnp.zeros((max(1, m.mbstd_group_size), m.resolution, m.resolution, m.img_channels))
        dp = jax.eval_shape(lambda d=d, img=img: d.init(jax.random.key(0), img)["params"])
        gm = generator_macs(g)
        out[f"{role}_g_params"] = num_params(gp)
        out[f"{role}_g_synthesis_params"] = num_params(gp["synthesis"])
        out[f"{role}_g_mapping_params"] = num_params(gp["mapping"])
        out[f"{role}_d_params"] = num_params(dp)
        out[f"{role}_g_macs"] = gm["mapping"] + gm["synthesis"]
        out[f"{role}_g_synthesis_macs"] = gm["synthesis"]
        out[f"{role}_d_macs"] = discriminator_macs(d, m.img_channels)
    out["g_param_ratio"] = out["student_g_params"] / out["teacher_g_params"]
    out["g_mac_ratio"] = out["student_g_macs"] / out["teacher_g_macs"]
    return out
