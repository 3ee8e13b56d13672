"""Scene-graph evaluators: Action Genome frame recall and the VidVRD video-level protocol.

Action Genome (TRACE lib/datasets_rel/task_evaluation_sg.py + tools/visualize.py, adapted from
neural-motifs ``_compute_pred_matches``):
  * per pair, the top ``prd_k`` predicates are scored subject_score * object_score * predicate;
    all (pair, predicate) triplets are ranked and the top K kept ("with constraint" = prd_k 1,
    "no constraint" = several predicates per pair; the official AG code uses prd_k = 6);
  * a GT triplet is recalled when a kept triplet has the same (s, p, o) labels and IoU >= 0.5
    for both boxes; recall is computed per frame and averaged over frames with GT;
  * mean recall: per predicate class, recalled GT / all GT of that class pooled over frames
    ("Image_ver_rel_recalls"), averaged over the classes that occur in the GT.
VidVRD (TRACE tools/test_vidvrd.py = the VidVRD-helper protocol):
  * detection: predictions sorted by score, greedily matched to unused GT with the same
    triplet and min(vIoU_subject, vIoU_object) >= 0.5 (the largest overlap wins); AP per video
    (VOC all-point), mAP over videos with GT; Recall@N pools the top N of every video;
  * tagging: unique predicted triplets ranked by score; precision@n per video, averaged.
Boxes use the detectron / VidVRD pixel convention: width = x2 - x1 + 1 (``offset``=1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------------
# Boxes and trajectories.
# ------------------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray, offset: float = 1.0) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of (x1, y1, x2, y2) boxes; offset 1 = inclusive pixels."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0] + offset) * (a[:, 3] - a[:, 1] + offset)
    area_b = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw + offset, 0) * np.maximum(ih + offset, 0)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def viou(
    traj_1: np.ndarray, duration_1: Sequence[int], traj_2: np.ndarray, duration_2: Sequence[int]
) -> float:
    """Voluminal IoU of two trajectories, each (len, 4) boxes over frames [begin, end)."""
    t1, t2 = np.asarray(traj_1, np.float64), np.asarray(traj_2, np.float64)
    if len(t1) != duration_1[1] - duration_1[0] or len(t2) != duration_2[1] - duration_2[0]:
        raise ValueError("A trajectory's length must equal its duration end - begin.")
    begin, end = max(duration_1[0], duration_2[0]), min(duration_1[1], duration_2[1])
    overlap = 0.0
    if begin < end:
        r1 = t1[begin - duration_1[0] : end - duration_1[0]]
        r2 = t2[begin - duration_2[0] : end - duration_2[0]]
        iw = np.minimum(r1[:, 2], r2[:, 2]) - np.maximum(r1[:, 0], r2[:, 0]) + 1
        ih = np.minimum(r1[:, 3], r2[:, 3]) - np.maximum(r1[:, 1], r2[:, 1]) + 1
        overlap = float(np.sum(np.maximum(iw, 0) * np.maximum(ih, 0)))
    v1 = float(np.sum((t1[:, 2] - t1[:, 0] + 1) * (t1[:, 3] - t1[:, 1] + 1)))
    v2 = float(np.sum((t2[:, 2] - t2[:, 0] + 1) * (t2[:, 3] - t2[:, 1] + 1)))
    return overlap / (v1 + v2 - overlap)


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope at the recall steps."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


# ------------------------------------------------------------------------------------------------
# Action Genome (frame level).
# ------------------------------------------------------------------------------------------------


def top_triplets(
    pair_scores: np.ndarray, so_scores: np.ndarray, prd_k: int, top_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks (pair, predicate) triplets as the official evaluator does.

    Args:
      pair_scores: (num_pairs, P) predicate scores (sigmoid).
      so_scores: (num_pairs,) subject score * object score.
      prd_k: predicates kept per pair (1 = with graph constraint).
      top_k: triplets kept.
    Returns:
      (pair index, predicate, score) arrays of the kept triplets, best first.
    """
    labels = np.argsort(-pair_scores, axis=1, kind="stable")[:, :prd_k]
    scores = np.take_along_axis(pair_scores, labels, axis=1) * so_scores[:, None]
    flat = np.argsort(-scores.ravel(), kind="stable")[:top_k]
    pair, col = np.unravel_index(flat, scores.shape)
    return pair, labels[pair, col], scores[pair, col]


