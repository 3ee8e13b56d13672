"""TRACE evaluation: Recall@K / mean Recall@K on the test key frames (PredCls or SGCls)."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxpapers import batching
from jaxpapers.methods.trace_vidsgg import metrics
from jaxpapers.methods.trace_vidsgg.inputs import make_source
from jaxpapers.methods.trace_vidsgg.model import build_model


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(params, batch, model):
    out = model.apply({"params": params}, batch, train=False)
    return {
        "rel": jax.nn.sigmoid(out["rel_logits"]),
        "obj": jax.nn.softmax(out["obj_logits"]),
        "lca": out["lca"],
        "parent": out["tree_parent"],
    }


def predict(st, config, src: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Eval-mode predictions for every frame of ``src`` (one compiled batch shape)."""
    model = build_model(config)
    keys = list(src)

    def fn(*arrays):
        return _predict(st.params, dict(zip(keys, arrays, strict=True)), model)

    return batching.map_batches(fn, *(src[k] for k in keys), batch_size=batch_size)


def frame_dicts(src, pred, mode: str) -> list[dict]:
    """Per-frame inputs of metrics.evaluate_frames (PredCls: GT labels, scores 1; SGCls: argmax)."""
    frames = []
    for i in range(len(src["num_boxes"])):
        k = int(src["num_boxes"][i])
        s, o = np.nonzero(~np.eye(k, dtype=bool))
        rel = src["rels"][i, :k, :k]
        gs, go, gp = np.nonzero(rel)
        if mode == "predcls":
            labels, scores = src["labels"][i, :k], np.ones(k)
        else:
            labels, scores = pred["obj"][i, :k].argmax(-1), pred["obj"][i, :k].max(-1)
        frames.append(
            dict(
                gt_boxes=src["boxes"][i, :k],
                gt_labels=src["labels"][i, :k],
                gt_rels=np.stack([gs, go, gp], 1),
                boxes=src["boxes"][i, :k],
                labels=labels,
                obj_scores=scores,
                pairs=np.stack([s, o], 1),
                pair_scores=pred["rel"][i, s, o],
            )
        )
    return frames


def evaluate(st, config, workdir: str) -> dict[str, float]:
    """R@K / mR@K with and without graph constraint on the test split."""
    src = make_source(config, "test")
    pred = predict(st, config, src, config.eval_batch_size)
    frames = frame_dicts(src, pred, config.model.mode)
    out = {}
    for tag, prd_k in (("with", 1), ("no", config.model.num_predicates)):
        res = metrics.evaluate_frames(frames, ks=tuple(config.eval_ks), prd_k=prd_k)
        out.update({f"{tag}_{k}": v for k, v in res.items()})
    if workdir and config.save_pictures:
        from jaxpapers.methods.trace_vidsgg import viz_graph

        viz_graph.save_examples(workdir, src, pred, config)
    return out
