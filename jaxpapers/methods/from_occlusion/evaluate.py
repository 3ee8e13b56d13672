"""FROM evaluation: baseline vs FROM on clean and occluded verification pairs.

Protocol (FROM lib/core/lfw_eval.py, data/generate_occ_lfw.py): every evaluation image gets one
random occluder at factor 2.0 and a random centre from seed 100; for the occluded score only the
*second* image of each pair is occluded.  The baseline is scored with its unmasked embedding, FROM
with its masked embedding (both images masked by their own predicted masks).  Reported: 10-fold
accuracy (mean, std), TAR@FAR on occluded pairs, and rank-1 identification (gallery = first image
of each held-out identity, clean; probes = the others, clean / occluded).  Pictures: masks and
predicted occlusion patterns over occluded inputs, and ROC curves.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from jaxpapers import batching, parallel, viz
from jaxpapers.evals import face_verification as fv
from jaxpapers.lib import occlusion as oc
from jaxpapers.methods.from_occlusion import faces
from jaxpapers.methods.from_occlusion.inputs import normalize
from jaxpapers.methods.from_occlusion.model import FROMNet, build_net
from jaxpapers.methods.from_occlusion.occluders import occluders


def embed(variables: dict, images: np.ndarray, config, masked: bool, batch: int = 64):
    """Embeddings (and masks, pattern logits) of uint8 images in eval mode, sharded over the
    devices of every process (``batching.map_batches``)."""
    fn = _embed_fn(build_net(config))
    cat = batching.map_batches(
        lambda x: fn(variables, x), images, batch_size=batch, mesh=parallel.make_mesh()
    )
    cat["embedding"] = cat["emb_masked"] if masked else cat["emb"]
    return cat


# Cached per network (a hashable module): evaluate embeds several image sets per model, and a new
# jitted function each time would recompile.
@functools.lru_cache(maxsize=8)
def _embed_fn(net: FROMNet):
    return jax.jit(lambda v, x: net.apply(v, normalize(x), train=False))


def embed_fn(state, config) -> Callable[[jax.Array], jax.Array]:
    """FROM's verification feature of uint8 faces, unit-norm: the masked embedding (each image
    masked by its own predicted mask), as ``evaluate`` scores the FROM model."""
    net = build_net(config)
    variables = {"params": state.params["net"], "batch_stats": state.batch_stats}

    def fn(images):
        emb = net.apply(variables, normalize(images), train=False)["emb_masked"]
        return emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)

    return fn


def _rank1(emb_clean, emb_probe, labels):
    if labels.min() < 0:
        return float("nan")
    first = np.asarray([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])
    probes = np.setdiff1d(np.arange(len(labels)), first)
    return fv.rank1_identification(
        emb_clean[first], labels[first], emb_probe[probes], labels[probes]
    )


def _scores(config, variables, images, occluded, pairs, masked):
    clean = embed(variables, images, config, masked)
    occ = embed(variables, occluded, config, masked)
    i, j = pairs[:, 0], pairs[:, 1]
    return (
        clean,
        occ,
        fv.cosine_scores(clean["embedding"][i], clean["embedding"][j]),
        fv.cosine_scores(clean["embedding"][i], occ["embedding"][j]),
    )


def _mask_picture(path, images, out, boxes, config, n=12):
    """Rows: occluded input (true box green, predicted pattern red) | mean mask (white = kept)."""
    h, w = images.shape[1:3]
    patterns = oc.pattern_boxes(h, w, config.occlusion.grid)
    pred = np.argmax(out["pattern_logits"], -1)
    tiles = []
    for k in range(min(n, len(images))):
        img = Image.fromarray(images[k]).convert("RGB")
        d = ImageDraw.Draw(img)
        for box, col in ((boxes[k], (0, 255, 0)), (patterns[pred[k]], (255, 0, 0))):
            if box[2] > box[0]:
                d.rectangle(
                    (int(box[1]), int(box[0]), int(box[3]) - 1, int(box[2]) - 1), outline=col
                )
        m = out["mask"][k]
        m = m.mean(-1) if m.ndim == 3 else m.reshape(1, -1)
        m = (m - m.min()) / (m.max() - m.min() + 1e-8)
        mimg = Image.fromarray((m * 255).astype(np.uint8)).resize((w, h), Image.NEAREST)
        tiles += [np.asarray(img), np.repeat(np.asarray(mimg)[..., None], 3, -1)]
    viz.save_image_grid(path, np.stack(tiles), nrow=2 * min(6, len(tiles) // 2), scale=3)


def evaluate(state, config, workdir: str) -> dict[str, float]:
    images, labels, pairs = faces.eval_pairs(config)
    occs, _ = occluders(config)
    occluded, boxes = oc.occlude_dataset(
        images, occs, seed=int(config.eval.occ_seed), factor=float(config.eval.occ_factor)
    )
    models = {
        "baseline": (
            {"params": state.baseline["params"], "batch_stats": state.baseline["batch_stats"]},
            False,
        ),
        "from": ({"params": state.params["net"], "batch_stats": state.batch_stats}, True),
    }
    same = pairs[:, 2]
    result: dict[str, float] = {}
    roc = {}
    for name, (variables, masked) in models.items():
        variables = jax.device_get(variables)
        clean, occ, s_clean, s_occ = _scores(config, variables, images, occluded, pairs, masked)
        acc_c = fv.verification_accuracy(s_clean, same)
        acc_o = fv.verification_accuracy(s_occ, same)
        result[f"{name}/clean_acc"] = acc_c["mean"]
        result[f"{name}/clean_acc_std"] = acc_c["std"]
        result[f"{name}/occ_acc"] = acc_o["mean"]
        result[f"{name}/occ_acc_std"] = acc_o["std"]
        result[f"{name}/occ_tar@far"] = fv.tar_at_far(s_occ, same, float(config.eval.far))
        result[f"{name}/clean_rank1"] = _rank1(clean["embedding"], clean["embedding"], labels)
        result[f"{name}/occ_rank1"] = _rank1(clean["embedding"], occ["embedding"], labels)
        roc[f"{name} occluded"] = fv.roc_curve(s_occ, same)
        if name == "from" and jax.process_index() == 0:
            _mask_picture(os.path.join(workdir, "from_masks.png"), occluded, occ, boxes, config)
            true = np.asarray(
                oc.pattern_labels(
                    boxes, oc.pattern_boxes(*images.shape[1:3], config.occlusion.grid)
                )
            )
            result["from/occ_pattern_acc"] = float(
                np.mean(np.argmax(occ["pattern_logits"], -1) == true)
            )
    if jax.process_index() == 0:
        viz.save_plot(
            os.path.join(workdir, "roc_occluded.png"),
            roc,
            title=f"occluded pairs ROC (FAR@{config.eval.far})",
            xlabel="FAR",
            ylabel="TAR",
        )
        with open(os.path.join(workdir, "verification.json"), "w") as f:
            json.dump(
                {"num_pairs": int(len(pairs)), "far": float(config.eval.far), **result}, f, indent=2
            )
    return result
