"""Face-recognition data: identity folders, insightface RecordIO, the LFW pairs split, wiring."""

import io
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from jaxpapers import config_lib
from jaxpapers.data import face_recognition as fr
from jaxpapers.data import read_source
from jaxpapers.evals import face_verification as fv
from jaxpapers.methods.from_occlusion import faces, inputs

MAGIC = struct.pack("<I", fr.RECORDIO_MAGIC)


def _img(value: int, size=(12, 10)) -> Image.Image:
    """A constant-colour RGB image (exact after any resize), colour encodes `value`."""
    return Image.fromarray(np.full((*size, 3), (value, 255 - value, 7), np.uint8))


def _write_folder(root, ids=("id_a", "id_b", "id_c"), per_id=2, ext="png"):
    for k, name in enumerate(ids):
        os.makedirs(root / name)
        for j in range(per_id):
            _img(40 * k + j).save(root / name / f"{j:03d}.{ext}")
    return root


# --- RecordIO writer as dmlc-core RecordIOWriter::WriteRecord (magic split at aligned offsets) ---
def _write_record(f, payload: bytes) -> int:
    pos = f.tell()
    n = len(payload)
    dptr = 0
    for i in range(0, n // 4 * 4, 4):
        if payload[i : i + 4] == MAGIC:
            f.write(MAGIC + struct.pack("<I", (1 if dptr == 0 else 2) << 29 | (i - dptr)))
            f.write(payload[dptr:i])
            dptr = i + 4
    f.write(MAGIC + struct.pack("<I", (3 if dptr else 0) << 29 | (n - dptr)))
    f.write(payload[dptr:])
    f.write(b"\0" * (((n + 3) >> 2 << 2) - n))
    return pos


def _pack(label, body: bytes) -> bytes:
    """mxnet.recordio.pack: IRHeader(flag, label, id, id2) then the label vector when flag > 0."""
    if np.ndim(label):
        lab = np.asarray(label, np.float32)
        return struct.pack("<IfQQ", len(lab), 0.0, 0, 0) + lab.tobytes() + body
    return struct.pack("<IfQQ", 0, float(label), 0, 0) + body


def _write_rec(root, labels, with_header=True):
    """insightface layout: record 0 = (first identity key, end key), images, identity records."""
    os.makedirs(root, exist_ok=True)
    offsets = {}
    n_img, n_ids = len(labels), max(labels) + 1
    with open(root / "train.rec", "wb") as f:
        if with_header:
            offsets[0] = _write_record(f, _pack([n_img + 1, n_img + 1 + n_ids], b""))
        for k, lab in enumerate(labels):
            buf = io.BytesIO()
            _img(10 * k + 1).save(buf, format="PNG")
            offsets[k + 1 if with_header else k] = _write_record(f, _pack(lab, buf.getvalue()))
        if with_header:
            for c in range(n_ids):
                offsets[n_img + 1 + c] = _write_record(f, _pack([0.0, 0.0], b""))
    with open(root / "train.idx", "w") as f:
        f.writelines(f"{k}\t{v}\n" for k, v in offsets.items())
    return root


def test_face_folder_source_reads_lazily_with_sorted_identities(tmp_path):
    root = _write_folder(tmp_path / "casia")
    src = fr.FaceFolderSource(str(root), (16, 8))
    assert len(src) == 6 and src.num_classes == 3 and src.classes == ["id_a", "id_b", "id_c"]
    batch = read_source(src, np.array([5, 0]))
    assert batch["image"].shape == (2, 16, 8, 3) and batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(batch["label"], [2, 0])
    np.testing.assert_array_equal(batch["image"][0, 0, 0], (81, 174, 7))  # id_c, image 001


@pytest.mark.parametrize("with_header", [True, False])
def test_recordio_source_matches_what_was_packed(tmp_path, with_header):
    labels = [0, 0, 1, 2, 2]
    root = _write_rec(tmp_path / "ms1m", labels, with_header)
    src = fr.RecordIOSource(str(root), (12, 10))
    assert len(src) == 5 and src.num_classes == 3
    batch = read_source(src, np.arange(5))
    np.testing.assert_array_equal(batch["label"], labels)
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], [1, 11, 21, 31, 41])


def test_recordio_source_pickles_for_worker_processes(tmp_path):
    """A copy (what a grain worker receives) opens its own descriptor and reads the same."""
    src = fr.RecordIOSource(str(_write_rec(tmp_path / "ms1m", [0, 1, 1])), (12, 10))
    copy = pickle.loads(pickle.dumps(src))
    assert copy._fd != src._fd
    src.close()  # the copy does not depend on the original's descriptor
    np.testing.assert_array_equal(read_source(copy, np.arange(3))["image"][:, 0, 0, 0], [1, 11, 21])


def test_recordio_multipart_record_rejoins_the_magic(tmp_path):
    """A payload with the magic at 4-byte-aligned offsets is written in parts (cflag 1/2/3)."""
    payload = b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij"
    path = tmp_path / "x.rec"
    with open(path, "wb") as f:
        _write_record(f, b"pad!")
        off = _write_record(f, payload)
    raw = path.read_bytes()
    assert raw.count(MAGIC) == 4 and (struct.unpack_from("<I", raw, off + 4)[0] >> 29) == 1
    fd = os.open(path, os.O_RDONLY)
    try:
        assert fr._read_record(fd, off, str(path)) == payload
        with pytest.raises(ValueError, match="no RecordIO magic"):
            fr._read_record(fd, off + 4, str(path))
    finally:
        os.close(fd)


