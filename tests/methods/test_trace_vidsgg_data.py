"""Association, synthetic benchmark and format readers: hand-made cases with known answers."""

import json

import ml_collections
import numpy as np
import pytest

from jaxpapers.methods.trace_vidsgg import association as A
from jaxpapers.methods.trace_vidsgg import formats, metrics, steps, synthetic


def test_segments_and_assignment():
    assert A.segments(60) == [(0, 30), (15, 45), (30, 60)]
    trajs = np.array([[0, 0, 9, 9], [50, 50, 59, 59], [2, 0, 11, 9]], np.float32)
    # Both boxes best match trajectory 0; the object's IoU is lower, so it takes its 2nd best (2).
    assert A.assign_pair(np.array([0, 0, 9, 9]), np.array([1, 0, 10, 9]), trajs) == (0, 2)


def test_segment_scores_sum_and_greedy_association_merges():
    box_a, box_b = np.array([0, 0, 9, 9], float), np.array([40, 0, 49, 9], float)
    trajs = np.stack([np.tile(box_a, (30, 1)), np.tile(box_b, (30, 1))])  # (K=2, 30, 4)
    preds = [
        dict(frame=f, sbj_boxes=[box_a], obj_boxes=[box_b], triplets=[(1, 0, 2)], scores=[0.25])
        for f in (3, 7)
    ]
    rel1 = A.segment_relations(preds, trajs, fstart=0)
    assert rel1 == [(0.5, (1, 0, 2), (0, 1))]  # summed over the two sampled frames
    rel2 = [(0.9, (1, 0, 2), (0, 1)), (0.3, (1, 4, 2), (1, 0))]
    video = A.greedy_associate([(15, rel2, trajs), (0, rel1, trajs)])
    assert len(video) == 2
    merged = video[0]
    assert merged["duration"] == (0, 45) and merged["score"] == pytest.approx(0.9)
    np.testing.assert_array_equal(merged["sub_traj"], np.tile(box_a, (45, 1)))
    assert video[1]["triplet"] == (1, 4, 2) and video[1]["duration"] == (15, 45)
    # The associated relation is a perfect detection of a 45-frame GT relation.
    gt = {
        "v": [
            dict(
                triplet=(1, 0, 2),
                duration=(0, 45),
                sub_traj=np.tile(box_a, (45, 1)),
                obj_traj=np.tile(box_b, (45, 1)),
            )
        ]
    }
    assert metrics.evaluate_videos(gt, {"v": video})["mAP"] == pytest.approx(100.0)


def small_cfg(**kw):
    c = dict(
        image_size=32,
        clip_len=3,
        stride=2,
        n_max=4,
        keys_per_video=2,
        key_gap=4,
        num_train_videos=3,
        num_test_videos=2,
        seed=0,
        rel_radius=0.45,
        min_speed=0.5,
    )
    c.update(kw)
    return ml_collections.ConfigDict(c)


def test_synthetic_is_deterministic_and_splits_differ():
    a, b = synthetic.make_frames(small_cfg(), "train"), synthetic.make_frames(small_cfg(), "train")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    t = synthetic.make_frames(small_cfg(), "test")
    assert not np.array_equal(a["frames"][:4], t["frames"][:4])
    assert set(synthetic.TRAIN_BACKGROUNDS).isdisjoint(synthetic.TEST_BACKGROUNDS)
    n = a["num_boxes"]
    assert a["frames"].shape == (6, 3, 32, 32, 3) and np.all((n >= 2) & (n <= 4))
    for i in range(len(n)):  # no relations on padding or on the diagonal
        assert not a["rels"][i, n[i] :].any() and not a["rels"][i, :, n[i] :].any()
        assert not a["rels"][i][np.arange(4), np.arange(4)].any()


def test_synthetic_relation_rules_on_a_hand_made_scene():
    # Two boxes 10 px apart horizontally; s moves right towards o at 1 px/frame, o is static
    # and nearer (depth 0) and overlaps s.
    traj = np.zeros((9, 2, 4))
    for t in range(9):
        traj[t, 0] = [t, 10, t + 12, 20]
        traj[t, 1] = [14, 14, 26, 24]
    v = dict(traj=traj, depth=np.array([1, 0]))
    rel = synthetic.relations_at(v, 4, 4, 64, 0.45, 0.5)
    names = lambda r: {synthetic.PREDICATES[p] for p in np.nonzero(r)[0]}  # noqa: E731
    assert names(rel[0, 1]) == {"left_of", "above", "behind", "approaching"}
    assert names(rel[1, 0]) == {"in_front_of"}


