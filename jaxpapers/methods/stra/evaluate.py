"""Evaluation: top-1 accuracy (classification) or Market-1501 CMC/mAP (re-ID), plus a picture
of the per-head pooling maps pi_g of the last StRA block (the paper's 'heads find parts' claim)."""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import data, viz
from jaxpapers.evals.classification import predict_all
from jaxpapers.methods.stra import reid
from jaxpapers.methods.stra.inputs import REID_DATA, make_source, normalise
from jaxpapers.methods.stra.model import build_model


def evaluate(st, config, workdir: str) -> dict[str, float]:
    bs = config.eval_batch_size
    fwd = jit_forward(st, config)
    if config.data.name in REID_DATA:
        q, g = make_source(config, "query"), make_source(config, "gallery")
        feat = lambda imgs: predict_all(lambda x: fwd(x)[1], imgs, bs)
        dist = reid.euclidean_distances(feat(q["image"]), feat(g["image"]))
        cmc, mean_ap = reid.cmc_map(dist, q["pid"], g["pid"], q["camid"], g["camid"])
        out = {"rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "mAP": mean_ap}
        pics = q["image"]
    else:
        test = data.load(config.data, config.data.eval_split)
        logits = predict_all(lambda x: fwd(x)[0], test["image"], bs)
        out = {"test_accuracy": float(np.mean(np.argmax(logits, -1) == test["label"]))}
        pics = test["image"]
    if config.model.block == "stra" and config.num_pool_map_images and workdir:
        save_pool_maps(
            st, config, pics[: config.num_pool_map_images], os.path.join(workdir, "pool_maps.png")
        )
    return {k: float(v) for k, v in out.items()}


def logits_fn(st, config) -> Callable[[jax.Array], jax.Array]:
    """Eval-mode class logits of images in [0, 1] (the identity classifier for re-ID data)."""
    model = build_model(config)
    variables = {"params": st.params, "batch_stats": st.batch_stats}
    mean, std = jnp.asarray(config.data.mean), jnp.asarray(config.data.std)
    return lambda x: model.apply(variables, (x - mean) / std, train=False)[0]


def embed_fn(st, config) -> Callable[[jax.Array], jax.Array]:
    """The test feature of uint8 images (the re-ID neck's BN output), unit-norm: ``evaluate``
    ranks the gallery by the squared distance of these, i.e. by their cosine."""
    model = build_model(config)
    variables = {"params": st.params, "batch_stats": st.batch_stats}

    def fn(images):
        feat = model.apply(variables, normalise(images, config), train=False)[1]
        return feat / jnp.maximum(jnp.linalg.norm(feat, axis=-1, keepdims=True), 1e-12)

    return fn


def save_pool_maps(st, config, images: np.ndarray, path: str) -> str:
    """One row per image: the image, then the G pooling maps pi_g (upsampled, max-normalised),
    as a table with the columns titled."""
    _, maps = jit_forward(st, config, keep_maps=True)(images)
    maps = np.asarray(jax.device_get(maps))  # (N, h, w, G)
    n, h, w, c = images.shape
    g = maps.shape[-1]
    cells = []
    for i in range(n):
        img = images[i].astype(np.float32) / 255.0
        img = np.repeat(img, 3, -1) if c == 1 else img
        row = [img]
        for gi in range(g):
            m = maps[i, :, :, gi]
            m = m / max(m.max(), 1e-12)
            up = np.kron(m, np.ones((-(-h // m.shape[0]), -(-w // m.shape[1]))))[:h, :w]
            heat = np.stack([up, 0.2 * np.ones_like(up), 1.0 - up], -1)  # red = high weight
            row.append(0.5 * heat + 0.5 * img.mean(-1, keepdims=True))
        cells.append(row)
    titles = [["input"] + [f"head {gi + 1}" for gi in range(g)]] + [[]] * (n - 1)
    return viz.save_image_table(
        path,
        cells,
        [""] * n,
        titles,
        title=f"pooling maps of the last StRA block, one per head ({maps.shape[1]}x{maps.shape[2]}"
        ", each scaled to its maximum; red = high weight)",
        cell_inches=0.9,
    )


def jit_forward(st, config, keep_maps: bool = False):
    """Eval-mode ``uint8 images -> (logits, feature[, pooling maps of the last StRA block])``."""
    model = build_model(config, keep_maps=keep_maps)
    variables = {"params": st.params, "batch_stats": st.batch_stats}

    @jax.jit
    def fn(images):
        x = normalise(images, config)
        if not keep_maps:
            return model.apply(variables, x, train=False)
        out, inter = model.apply(variables, x, train=False, mutable=["intermediates", "losses"])
        maps = jax.tree.leaves(inter["intermediates"])
        return out, maps[-1]

    return fn