def _write_lfw(root, sets=2, n=2, drop=None):
    """LFW layout (Name/Name_0001.jpg) and a pairs.txt of `sets` sets of n + n pairs."""
    names = ["Ann_A", "Bob_B", "Cy_C"]
    for k, name in enumerate(names):
        os.makedirs(root / name, exist_ok=True)
        for j in (1, 2, 3):
            if (name, j) != drop:
                _img(60 * k + 10 * j).save(root / name / f"{name}_{j:04d}.jpg", quality=100)
    lines = [f"{sets}\t{n}"]
    for s in range(sets):
        lines += [f"{names[(s + i) % 3]}\t1\t{2 + i % 2}" for i in range(n)]
        lines += [
            f"{names[(s + i) % 3]}\t{1 + i % 3}\t{names[(s + i + 1) % 3]}\t3" for i in range(n)
        ]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root, lines


def test_lfw_pairs_split_rows_folds_and_evaluator(tmp_path):
    root, lines = _write_lfw(tmp_path / "lfw")
    lfw = fr.load_lfw_pairs(str(root), str(root / "pairs.txt"), (8, 6))
    assert lfw.images.shape == (len(lfw.paths), 8, 6, 3) and len(lfw.paths) == 9
    np.testing.assert_array_equal(lfw.pairs[:, 2], [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(lfw.fold, [0, 0, 0, 0, 1, 1, 1, 1])
    a = lfw.paths[lfw.pairs[2, 0]]
    b = lfw.paths[lfw.pairs[2, 1]]
    assert (a, b) == ("Ann_A/Ann_A_0001.jpg", "Bob_B/Bob_B_0003.jpg")  # line 4: "Ann_A 1 Bob_B 3"
    # The evaluator's contiguous folds are exactly the LFW sets.
    for f, (_, test) in enumerate(fv.kfold_indices(len(lfw.pairs), 2)):
        np.testing.assert_array_equal(np.flatnonzero(lfw.fold == f), test)
    # Scores that separate same/different perfectly give 100 % verification accuracy.
    scores = np.where(lfw.pairs[:, 2] == 1, 0.9, 0.1)
    assert fv.verification_accuracy(scores, lfw.pairs[:, 2], n_folds=2)["mean"] == 1.0


def test_lfw_pairs_errors(tmp_path):
    root, lines = _write_lfw(tmp_path / "lfw")
    pairs = str(root / "pairs.txt")
    with pytest.raises(FileNotFoundError, match="LFW folder"):
        fr.load_lfw_pairs(str(tmp_path / "nope"), pairs, (8, 6))
    with pytest.raises(FileNotFoundError, match="pairs file"):
        fr.load_lfw_pairs(str(root), str(root / "missing.txt"), (8, 6))
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines[1:]) + "\n")  # no header
    with pytest.raises(ValueError, match="header"):
        fr.read_lfw_pairs(str(bad))
    bad.write_text("\n".join(["10\t300", *lines[1:]]) + "\n")  # header does not match the lines
    with pytest.raises(ValueError, match="6000 lines, the file has 8"):
        fr.read_lfw_pairs(str(bad))
    swapped = [lines[0], lines[3], *lines[2:3], lines[1], *lines[4:]]  # mismatched line first
    bad.write_text("\n".join(swapped) + "\n")
    with pytest.raises(ValueError, match="pair 1 .set 1. is mismatched"):
        fr.read_lfw_pairs(str(bad))
    root2, _ = _write_lfw(tmp_path / "lfw2", drop=("Bob_B", 3))
    with pytest.raises(FileNotFoundError, match="pair 2 names 'Bob_B/Bob_B_0003.jpg'"):
        fr.load_lfw_pairs(str(root2), str(root2 / "pairs.txt"), (8, 6))


def _casia(tmp_path, extra=""):
    root = _write_folder(tmp_path / "casia")
    lfw, _ = _write_lfw(tmp_path / "lfw")
    arg = (
        f"casia_webface,data.path={root},model.num_classes=3,eval.lfw_dir={lfw},"
        f"eval.pairs_file={lfw / 'pairs.txt'}{extra}"
    )
    return config_lib.load_config_file("configs/from_occlusion.py", arg)


def test_from_occlusion_casia_preset_reads_folder_and_lfw_pairs(tmp_path):
    c = _casia(tmp_path)
    assert c.data.name == "casia_webface" and c.eval.pairs_file.endswith("pairs.txt")
    src = inputs.make_source(c, "train")
    assert isinstance(src, fr.FaceFolderSource) and len(src) == 6
    assert read_source(src, np.array([0]))["image"].shape == (1, 112, 96, 3)
    images, labels, pairs = faces.eval_pairs(c)
    assert images.shape == (9, 112, 96, 3) and pairs.shape == (8, 3) and np.all(labels == -1)
    # A RecordIO folder is picked up by format 'auto' under the ms1m name.
    rec = _write_rec(tmp_path / "emore", [0, 1, 2])
    c2 = _casia(tmp_path / "b", f",data.name=ms1m,data.path={rec}")
    assert isinstance(inputs.make_source(c2, "train"), fr.RecordIOSource)


def test_from_occlusion_casia_preset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="casia_webface folder"):
        inputs.make_source(_casia(tmp_path / "a", f",data.path={tmp_path / 'none'}"), "train")
    with pytest.raises(ValueError, match="holds 3 identities but model.num_classes=5"):
        inputs.make_source(_casia(tmp_path / "b", ",model.num_classes=5"), "train")
    with pytest.raises(FileNotFoundError, match="pairs file"):
        inputs.make_source(_casia(tmp_path / "c", ",eval.pairs_file=/nonexistent/pairs.txt"), "x")
    with pytest.raises(ValueError, match="data.format"):
        inputs.make_source(_casia(tmp_path / "d", ",data.format=lmdb"), "train")
    with pytest.raises(FileNotFoundError, match="train.rec"):
        inputs.make_source(_casia(tmp_path / "e", ",data.format=rec"), "train")
