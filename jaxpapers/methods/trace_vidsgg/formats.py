"""Readers for the real data formats (as MCG-NJU/TRACE tools/rename_ag.py and the VidVRD
JSON files define them), with clear errors.

* ImageNet-VidVRD: one JSON per video (``subject/objects``, ``trajectories``,
  ``relation_instances``) -> relation instances as the VidVRD-helper evaluator reads them.
* Action Genome: ``person_bbox.pkl`` + ``object_bbox_and_relationship.pkl`` + class lists ->
  per-frame boxes (x1, y1, x2, y2), labels (person = 0) and (subject, object, predicate) rows.
* Precomputed features for the paper presets (the frozen Faster R-CNN / ResNet-50-DC5 / I3D
  outputs are computed outside this project): ``<path>/<split>/*.npz``, one file per key frame
  with ``boxes`` (n, 4) float (x1, y1, x2, y2, pixels at the features' input scale), ``labels``
  (n,) int (0-based), ``obj_feat`` (n, K) detector box-head features, ``feat2d`` (H, W, C)
  ResNet-50-DC5 conv5 map of the key frame, ``feat3d`` (T, H, W, C) I3D slices and ``rels``
  (R, 3) int rows (subject index, object index, predicate). Maps smaller than the largest are
  zero-padded at the bottom/right. With ``model.backbone='resnet'`` (the paper presets) the
  files hold ``frames`` (T, H, W, 3) uint8 RGB (the clip at the detector's scale, key frame in
  the middle) instead of ``feat2d``/``feat3d``; frames are zero-padded at the bottom/right.
* SGDet boxes: the official pre-processed detections (tools/get_vidvrd_pretrained_rois.py,
  ``detection_models/vidvrd/pre_processed_boxes/{train,val}/<frame>.pkl``): a pickled dict with
  ``rois`` (n, 5) float [batch index, x1, y1, x2, y2], ``score`` (n, 1 + C) class scores with a
  zero background column first, optionally ``labels_int32`` ([array (n,)] 1-based, 0 = bg,
  -1 = ignore). ``read_detections`` turns one into the model's padded box input (labels =
  argmax over the foreground columns, scores = its max, as the official test path takes them),
  with a restricted unpickler (numpy arrays and plain containers only).
* Class vectors (GloVe 200-d rows in class order): ``.npy`` (C, D) or a GloVe text file plus a
  class list.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from jaxpapers import safe_io

_VIDVRD_KEYS = ("subject/objects", "trajectories", "relation_instances")


def read_vidvrd(path_or_dict) -> list[dict]:
    """Relation instances (triplet, tids, duration, sub_traj, obj_traj) of one VidVRD video."""
    if isinstance(path_or_dict, dict):
        anno, where = path_or_dict, "<dict>"
    else:
        if not os.path.exists(path_or_dict):
            raise FileNotFoundError(f"VidVRD annotation {path_or_dict} does not exist.")
        with open(path_or_dict) as f:
            anno, where = json.load(f), path_or_dict
    missing = [k for k in _VIDVRD_KEYS if k not in anno]
    if missing:
        raise ValueError(f"{where}: not a VidVRD annotation, missing keys {missing}.")
    cats = {so["tid"]: so["category"] for so in anno["subject/objects"]}
    frames = [
        {
            b["tid"]: (b["bbox"]["xmin"], b["bbox"]["ymin"], b["bbox"]["xmax"], b["bbox"]["ymax"])
            for b in fr
        }
        for fr in anno["trajectories"]
    ]
    out = []
    for r in anno["relation_instances"]:
        s, o, b, e = r["subject_tid"], r["object_tid"], r["begin_fid"], r["end_fid"]
        if s not in cats or o not in cats:
            raise ValueError(
                f"{where}: relation refers to unknown tid {s if s not in cats else o}."
            )
        if not 0 <= b < e <= len(frames):
            raise ValueError(f"{where}: bad duration [{b}, {e}) for {len(frames)} frames.")
        try:
            sub = np.array([frames[t][s] for t in range(b, e)], np.float64)
            obj = np.array([frames[t][o] for t in range(b, e)], np.float64)
        except KeyError as err:
            raise ValueError(f"{where}: tid {err} has no box in a frame of its relation.") from err
        out.append(
            dict(
                triplet=(cats[s], r["predicate"], cats[o]),
                subject_tid=s,
                object_tid=o,
                duration=(b, e),
                sub_traj=sub,
                obj_traj=obj,
            )
        )
    return out


def _read_lines(path: str) -> list[str]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"Class list {path} does not exist.")
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


def read_action_genome(
    person_pkl: str,
    object_pkl: str,
    object_classes: str,
    relationship_classes: str,
    split: str = "test",
) -> list[dict]:
    """Frames of the raw Action Genome annotation files (person = subject, index 0)."""
    for p in (person_pkl, object_pkl):
        if not os.path.exists(p):
            raise FileNotFoundError(f"Action Genome file {p} does not exist.")
    objs, rels = _read_lines(object_classes), _read_lines(relationship_classes)
    obj_id, rel_id = {c: i for i, c in enumerate(objs)}, {c: i for i, c in enumerate(rels)}
    # The annotation pickles are downloads: read them with the restricted unpickler (dicts,
    # lists and NumPy arrays only), never with pickle.load.
    persons = safe_io.load_numpy_pickle(person_pkl)
    objects = safe_io.load_numpy_pickle(object_pkl)
    for p, obj in ((person_pkl, persons), (object_pkl, objects)):
        if not isinstance(obj, dict):
            raise ValueError(f"{p}: expected a dict keyed by frame, got {type(obj).__name__}.")
    try:
        return _action_genome_frames(
            persons, objects, obj_id, rel_id, split, object_pkl, person_pkl
        )
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(
            f"{person_pkl} / {object_pkl}: not in the Action Genome annotation layout "
            f"({type(e).__name__}: {e})."
        ) from e


def _action_genome_frames(persons, objects, obj_id, rel_id, split, object_pkl, person_pkl):
    frames = []
    for key, items in objects.items():
        if key not in persons:
            raise ValueError(f"Frame {key} is in {object_pkl} but not in {person_pkl}.")
        pbox = np.asarray(persons[key]["bbox"], np.float32).reshape(-1, 4)
        items = [it for it in items if it.get("visible") and it["metadata"]["set"] == split]
        if len(pbox) == 0 or not items:
            continue  # TRACE drops frames without a person box or without relations
        boxes, labels, triples = [pbox[0]], [obj_id.get("person", 0)], []
        for it in items:
            if it["class"] not in obj_id:
                raise ValueError(f"Frame {key}: unknown object class {it['class']!r}.")
            x, y, w, h = it["bbox"]
            boxes.append(np.array([x, y, x + w, y + h], np.float32))
            labels.append(obj_id[it["class"]])
            for kind in (
                "attention_relationship",
                "spatial_relationship",
                "contacting_relationship",
            ):
                for name in it.get(kind) or []:
                    name = name.replace("_", "")
                    cands = [i for c, i in rel_id.items() if c.replace("_", "") == name]
                    if not cands:
                        raise ValueError(f"Frame {key}: unknown predicate {name!r}.")
                    triples.append((0, len(boxes) - 1, cands[0]))
        if triples:
            frames.append(
                dict(
                    key=key,
                    boxes=np.stack(boxes),
                    labels=np.array(labels, np.int32),
                    rels=np.array(triples, np.int64),
                )
            )
    return frames


def load_precomputed(
    path: str, split: str, n_max: int, frames: bool = False, frame_shape=(0, 0)
) -> dict[str, np.ndarray]:
    """Padded arrays (input_spec keys) from ``<path>/<split>/*.npz`` (module docstring format)."""
    files = sorted(glob.glob(os.path.join(path, split, "*.npz")))
    if not files:
        raise FileNotFoundError(
            f"No precomputed feature files {os.path.join(path, split, '*.npz')}; see the format in "
            "jaxpapers/methods/trace_vidsgg/formats.py and set --config.data.path."
        )
    recs = []
    for fn in files:
        z = np.load(fn)
        maps = ("frames",) if frames else ("feat2d", "feat3d")
        need = ("boxes", "labels", "obj_feat", "rels") + maps
        miss = [k for k in need if k not in z]
        if miss:
            raise ValueError(f"{fn} lacks keys {miss}.")
        if len(z["boxes"]) > n_max:
            raise ValueError(f"{fn} has {len(z['boxes'])} boxes > model.n_max={n_max}.")
        recs.append({k: z[k] for k in need})
    num_p = int(max(r["rels"][:, 2].max() for r in recs if len(r["rels"])) + 1)
    out = {k: [] for k in ("boxes", "labels", "num_boxes", "rels", "obj_feat") + maps}
    if frames:
        hw = max(r["frames"].shape[1] for r in recs), max(r["frames"].shape[2] for r in recs)
        if frame_shape[0]:
            if hw[0] > frame_shape[0] or hw[1] > frame_shape[1]:
                raise ValueError(f"Frames up to {hw} exceed data.frame_shape {frame_shape}.")
            hw = tuple(frame_shape)
    else:
        h2 = max(r["feat2d"].shape[0] for r in recs), max(r["feat2d"].shape[1] for r in recs)
        h3 = max(r["feat3d"].shape[1] for r in recs), max(r["feat3d"].shape[2] for r in recs)
    for r in recs:
        n = len(r["boxes"])
        pad = lambda a, shape: np.pad(a, [(0, s - d) for s, d in zip(shape, a.shape, strict=False)])  # noqa: E731
        out["boxes"].append(pad(r["boxes"].astype(np.float32), (n_max, 4)))
        out["labels"].append(pad(r["labels"].astype(np.int32), (n_max,)))
        out["num_boxes"].append(np.int32(n))
        dense = np.zeros((n_max, n_max, num_p), np.uint8)
        dense[r["rels"][:, 0], r["rels"][:, 1], r["rels"][:, 2]] = 1
        out["rels"].append(dense)
        out["obj_feat"].append(
            pad(r["obj_feat"].astype(np.float32), (n_max, r["obj_feat"].shape[1]))
        )
        if frames:
            f = r["frames"]
            out["frames"].append(pad(f.astype(np.uint8), f.shape[:1] + hw + f.shape[3:]))
            continue
        out["feat2d"].append(pad(r["feat2d"].astype(np.float32), h2 + r["feat2d"].shape[2:]))
        out["feat3d"].append(
            pad(r["feat3d"].astype(np.float32), r["feat3d"].shape[:1] + h3 + r["feat3d"].shape[3:])
        )
    return {k: np.stack(v) for k, v in out.items()}


def read_detections(path_or_dict, n_max: int, score_thresh: float = 0.0) -> dict[str, np.ndarray]:
    """One frame's official pre-processed detections -> padded ``boxes`` (n_max, 4) (x1, y1, x2,
    y2), 0-based ``labels`` (n_max,), ``scores`` (n_max,) and ``num_boxes``; the ``n_max`` most
    confident boxes with score >= ``score_thresh`` are kept, in descending score order."""
    if isinstance(path_or_dict, dict):
        d, where = path_or_dict, "<dict>"
    else:
        if not os.path.exists(path_or_dict):
            raise FileNotFoundError(f"Detection file {path_or_dict} does not exist.")
        # Containers and NumPy arrays only, no callable constructors (safe_io).
        d, where = safe_io.load_numpy_pickle(path_or_dict), path_or_dict
    if not isinstance(d, dict) or "rois" not in d or "score" not in d:
        raise ValueError(f"{where}: expected a dict with 'rois' (n, 5) and 'score' (n, 1 + C).")
    rois = np.asarray(d["rois"], np.float32).reshape(-1, 5)
    score = np.asarray(d["score"], np.float32).reshape(len(rois), -1)
    if score.shape[1] < 2:
        raise ValueError(f"{where}: 'score' needs a background column plus class columns.")
    labels = score[:, 1:].argmax(1)
    conf = score[:, 1:].max(1)
    order = [i for i in np.argsort(-conf, kind="stable") if conf[i] >= score_thresh][:n_max]
    k = len(order)
    boxes = np.zeros((n_max, 4), np.float32)
    lab = np.zeros(n_max, np.int32)
    sc = np.zeros(n_max, np.float32)
    boxes[:k], lab[:k], sc[:k] = rois[order, 1:], labels[order], conf[order]
    return {"boxes": boxes, "labels": lab, "scores": sc, "num_boxes": np.int32(k)}


def load_class_vectors(path: str, num_classes: int, dim: int, class_list: str = "") -> np.ndarray:
    """(num_classes, dim) class vectors from a .npy, or a GloVe text file + class list."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Class vector file {path} does not exist (model.glove_path).")
    if path.endswith(".npy"):
        vec = np.load(path).astype(np.float32)
    else:
        if not class_list:
            raise ValueError("A GloVe text file needs the class list (one name per line).")
        names = _read_lines(class_list)
        table = {}
        with open(path, encoding="utf8") as f:
            for ln in f:
                w, *v = ln.rstrip().split(" ")
                table[w] = np.asarray(v, np.float32)
        # Multi-word names average their words, as obj_edge_vectors does.
        vec = np.stack(
            [
                np.mean(
                    [table.get(w, np.zeros(dim, np.float32)) for w in n.replace("/", " ").split()],
                    0,
                )
                for n in names
            ]
        )
    if vec.shape != (num_classes, dim):
        raise ValueError(
            f"Class vectors in {path} have shape {vec.shape}, expected {(num_classes, dim)}."
        )
    return vec
