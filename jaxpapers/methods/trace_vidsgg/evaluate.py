"""TRACE evaluation: Recall@K / mean Recall@K on the test key frames (PredCls or SGCls)."""

from __future__ import annotations

import functools
from collections.abc import Callable

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


def scene_graphs(src, pred, mode: str, top_k: int, prd_k: int = 1) -> list[dict[str, np.ndarray]]:
    """Per key frame: object labels/scores and the ``top_k`` relation triplets, ranked as the
    evaluator ranks them (``metrics.top_triplets``; ``prd_k`` predicates per pair, 1 = with graph
    constraint). Triplets are rows (subject box index, object box index, predicate) with scores."""
    graphs = []
    for i in range(len(src["num_boxes"])):
        k = int(src["num_boxes"][i])
        s, o = np.nonzero(~np.eye(k, dtype=bool))
        if mode == "predcls":
            labels, scores = np.asarray(src["labels"][i, :k]), np.ones(k)
        else:
            labels, scores = pred["obj"][i, :k].argmax(-1), pred["obj"][i, :k].max(-1)
        pair, prd, score = metrics.top_triplets(
            np.asarray(pred["rel"][i, s, o], np.float64), scores[s] * scores[o], prd_k, top_k
        )
        graphs.append(
            dict(
                labels=labels,
                obj_scores=scores,
                triplets=np.stack([s[pair], o[pair], prd], 1).astype(np.int32),
                scores=score,
            )
        )
    return graphs


def infer_fn(st, config) -> Callable[..., dict]:
    """The scene-graph predictor of a clip's key frames:
    ``fn(detections, top_k=20, prd_k=1) -> {'rel', 'obj', 'lca', 'parent', 'graphs'}``.

    ``detections`` holds per key frame what a batch holds (``inputs.input_spec``) less the
    ground truth: boxes [F, n_max, 4], labels [F, n_max] (the detector's classes; PredCls uses
    them, SGCls re-classifies), num_boxes [F], and frames or precomputed features; 'rels' may be
    left out. 'rel' [F, n, n, P] are predicate probabilities, 'graphs' the ranked triplets
    (``scene_graphs``)."""
    n, p = int(config.model.n_max), int(config.model.num_predicates)

    def fn(detections: dict[str, np.ndarray], top_k: int = 20, prd_k: int = 1) -> dict:
        src = {k: np.asarray(v) for k, v in detections.items()}
        src.setdefault("rels", np.zeros((len(src["num_boxes"]), n, n, p), np.uint8))
        pred = predict(st, config, src, int(config.eval_batch_size))
        return {**pred, "graphs": scene_graphs(src, pred, config.model.mode, top_k, prd_k)}

    return fn


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
