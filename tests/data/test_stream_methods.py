"""The grain stream for the paper presets of synface, unifacegan and trace_vidsgg.

For each method, on tiny generated data: the streamed batches equal the in-memory loader's
batches of the same seed and steps, a stream started mid-epoch continues exactly, and a bad file
stops the stream with one line naming it. Images carry their example's id in a pixel value so
that a wrong join or order shows.
"""

import io
import json
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from jaxpapers import config_lib, data
from jaxpapers.data import face_recognition, order, stream


def _take(s: stream.HostStream, k: int) -> list[dict]:
    with s:
        return [next(s) for _ in range(k)]


def _memory_batches(arrays: dict, batch: int, seed: int, steps, part=(0, 1)) -> list[dict]:
    """The in-memory Loader's host batches (`Loader.host_batch`) of process ``part`` = (index,
    count)."""
    n = len(next(iter(arrays.values())))
    out = []
    for s in steps:
        local, _ = order.process_part(order.step_indices(n, batch, seed, s), *part)
        out.append(data.read_source(arrays, local))
    return out


def _assert_batches_equal(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y)
        for k in x:
            assert x[k].dtype == y[k].dtype, k
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _check_stream_equals_memory(src, arrays, batch: int, seed: int, mid: int, steps: int = 6):
    """Stream batches == in-memory batches over ``steps`` (more than an epoch); a stream started
    at step ``mid`` (inside an epoch) continues them; two processes read the two halves of the
    batch."""
    n = len(src)
    assert steps > n // batch and mid % (n // batch)  # crosses an epoch; resumes mid-epoch
    full = _take(stream.HostStream(src, batch, seed=seed), steps)
    _assert_batches_equal(full, _memory_batches(arrays, batch, seed, range(steps)))
    resumed = _take(stream.HostStream(src, batch, seed=seed, start_step=mid), 2)
    _assert_batches_equal(resumed, full[mid : mid + 2])
    for p in (0, 1):
        half = stream.HostStream(src, batch, seed=seed, process_index=p, process_count=2)
        _assert_batches_equal(
            _take(half, 2), _memory_batches(arrays, batch, seed, range(2), part=(p, 2))
        )
    return full


def _assert_one_line_error(src, batch: int, steps: int, name: str):
    s = stream.HostStream(src, batch, seed=0)
    with s, pytest.raises(ValueError) as e:
        for _ in range(steps):
            next(s)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and msg.startswith("Input stream, step ")


