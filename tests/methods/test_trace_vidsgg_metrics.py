"""Scene-graph evaluators against hand-computed cases (numbers worked out in the comments)."""

import numpy as np
import pytest

from jaxpapers.methods.trace_vidsgg import metrics as M


def test_box_iou_pixel_convention():
    # Areas 10x10 = 100 each, overlap 5x5 = 25 -> 25 / 175.
    iou = M.box_iou([[0, 0, 9, 9]], [[5, 5, 14, 14], [0, 0, 9, 9], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0]])


def test_viou_partial_overlap_in_time():
    box = [[0, 0, 9, 9]] * 2
    # Frames [0,2) and [1,3) overlap on frame 1: 100 / (200 + 200 - 100).
    assert M.viou(box, (0, 2), box, (1, 3)) == pytest.approx(1 / 3)
    assert M.viou(box, (0, 2), box, (2, 4)) == 0.0
    with pytest.raises(ValueError):
        M.viou(box, (0, 3), box, (0, 2))


def test_voc_ap_all_point():
    # Envelope: precision 1 up to recall 0.5, then 2/3 up to recall 1 -> 0.5 + 0.5 * 2/3.
    assert M.voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)


def ag_frames():
    boxes = np.array([[0, 0, 9, 9], [20, 0, 29, 9], [40, 0, 49, 9]], np.float32)
    f1 = dict(
        gt_boxes=boxes,
        gt_labels=np.array([0, 1, 2]),
        gt_rels=np.array([[0, 1, 2], [0, 1, 0], [0, 2, 1]]),
        boxes=boxes,
        labels=np.array([0, 1, 2]),
        obj_scores=np.ones(3),
        pairs=np.array([[0, 1], [0, 2], [1, 2]]),
        pair_scores=np.array([[0.9, 0.1, 0.8], [0.7, 0.6, 0.0], [0.95, 0.0, 0.0]]),
    )
    # Frame 2: the predicted subject box has IoU 50/150 < 0.5 with the GT box -> never recalled.
    f2 = dict(
        gt_boxes=boxes[:2],
        gt_labels=np.array([0, 1]),
        gt_rels=np.array([[0, 1, 1]]),
        boxes=np.array([[5, 0, 14, 9], [20, 0, 29, 9]], np.float32),
        labels=np.array([0, 1]),
        obj_scores=np.ones(2),
        pairs=np.array([[0, 1]]),
        pair_scores=np.array([[0.1, 0.99, 0.1]]),
    )
    return [f1, f2]


def test_action_genome_recall_with_constraint():
    # Frame 1, one predicate per pair: (1,2,p0) .95, (0,1,p0) .9, (0,2,p0) .7 -> only (0,1,p0)
    # is GT, at rank 2: recall 0 @1, 1/3 @2, @3. Frame 2: 0. Mean over the two frames.
    r = M.evaluate_frames(ag_frames(), ks=(1, 2, 3), prd_k=1)
    assert r["R@1"] == pytest.approx(0.0)
    assert r["R@2"] == pytest.approx(100 / 6)
    assert r["R@3"] == pytest.approx(100 / 6)
    # Per predicate (pooled over frames): p0 1/1, p1 0/2, p2 0/1.
    assert r["mR@3"] == pytest.approx(100 / 3)


def test_action_genome_recall_no_constraint_and_mean_recall():
    # All predicates: .95 (1,2,p0), .9 (0,1,p0), .8 (0,1,p2), .7 (0,2,p0), .6 (0,2,p1) ...
    # frame 1 recall: 1/3 @2, 2/3 @3, 1 @5; frame 2: 0.
    r = M.evaluate_frames(ag_frames(), ks=(2, 3, 5), prd_k=3)
    assert r["R@2"] == pytest.approx(100 / 6)
    assert r["R@3"] == pytest.approx(100 / 3)
    assert r["R@5"] == pytest.approx(50.0)
    assert r["mR@3"] == pytest.approx(100 * 2 / 3)  # p0 1, p2 1, p1 0/2
    assert r["mR@5"] == pytest.approx(100 * (1 + 1 + 0.5) / 3)


def vidvrd_case():
    sub, obj = [[0, 0, 9, 9]] * 2, [[20, 0, 29, 9]] * 2
    shifted = [[5, 0, 14, 9]] * 2  # vIoU with sub = 100 / 300
    rel = lambda t, s, o, sc=None: dict(
        triplet=t,
        duration=(0, 2),
        sub_traj=s,
        obj_traj=o,  # noqa: E731
        **({} if sc is None else {"score": sc}),
    )
    gt = {
        "v1": [rel(("a", "p", "b"), sub, obj), rel(("a", "q", "b"), sub, obj)],
        "v2": [rel(("c", "r", "d"), sub, obj)],
    }
    pred = {
        "v1": [
            rel(("a", "p", "b"), sub, obj, 0.9),  # TP
            rel(("a", "p", "b"), sub, obj, 0.8),  # FP: its GT is used
            rel(("a", "q", "b"), shifted, obj, 0.7),  # FP: vIoU 1/3 < 0.5
            rel(("a", "q", "b"), sub, obj, 0.6),
        ]
    }  # TP
    return gt, pred


def test_vidvrd_detection_and_tagging():
    gt, pred = vidvrd_case()
    r = M.evaluate_videos(gt, pred, det_nreturns=(1, 2, 4), tag_nreturns=(1, 5))
    # v1: hits T F F T -> recall .5 .5 .5 1, precision 1 .5 1/3 .5 -> AP = .5*1 + .5*.5 = .75;
    # v2 has no predictions -> AP 0.
    assert r["mAP"] == pytest.approx(37.5)
    # Recall@N pools hits in each video's top N over all 3 GT relations.
    assert r["R@1"] == pytest.approx(100 / 3)
    assert r["R@2"] == pytest.approx(100 / 3)
    assert r["R@4"] == pytest.approx(200 / 3)
    # Tagging: v1 unique triplets (a,p,b), (a,q,b) both GT -> P@1 = P@5 = 1; v2 -> 0.
    assert r["P@1"] == pytest.approx(50.0)
    assert r["P@5"] == pytest.approx(50.0)


def test_top_triplets_orders_by_product_of_scores():
    pair, prd, score = M.top_triplets(
        np.array([[0.5, 0.9], [0.8, 0.1]]), np.array([0.5, 1.0]), prd_k=2, top_k=3
    )
    # Triplet scores: pair0: .45 (p1), .25 (p0); pair1: .8 (p0), .1 (p1).
    np.testing.assert_array_equal(pair, [1, 0, 0])
    np.testing.assert_array_equal(prd, [0, 1, 0])
    np.testing.assert_allclose(score, [0.8, 0.45, 0.25])