def match_triplets(
    gt_spo: np.ndarray,
    gt_boxes: np.ndarray,
    pred_spo: np.ndarray,
    pred_boxes: np.ndarray,
    iou_thresh: float = 0.5,
) -> list[list[int]]:
    """For each predicted triplet, the GT triplets it matches (labels equal, both IoUs >= thr).

    gt_spo/pred_spo: (., 3) (subject label, predicate, object label);
    gt_boxes/pred_boxes: (., 8) subject box then object box.
    """
    pred_to_gt: list[list[int]] = [[] for _ in range(len(pred_spo))]
    if len(gt_spo) == 0 or len(pred_spo) == 0:
        return pred_to_gt
    same = (gt_spo[:, None, :] == pred_spo[None, :, :]).all(-1)
    iou_s = box_iou(gt_boxes[:, :4], pred_boxes[:, :4])
    iou_o = box_iou(gt_boxes[:, 4:], pred_boxes[:, 4:])
    hit = same & (iou_s >= iou_thresh) & (iou_o >= iou_thresh)
    for g, p in zip(*np.nonzero(hit), strict=False):
        pred_to_gt[p].append(int(g))
    return pred_to_gt


def evaluate_frames(
    frames: Sequence[dict[str, Any]], ks: Sequence[int] = (10, 20, 50, 100), prd_k: int = 1
) -> dict[str, float]:
    """Action Genome R@K and mR@K over frames.

    Each frame dict holds GT ``gt_boxes`` (G, 4), ``gt_labels`` (G,), ``gt_rels`` (R, 3)
    rows (subject index, object index, predicate); and predictions ``boxes`` (N, 4),
    ``labels`` (N,), ``obj_scores`` (N,), ``pairs`` (Q, 2) (subject, object indices) and
    ``pair_scores`` (Q, P).
    Returns:
      {'R@K': ..., 'mR@K': ...} in percent.
    """
    recalls = {k: [] for k in ks}
    cls_hit: dict[int, dict[int, int]] = {k: {} for k in ks}
    cls_gt: dict[int, int] = {}
    for fr in frames:
        rels = np.asarray(fr["gt_rels"], np.int64).reshape(-1, 3)
        if len(rels) == 0:
            continue
        gtb, gtl = np.asarray(fr["gt_boxes"]), np.asarray(fr["gt_labels"])
        gt_spo = np.stack([gtl[rels[:, 0]], rels[:, 2], gtl[rels[:, 1]]], 1)
        gt_boxes = np.concatenate([gtb[rels[:, 0]], gtb[rels[:, 1]]], 1)
        for p in rels[:, 2]:
            cls_gt[int(p)] = cls_gt.get(int(p), 0) + 1
        pairs = np.asarray(fr["pairs"], np.int64).reshape(-1, 2)
        boxes, labels = np.asarray(fr["boxes"]), np.asarray(fr["labels"])
        obj_scores = np.asarray(fr["obj_scores"], np.float64)
        so = obj_scores[pairs[:, 0]] * obj_scores[pairs[:, 1]]
        pair, prd, _ = top_triplets(np.asarray(fr["pair_scores"], np.float64), so, prd_k, max(ks))
        sp, op = pairs[pair, 0], pairs[pair, 1]
        pred_spo = np.stack([labels[sp], prd, labels[op]], 1)
        pred_boxes = np.concatenate([boxes[sp], boxes[op]], 1)
        pred_to_gt = match_triplets(gt_spo, gt_boxes, pred_spo, pred_boxes)
        for k in ks:
            matched = set().union(*pred_to_gt[:k]) if pred_to_gt[:k] else set()
            recalls[k].append(len(matched) / len(rels))
            for g in matched:
                p = int(rels[g, 2])
                cls_hit[k][p] = cls_hit[k].get(p, 0) + 1
    out = {}
    for k in ks:
        out[f"R@{k}"] = 100.0 * float(np.mean(recalls[k])) if recalls[k] else 0.0
        per_cls = [cls_hit[k].get(p, 0) / n for p, n in cls_gt.items()]
        out[f"mR@{k}"] = 100.0 * float(np.mean(per_cls)) if per_cls else 0.0
    return out


