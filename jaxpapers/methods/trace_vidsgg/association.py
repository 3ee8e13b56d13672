"""Frame-level -> video-level relations for VidVRD (TRACE tools/transform_vidvrd_results.py and
lib/vidvrd_utils/association.py, the VidVRD-helper greedy relational association).

1. Videos are cut into 30-frame segments with stride 15.
2. Frame-level predictions are read at offsets ``SAMPLE_OFFSETS`` inside each segment.
3. Each predicted subject / object box is assigned to the segment's object-trajectory proposal
   with the highest IoU at that frame; if both land on the same trajectory, the side with the
   lower IoU takes its second-best trajectory.
4. Scores of identical (triplet, trajectory pair) entries are summed over the sampled frames.
5. Segments are processed in time order, at most 100 relations each (best first). A relation
   joins a relation extended in the previous segment when the triplets are equal and
   min(vIoU_subject, vIoU_object) over the overlapping frames >= 0.5 (the best such match;
   each previous relation is extended at most once per segment); merged trajectories are
   averaged over the overlap and the confidence is the max of the segment scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxpapers.methods.trace_vidsgg.metrics import box_iou, viou

SEGMENT_LENGTH, SEGMENT_STRIDE = 30, 15
SAMPLE_OFFSETS = (3, 7, 11, 14, 15, 19, 23, 27)


def segments(num_frames: int, length: int = SEGMENT_LENGTH, stride: int = SEGMENT_STRIDE):
    """(fstart, fend) of every full segment of a video."""
    return [(s, s + length) for s in range(0, num_frames - length + 1, stride)]


def assign_pair(
    sbj_box: np.ndarray, obj_box: np.ndarray, traj_boxes: np.ndarray
) -> tuple[int, int]:
    """Trajectory indices for a subject / object box given the proposals' boxes (K, 4) there."""
    if len(traj_boxes) < 2:
        raise ValueError("Association needs at least two trajectory proposals in the segment.")
    iou_s, iou_o = box_iou(sbj_box, traj_boxes)[0], box_iou(obj_box, traj_boxes)[0]
    s, o = int(np.argmax(iou_s)), int(np.argmax(iou_o))
    if s == o:  # the weaker side takes its second-best match
        if iou_s[s] >= iou_o[o]:
            o = int(np.argsort(-iou_o, kind="stable")[1])
        else:
            s = int(np.argsort(-iou_s, kind="stable")[1])
    return s, o


def segment_relations(frame_preds: Sequence[dict], traj_boxes: np.ndarray, fstart: int) -> list:
    """Sums per-frame triplet scores into (score, triplet, (s_traj, o_traj)) entries.

    Args:
      frame_preds: one dict per sampled frame: ``frame`` (absolute index), ``sbj_boxes``,
        ``obj_boxes`` (R, 4), ``triplets`` (R, 3) and ``scores`` (R,).
      traj_boxes: (K, 30, 4) proposal boxes of the segment starting at ``fstart``.
    """
    acc: dict[tuple, float] = {}
    for fp in frame_preds:
        t = fp["frame"] - fstart
        rows = zip(fp["sbj_boxes"], fp["obj_boxes"], fp["triplets"], fp["scores"], strict=True)
        for sb, ob, trip, sc in rows:
            key = (tuple(int(x) for x in trip), assign_pair(sb, ob, traj_boxes[:, t]))
            acc[key] = acc.get(key, 0.0) + float(sc)
    return [(sc, trip, pair) for (trip, pair), sc in acc.items()]


class _Relation:
    def __init__(self, triplet, straj, otraj, fstart, conf):
        self.triplet, self.fstart, self.confs = triplet, fstart, [conf]
        self.straj, self.otraj = np.array(straj, np.float64), np.array(otraj, np.float64)

    @property
    def fend(self) -> int:
        return self.fstart + len(self.straj)

    def overlap(self, straj, otraj, fstart) -> float:
        dur = (self.fstart, self.fend)
        other = (fstart, fstart + len(straj))
        lo, hi = max(dur[0], other[0]), min(dur[1], other[1])
        if lo >= hi:
            return 0.0
        cut = lambda tr, d: tr[lo - d[0] : hi - d[0]]  # noqa: E731  (vIoU over the overlap only)
        return min(
            viou(cut(self.straj, dur), (lo, hi), cut(straj, other), (lo, hi)),
            viou(cut(self.otraj, dur), (lo, hi), cut(otraj, other), (lo, hi)),
        )

    def extend(self, straj, otraj, fstart, conf) -> None:
        ov = self.fend - fstart
        for mine, new in ((self.straj, straj), (self.otraj, otraj)):
            mine[len(mine) - ov :] = (mine[len(mine) - ov :] + new[:ov]) / 2
        self.straj = np.concatenate([self.straj, straj[ov:]])
        self.otraj = np.concatenate([self.otraj, otraj[ov:]])
        self.confs.append(conf)

    def to_dict(self) -> dict:
        return dict(
            triplet=self.triplet,
            score=float(np.max(self.confs)),
            duration=(self.fstart, self.fend),
            sub_traj=self.straj,
            obj_traj=self.otraj,
        )


def greedy_associate(
    short_term: Sequence[tuple], max_per_segment: int = 100, iou_thr: float = 0.5
) -> list[dict]:
    """Video-level relations (metrics.evaluate_videos format) from per-segment relations.

    Args:
      short_term: (fstart, relations, traj_boxes) per segment, with relations as returned by
        ``segment_relations`` and traj_boxes (K, length, 4).
    """
    video: list[_Relation] = []
    last: list[_Relation] = []
    for fstart, rels, trajs in sorted(short_term, key=lambda x: x[0]):
        rels = sorted(rels, key=lambda x: x[0], reverse=True)[:max_per_segment]
        last = sorted(last, key=lambda r: max(r.confs))
        cur = []
        for score, triplet, (si, oi) in rels:
            straj, otraj = trajs[si], trajs[oi]
            best, best_ov = None, -1.0
            for r in last:
                if r.triplet == tuple(triplet) and fstart < r.fend:
                    ov = r.overlap(straj, otraj, fstart)
                    if ov >= iou_thr and best_ov <= ov:
                        best, best_ov = r, ov
            if best is None:
                r = _Relation(tuple(triplet), straj, otraj, fstart, score)
                video.append(r)
            else:
                last.remove(best)
                best.extend(straj, otraj, fstart, score)
                r = best
            cur.append(r)
        last = cur
    return [r.to_dict() for r in video]