def test_vidvrd_reader_roundtrip_and_errors(tmp_path):
    anno = synthetic.video_to_vidvrd(0, "test", small_cfg(), num_frames=20)
    path = tmp_path / "v.json"
    path.write_text(json.dumps(anno))
    rels = formats.read_vidvrd(str(path))
    assert len(rels) == len(anno["relation_instances"]) > 0
    r = rels[0]
    assert len(r["sub_traj"]) == r["duration"][1] - r["duration"][0]
    with pytest.raises(ValueError, match="missing keys"):
        formats.read_vidvrd({"trajectories": []})
    with pytest.raises(FileNotFoundError):
        formats.read_vidvrd(str(tmp_path / "absent.json"))


def test_precomputed_reader(tmp_path):
    (tmp_path / "train").mkdir()
    np.savez(
        tmp_path / "train" / "f0.npz",
        boxes=np.zeros((2, 4)),
        labels=np.array([0, 1]),
        obj_feat=np.ones((2, 5)),
        feat2d=np.ones((3, 4, 2)),
        feat3d=np.ones((2, 3, 4, 2)),
        rels=np.array([[0, 1, 2]]),
    )
    d = formats.load_precomputed(str(tmp_path), "train", n_max=3)
    assert d["rels"].shape == (1, 3, 3, 3) and d["rels"][0, 0, 1, 2] == 1
    assert d["obj_feat"].shape == (1, 3, 5) and d["num_boxes"][0] == 2
    with pytest.raises(FileNotFoundError, match="data.path"):
        formats.load_precomputed(str(tmp_path), "test", n_max=3)


def test_precomputed_reader_frames_mode(tmp_path):
    (tmp_path / "train").mkdir()
    np.savez(
        tmp_path / "train" / "f0.npz",
        boxes=np.zeros((2, 4)),
        labels=np.array([0, 1]),
        obj_feat=np.ones((2, 5)),
        frames=np.full((5, 6, 7, 3), 9, np.uint8),
        rels=np.array([[0, 1, 2]]),
    )
    d = formats.load_precomputed(str(tmp_path), "train", 3, frames=True, frame_shape=(8, 8))
    assert d["frames"].shape == (1, 5, 8, 8, 3) and d["frames"].dtype == np.uint8
    assert d["frames"][0, :, :6, :7].min() == 9 and d["frames"][0, :, 6:].max() == 0
    assert "feat2d" not in d
    with pytest.raises(ValueError, match="exceed data.frame_shape"):
        formats.load_precomputed(str(tmp_path), "train", 3, frames=True, frame_shape=(4, 4))


def test_read_official_detections(tmp_path):
    import pickle

    det = {  # tools/get_vidvrd_pretrained_rois.py layout: [0, x1, y1, x2, y2], bg + 3 classes
        "rois": np.array([[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [0, 9, 9, 20, 20]], np.float32),
        "score": np.array([[0, 0.1, 0.7, 0.2], [0, 0.9, 0.05, 0.05], [0, 0.2, 0.3, 0.25]]),
        "labels_int32": [np.array([2, 1, -1], np.int32)],
    }
    path = tmp_path / "000123.pkl"
    path.write_bytes(pickle.dumps(det))
    d = formats.read_detections(str(path), n_max=4)
    assert d["num_boxes"] == 3
    np.testing.assert_array_equal(d["labels"], [0, 1, 1, 0])  # 0-based, by descending score
    np.testing.assert_allclose(d["scores"], [0.9, 0.7, 0.3, 0.0])
    np.testing.assert_array_equal(d["boxes"][:3], [[5, 6, 7, 8], [1, 2, 3, 4], [9, 9, 20, 20]])
    d = formats.read_detections(det, n_max=1)  # top-1 only
    assert d["num_boxes"] == 1 and d["labels"][0] == 0
    assert formats.read_detections(det, n_max=4, score_thresh=0.5)["num_boxes"] == 2

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"rois": Evil(), "score": np.zeros((1, 2))}))
    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        formats.read_detections(str(bad), n_max=2)
    with pytest.raises(ValueError, match="rois"):
        formats.read_detections({"boxes": np.zeros((1, 4))}, n_max=2)


def test_freq_bias_init_is_log_predicate_frequency():
    rels = np.zeros((1, 2, 2, 2), np.uint8)
    rels[0, 0, 1, 0] = 1
    table = steps.freq_bias_init(rels, np.array([[1, 0]]), np.array([2]), num_cls=2)
    # Pair (class 1, class 0) saw predicate 0 once: log(1 + 1e-3), log(0 + 1e-3).
    np.testing.assert_allclose(table[1 * 2 + 0], np.log([1 / (1 + 1e-8) + 1e-3, 1e-3]), rtol=1e-9)
    np.testing.assert_allclose(table[0], np.log([1e-3, 1e-3]), rtol=1e-6)