# ------------------------------------------------------------------------------------------------
# VidVRD (video level).
# ------------------------------------------------------------------------------------------------
# A relation is a dict: triplet (s, p, o), duration (begin, end), sub_traj (len, 4),
# obj_traj (len, 4), and for predictions a score.


def detection_scores(gt: Sequence[dict], pred: Sequence[dict], viou_threshold: float = 0.5):
    """Greedy matching in score order; returns (recall, precision, hit scores (-inf = FP))."""
    pred = sorted(pred, key=lambda x: x["score"], reverse=True)
    used = np.zeros(len(gt), bool)
    hits = np.full(len(pred), -np.inf)
    for i, p in enumerate(pred):
        best, best_j = -np.inf, -1
        for j, g in enumerate(gt):
            if used[j] or tuple(p["triplet"]) != tuple(g["triplet"]):
                continue
            ov = min(
                viou(p["sub_traj"], p["duration"], g["sub_traj"], g["duration"]),
                viou(p["obj_traj"], p["duration"], g["obj_traj"], g["duration"]),
            )
            if ov >= viou_threshold and ov > best:
                best, best_j = ov, j
        if best_j >= 0:
            hits[i], used[best_j] = p["score"], True
    tp = np.isfinite(hits)
    cum_tp, cum_fp = np.cumsum(tp).astype(np.float32), np.cumsum(~tp).astype(np.float32)
    eps = np.finfo(np.float32).eps
    return cum_tp / max(len(gt), eps), cum_tp / np.maximum(cum_tp + cum_fp, eps), hits


def tagging_precision(gt: Sequence[dict], pred: Sequence[dict]) -> np.ndarray:
    """Precision at each rank of the unique predicted triplets (VidVRD tagging)."""
    pred = sorted(pred, key=lambda x: x["score"], reverse=True)
    gt_set = {tuple(r["triplet"]) for r in gt}
    seen: list[tuple] = []
    for r in pred:
        if tuple(r["triplet"]) not in seen:
            seen.append(tuple(r["triplet"]))
    tp = np.array([t in gt_set for t in seen], bool)
    cum_tp = np.cumsum(tp).astype(np.float32)
    return cum_tp / np.maximum(np.arange(1, len(tp) + 1), 1).astype(np.float32)


def evaluate_videos(
    groundtruth: dict[str, list[dict]],
    prediction: dict[str, list[dict]],
    viou_threshold: float = 0.5,
    det_nreturns: Sequence[int] = (50, 100),
    tag_nreturns: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """VidVRD relation detection mAP, Recall@N and tagging Precision@n (percent)."""
    aps, hits_at = [], {n: [] for n in det_nreturns}
    prec_at = {n: [] for n in tag_nreturns}
    total_gt = 0
    for vid, gt in groundtruth.items():
        if not gt:
            continue
        total_gt += len(gt)
        pred = prediction.get(vid, [])
        rec, prec, hits = detection_scores(gt, pred, viou_threshold)
        aps.append(voc_ap(rec, prec))
        for n in det_nreturns:
            hits_at[n].append(np.isfinite(hits[:n]).sum())
        tprec = tagging_precision(gt, pred)
        for n in tag_nreturns:
            cut = min(n, len(tprec))
            prec_at[n].append(float(tprec[cut - 1]) if cut > 0 else 0.0)
    out = {"mAP": 100.0 * float(np.mean(aps)) if aps else 0.0}
    for n in det_nreturns:
        out[f"R@{n}"] = 100.0 * float(np.sum(hits_at[n])) / max(total_gt, 1)
    for n in tag_nreturns:
        out[f"P@{n}"] = 100.0 * float(np.mean(prec_at[n])) if prec_at[n] else 0.0
    return out
