"""SynFace evaluation: verification on held-out real identities, pictures, the synthetic set.

* Verification (the LFW 10-fold protocol of haibo-qiu/SynFace test.py): cosine scores of
  eval-mode embeddings, 10 contiguous folds, thresholds -1..1 step 0.005
  (`evals.face_verification`), on balanced pairs over the real
  identities that neither the generator nor the recogniser saw; rank-1 identification
  (gallery = first image of each held-out identity).
* Pictures: ``synthetic_identities.png`` (rows = new identities, columns = own draws of the
  other factors), ``identity_mixup.png`` (rows = identity pairs, columns = phi 1 -> 0 with the
  other factors fixed), ``generator_vs_real.png`` (top: real training faces, bottom: the
  generator at the same identities).
* With ``eval.write_set``: the synthetic training set written by the TFDS builder to
  ``<workdir>/synthetic`` (array_record, generation config in the metadata) and the synthesis
  throughput (images/s).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import viz
from jaxpapers.evals import face_verification as fv
from jaxpapers.methods.synface import inputs, losses, steps, synthesis
from jaxpapers.methods.synface import model as M


def _uint8(x) -> np.ndarray:
    return np.asarray(jax.device_get(synthesis.to_uint8(x)))


def embed_fn(state, config) -> Callable[[jax.Array], jax.Array]:
    """The trained recogniser's eval-mode embeddings of uint8 faces (grey replicated to RGB, as
    ``steps.embed`` and ``evaluate``), unit-norm."""
    net = steps.build_net(config)
    variables = {"params": state.rec.params["net"], "batch_stats": state.rec.batch_stats}

    def fn(images):
        emb = net.apply(variables, steps.to_rgb(steps.to_float(images)), train=False)
        return emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)

    return fn


def pictures(g_params, config, workdir: str, n_ids: int = 8, n_cols: int = 8) -> None:
    """Identity grid, identity-mixup rows and generator-vs-real row (PNG)."""
    codes = synthesis.identity_codes(g_params, config)
    n_ids = min(n_ids, int(config.synth.num_ids))
    a = np.repeat(np.arange(n_ids), n_cols).astype(np.int32)
    rows = {
        "syn_id_a": a,
        "syn_id_b": a,
        "syn_phi": np.ones(len(a), np.float32),
        "syn_seed": np.tile(np.arange(n_cols), n_ids).astype(np.int32) + 7,
    }
    gen = jax.jit(lambda p, c, r: synthesis.generate(p, c, r, config))
    viz.save_image_grid(
        os.path.join(workdir, "synthetic_identities.png"),
        _uint8(gen(g_params, codes, rows)),
        nrow=n_cols,
        scale=3,
    )
    phis = losses.mixup_grid(0.05)[::-1][:: max(1, 21 // n_cols)]
    pa = np.repeat(np.arange(n_ids), len(phis)).astype(np.int32)
    rows = {
        "syn_id_a": pa,
        "syn_id_b": ((pa + 1) % int(config.synth.num_ids)).astype(np.int32),
        "syn_phi": np.tile(phis, n_ids).astype(np.float32),
        "syn_seed": np.repeat(np.arange(n_ids), len(phis)).astype(np.int32) + 11,
    }
    viz.save_image_grid(
        os.path.join(workdir, "identity_mixup.png"),
        _uint8(gen(g_params, codes, rows)),
        nrow=len(phis),
        scale=3,
    )
    real = inputs.real_split(config, "train")
    ids = np.arange(min(n_cols, int(config.data.n_train_ids)))
    first = np.asarray([np.flatnonzero(real["label"] == i)[0] for i in ids])
    g_net = M.build_generator(config)
    z = jax.random.normal(jax.random.key(5), (len(ids), config.gen.z_dim))
    fake = g_net.apply({"params": g_params}, z, jnp.asarray(ids, jnp.int32), "none")
    viz.save_image_grid(
        os.path.join(workdir, "generator_vs_real.png"),
        np.concatenate([real["image"][first], _uint8(fake)]),
        nrow=len(ids),
        scale=3,
    )


def write_set(g_params, config, workdir: str) -> dict[str, float]:
    """Writes the configured synthetic set with the builder; returns size and images/s."""
    s = config.synth
    plan = synthesis.synthesis_plan(
        int(s.num_ids), int(s.per_id), int(s.seed), bool(s.mixup), float(s.grid_step)
    )
    r, c = int(config.gen.resolution), int(config.gen.img_channels)
    generation = {k: config.synth[k] for k in config.synth}
    generation.update(generator=dict(config.gen), source="synface identity-conditioned StyleGAN2")
    stamps: list[tuple[float, int]] = []

    def timed():
        # Throughput after the first chunk (which includes the jit compile).
        for chunk in synthesis.plan_chunks(g_params, config, plan):
            stamps.append((time.time(), len(chunk["image"])))
            yield chunk

    directory = os.path.join(workdir, "synthetic")
    synthesis.write_synthetic_set(directory, timed, (r, r, c), generation)
    out = {"synthetic_images": float(len(plan["syn_seed"]))}
    if len(stamps) > 1:
        n = sum(k for _, k in stamps[1:])
        out["synthesis_images_per_s"] = n / max(stamps[-1][0] - stamps[0][0], 1e-9)
    return out


def evaluate(state, config, workdir: str) -> dict[str, float]:
    result: dict[str, float] = {}
    g_params = jax.device_get(state.gen.g_ema)
    if int(jax.device_get(state.step)) > int(config.gen.steps):
        images, labels, pairs = inputs.eval_pairs(config)
        variables = jax.device_get(
            {"params": state.rec.params["net"], "batch_stats": state.rec.batch_stats}
        )
        emb = steps.embed(variables, images, config)
        scores = fv.cosine_scores(emb[pairs[:, 0]], emb[pairs[:, 1]])
        acc = fv.verification_accuracy(scores, pairs[:, 2])
        result["verif_acc"] = acc["mean"]
        result["verif_acc_std"] = acc["std"]
        if labels.min() >= 0:  # LFW pairs files carry no identity labels: no rank-1
            first = np.asarray([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])
            probes = np.setdiff1d(np.arange(len(labels)), first)
            result["rank1"] = fv.rank1_identification(
                emb[first], labels[first], emb[probes], labels[probes]
            )
        if jax.process_index() == 0:
            far, tar = fv.roc_curve(scores, pairs[:, 2])
            viz.save_plot(
                os.path.join(workdir, "roc_heldout.png"),
                {"held-out ids": (far, tar)},
                title="verification ROC, unseen real identities",
                xlabel="FAR",
                ylabel="TAR",
            )
    if jax.process_index() == 0:
        pictures(g_params, config, workdir)
        if config.eval.write_set:
            result.update(write_set(g_params, config, workdir))
        with open(os.path.join(workdir, "verification.json"), "w") as f:
            json.dump(result, f, indent=2)
    return result