# ----------------------------------------------------------------------------------- synface
def _face(uid: int) -> np.ndarray:
    """Colour image whose red channel is the id (so the grey path's channel 0 keeps it)."""
    img = np.zeros((10, 12, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = uid, 200 - uid, 3
    return img


def _identity_folder(root, ids=6, per_id=5):
    for i in range(ids):
        os.makedirs(root / f"id{i:02d}")
        for j in range(per_id):
            Image.fromarray(_face(10 * i + j)).save(root / f"id{i:02d}" / f"{j}.png")
    return root


def _synface(root, **kw):
    over = {"data.path": str(root), "data.pipeline": "memory", **kw}
    return config_lib.load("synface:smoke", {k: str(v) for k, v in over.items()})


def test_synface_stream_equals_memory_rows_and_resumes(tmp_path):
    from jaxpapers.methods.synface import inputs

    root = _identity_folder(tmp_path / "faces")
    memory = inputs.make_source(_synface(root), "train")
    src = inputs.make_source(_synface(root, **{"data.pipeline": "stream"}), "train")
    assert isinstance(src, stream.JoinedSource) and len(src) == len(memory["syn_seed"]) == 24
    full = _check_stream_equals_memory(src, memory, 8, seed=0, mid=4)
    # Grey (smoke: 1 channel): the red channel of the decode, i.e. the image's id; smoke keeps
    # the first 4 identities x 4 images, and the label is the identity.
    ids = full[0]["real_image"][:, 0, 0, 0].astype(int)
    assert full[0]["real_image"].shape[1:] == (8, 8, 1)
    np.testing.assert_array_equal(ids // 10, full[0]["real_label"])
    assert set(np.concatenate([b["real_image"][:, 0, 0, 0] for b in full[:3]]) % 10) <= {0, 1, 2, 3}
    # The paper preset's names stream too: a CASIA-style folder gives the same rows.
    casia = inputs.make_source(
        _synface(root, **{"data.pipeline": "stream", "data.name": "casia_webface"}), "train"
    )
    _assert_batches_equal(_take(stream.HostStream(casia, 8, seed=0), 2), full[:2])


def test_synface_paper_preset_streams_casia_recordio(tmp_path):
    from jaxpapers.methods.synface import inputs

    labels = [i for i in range(4) for _ in range(3)]
    root = tmp_path / "rec"
    os.makedirs(root)
    offsets = {}
    with open(root / "train.rec", "wb") as f:
        for k, lab in enumerate(labels):
            buf = io.BytesIO()
            Image.fromarray(_face(10 * lab + k % 3)).save(buf, format="PNG")
            if k % 2 == 0:  # a scalar label in the header (record 0: not an insightface header)
                payload = struct.pack("<IfQQ", 0, float(lab), 0, 0) + buf.getvalue()
            else:  # a label vector after it (flag = its length): the class is its first entry
                vec = np.asarray([lab, 7], np.float32).tobytes()
                payload = struct.pack("<IfQQ", 2, 0.0, 0, 0) + vec + buf.getvalue()
            offsets[k] = f.tell()
            f.write(struct.pack("<II", face_recognition.RECORDIO_MAGIC, len(payload)))
            f.write(payload + b"\0" * (-len(payload) % 4))
    (root / "train.idx").write_text("".join(f"{k}\t{v}\n" for k, v in offsets.items()))
    rec = face_recognition.RecordIOSource(str(root), (8, 8))
    assert rec.labels().tolist() == labels  # from the headers alone
    cfg = config_lib.load(
        "synface:casia_webface",
        {"data.path": str(root), "data.n_train_ids": "3", "data.real_per_id": "2",
         "synth.num_ids": "4", "synth.per_id": "2", "gen.resolution": "8"},
    )  # fmt: skip
    assert cfg.data.pipeline == "stream" and cfg.data.workers == stream.PAPER_WORKERS
    src = inputs.make_source(cfg, "train")
    batch = _take(stream.HostStream(src, 4, seed=1), 1)[0]
    assert batch["real_image"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(batch["real_image"][:, 0, 0, 0] // 10, batch["real_label"])
    assert set(batch["real_image"][:, 0, 0, 0] % 10) <= {0, 1}  # first 2 images per identity


def test_synface_bad_image_gives_one_line(tmp_path):
    from jaxpapers.methods.synface import inputs

    root = _identity_folder(tmp_path / "faces")
    (root / "id01" / "2.png").write_bytes(b"not a png")
    src = inputs.make_source(_synface(root, **{"data.pipeline": "stream"}), "train")
    _assert_one_line_error(src, 8, 3, "2.png")  # one epoch reads every real image


# -------------------------------------------------------------------------------- unifacegan
@pytest.fixture
def tracked_videos(tmp_path, monkeypatch):
    """Two 'videos' whose tracking is replaced by procedural face videos: the array_record
    caches are written and read by the real code."""
    from jaxpapers.data import face_video
    from jaxpapers.methods.unifacegan import synthetic

    clips = synthetic.make_videos(2, 9, 16, seed=3)
    paths = []
    for k, (frames, _) in enumerate(clips):
        frames[:, 0, 0, 0] = np.arange(len(frames)) + 20 * k  # frame id in a pixel
        paths.append(str(tmp_path / f"clip{k}.mp4"))
        open(paths[-1], "wb").close()
    by_path = {os.path.abspath(p): c for p, c in zip(paths, clips, strict=True)}

    def fake_track(path, size, **kw):
        frames, lm = by_path[path]
        found = np.ones(len(frames), bool)
        found[4] = False  # a frame without a face is dropped from the records
        return face_video.FaceVideo(frames=frames, landmarks=lm.astype(np.float32), found=found)

    monkeypatch.setattr(face_video, "track_and_crop", fake_track)
    monkeypatch.setattr(face_video, "FaceMeshTracker", lambda: None)  # no TFLite models needed
    over = {
        "data.videos": ",".join(paths),
        "data.stills": "False",
        "data.size": "16",
        "data.test_frames": "2",
        "data.video_repeat": "2",
        "data.cache_dir": str(tmp_path / "cache"),
        "batch_size": "4",
    }
    return lambda **kw: config_lib.load("unifacegan:paper", {**over, **kw})


def test_unifacegan_stream_equals_memory_records_and_resumes(tracked_videos):
    from jaxpapers.methods.unifacegan import inputs

    cfg = tracked_videos()
    assert cfg.data.pipeline == "stream"
    src = inputs.make_source(cfg, "train")
    memory = inputs.make_source(tracked_videos(**{"data.pipeline": "memory"}), "train")
    assert isinstance(src, stream.JoinedSource) and len(src) == len(memory["image"]) == 24
    full = _check_stream_equals_memory(src, memory, 4, seed=cfg.seed, mid=4, steps=8)
    b = full[0]
    # Frame t+1 of a video frame is the next kept frame of the same clip.
    t, t1 = b["image"][:, 0, 0, 0].astype(int), b["image_next"][:, 0, 0, 0].astype(int)
    assert np.all((t1 == t) | (t1 > t)) and np.all(t1 // 20 == t // 20)
    # What grain's worker processes receive: a pickled copy reading the same caches.
    copy = pickle.loads(pickle.dumps(src))
    _assert_batches_equal([stream._read(copy, np.arange(24))], [memory])


def test_unifacegan_bad_video_gives_one_line(tmp_path, monkeypatch):
    from jaxpapers.data import face_video
    from jaxpapers.methods.unifacegan import inputs

    monkeypatch.setattr(face_video, "FaceMeshTracker", lambda: None)  # decoding fails first

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video")
    cfg = config_lib.load(
        "unifacegan:paper",
        {"data.videos": str(bad), "data.stills": "False", "data.size": "16",
         "data.cache_dir": str(tmp_path / "cache")},
    )  # fmt: skip
    with pytest.raises(ValueError) as e:
        inputs.make_source(cfg, "train")
    assert "\n" not in str(e.value) and "broken.mp4" in str(e.value)


# ------------------------------------------------------------------------------ trace_vidsgg
OBJECTS = ["person", "cup", "table"]
PREDICATES = ["looking_at", "holding", "on"]


def _frame(uid: int, w=12, h=8) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1] = uid, 100
    return img


def _action_genome(root, videos=3, frames=6, bad=None):
    """AG layout: frames/<video>.mp4/<frame>.png + annotations/ (pickles, class lists); key
    frames = odd frames; obj_feat/train.npy rows in sorted key order."""
    persons, objects = {}, {}
    for v in range(videos):
        os.makedirs(root / "frames" / f"v{v}.mp4")
        for t in range(frames):
            Image.fromarray(_frame(40 * v + t)).save(root / "frames" / f"v{v}.mp4" / f"{t:06d}.png")
            if t % 2:
                key = f"v{v}.mp4/{t:06d}.png"
                persons[key] = {"bbox": np.array([[1.0, 1.0, 5.0, 7.0]], np.float32)}
                objects[key] = [
                    {"class": "cup", "bbox": (6.0, 2.0, 2.0 + t % 3, 3.0), "visible": True,
                     "metadata": {"set": "train"}, "attention_relationship": ["looking_at"],
                     "spatial_relationship": None, "contacting_relationship": ["holding"]},
                    {"class": "table", "bbox": (0.0, 5.0, 11.0, 3.0), "visible": v != 1,
                     "metadata": {"set": "train"}, "attention_relationship": [],
                     "spatial_relationship": ["on"], "contacting_relationship": []},
                ]  # fmt: skip
    os.makedirs(root / "annotations")
    (root / "annotations" / "person_bbox.pkl").write_bytes(pickle.dumps(persons))
    (root / "annotations" / "object_bbox_and_relationship.pkl").write_bytes(pickle.dumps(objects))
    (root / "annotations" / "object_classes.txt").write_text("\n".join(OBJECTS))
    (root / "annotations" / "relationship_classes.txt").write_text("\n".join(PREDICATES))
    keys = sorted(persons)
    os.makedirs(root / "obj_feat")
    feat = np.arange(len(keys) * 4 * 2, dtype=np.float32).reshape(len(keys), 4, 2)
    np.save(root / "obj_feat" / "train.npy", feat)
    if bad:
        (root / "frames" / bad).write_bytes(b"\x89PNG broken")
    return root, keys


def _trace(root, **kw):
    over = {
        "data.path": str(root), "model.n_max": "4", "data.n_max": "4", "model.clip_len": "3",
        "data.clip_len": "3", "data.stride": "2", "model.feat_dim": "2",
        "model.num_obj_classes": "3", "model.num_predicates": "3",
        "data.frame_shape": "(16,20)", "batch_size": "4", **kw,
    }  # fmt: skip
    return config_lib.load("trace_vidsgg:action_genome", over)


def test_trace_action_genome_stream_equals_memory_and_resumes(tmp_path):
    from jaxpapers.methods.trace_vidsgg import inputs

    root, keys = _action_genome(tmp_path / "ag")
    cfg = _trace(root)
    assert cfg.data.pipeline == "stream" and cfg.data.name == "action_genome"
    src = inputs.make_source(cfg, "train")
    memory = inputs.make_source(_trace(root, **{"data.pipeline": "memory"}), "train")
    assert isinstance(src, stream.ClipBoxSource) and len(src) == len(keys) == 9
    spec = inputs.input_spec(cfg)
    assert set(memory) == set(spec)
    for k, s in spec.items():
        assert memory[k].shape[1:] == s.shape[1:] and memory[k].dtype == s.dtype, k
    _check_stream_equals_memory(src, memory, 4, seed=2, mid=3)
    # Key frame i (sorted key order): its clip = frames t-2, t, t+2 of its video, clamped;
    # 12x8 frames scaled by min(16/8, 20/12) = 5/3 onto the 16x20 canvas (20x13, zero below).
    assert memory["frames"].shape[1:] == (3, 16, 20, 3)
    for i, key in enumerate(keys):
        v, t = int(key[1]), int(key[-10:-4])
        want = [40 * v + min(max(t + o, 0), 5) for o in (-2, 0, 2)]
        assert memory["frames"][i, :, 0, 0, 0].tolist() == want
        assert np.all(memory["frames"][i, :, 13:] == 0) and np.all(
            memory["frames"][i, :, :13, :, 1] == 100
        )
        cup_w = 2.0 + t % 3
        np.testing.assert_allclose(
            memory["boxes"][i, 1],
            np.array([6, 2, 6 + cup_w, 5]) * [20 / 12, 13 / 8, 20 / 12, 13 / 8],
            rtol=1e-6,
        )
    np.testing.assert_array_equal(memory["obj_feat"], np.load(root / "obj_feat" / "train.npy"))
    # v1's table is not visible: 2 boxes, else 3 (person, cup, table); rels person->cup x2,
    # person->table 'on'.
    assert memory["num_boxes"].tolist() == [3, 3, 3, 2, 2, 2, 3, 3, 3]
    assert memory["rels"][0, 0, 1].tolist() == [1, 1, 0] and memory["rels"][0, 0, 2].tolist() == [
        0,
        0,
        1,
    ]
    # The annotations are readable without decoding (TRACE's frequency bias in steps.prepare).
    for k in ("labels", "num_boxes", "rels"):
        np.testing.assert_array_equal(src[k], memory[k])
    # data.<split>_limit keeps the first key frames (bounds what evaluate reads into memory).
    limited = inputs.make_source(
        _trace(root, **{"data.pipeline": "memory", "data.train_limit": "5"}), "train"
    )
    _assert_batches_equal([limited], [{k: v[:5] for k, v in memory.items()}])
    # A copy sent to a worker process reopens the memory map (not pickled with the source).
    copy = pickle.loads(pickle.dumps(src))
    assert not copy._maps and src._maps
    _assert_batches_equal([stream._read(copy, np.arange(9))], [memory])


def test_trace_action_genome_bad_frame_and_paths(tmp_path):
    from jaxpapers.methods.trace_vidsgg import inputs

    root, _ = _action_genome(tmp_path / "ag", bad="v2.mp4/000003.png")
    src = inputs.make_source(_trace(root), "train")
    _assert_one_line_error(src, 4, 2, "000003.png")  # in every clip of v2; 8 of 9 read
    # A key frame outside frames/ is refused before anything is read.
    objects = pickle.loads((root / "annotations" / "object_bbox_and_relationship.pkl").read_bytes())
    persons = pickle.loads((root / "annotations" / "person_bbox.pkl").read_bytes())
    objects["../escape.mp4/000001.png"] = objects["v0.mp4/000001.png"]
    persons["../escape.mp4/000001.png"] = persons["v0.mp4/000001.png"]
    (root / "annotations" / "object_bbox_and_relationship.pkl").write_bytes(pickle.dumps(objects))
    (root / "annotations" / "person_bbox.pkl").write_bytes(pickle.dumps(persons))
    with pytest.raises(ValueError, match="escapes"):
        inputs.make_source(_trace(root), "train")


def test_trace_oversized_frame_refused_before_decoding(tmp_path):
    from jaxpapers.methods.trace_vidsgg import inputs

    root, _ = _action_genome(tmp_path / "ag")
    src = inputs.make_source(_trace(root, **{"data.max_pixels": "50"}), "train")  # 12x8 = 96
    _assert_one_line_error(src, 4, 1, "declares 12x8 pixels")


def test_paper_presets_parse_with_the_stream():
    for spec in ("synface:casia_webface", "unifacegan:paper", "trace_vidsgg:action_genome"):
        cfg = config_lib.load(spec)
        assert cfg.data.pipeline == "stream" and cfg.data.workers == stream.PAPER_WORKERS, spec
        json.dumps(cfg.data.to_dict())
    for spec in ("synface", "unifacegan", "trace_vidsgg"):
        assert config_lib.load(spec).data.pipeline == "memory"
