"""Malformed insightface RecordIO sets, LFW pairs files that point outside the LFW folder, the
content-keyed image-folder cache, and a guard against unsafe deserialisation in the package."""

import ast
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from jaxpapers.data import builders
from jaxpapers.data import face_recognition as fr
from jaxpapers.evals import face_verification as fv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAGIC = struct.pack("<I", fr.RECORDIO_MAGIC)


def _record(payload: bytes) -> bytes:
    n = len(payload)
    return MAGIC + struct.pack("<I", n) + payload + b"\0" * (((n + 3) >> 2 << 2) - n)


def _write_rec(root, records: dict[int, bytes]):
    os.makedirs(root, exist_ok=True)
    offsets, blob = {}, b""
    for key, payload in records.items():
        offsets[key] = len(blob)
        blob += _record(payload)
    (root / "train.rec").write_bytes(blob)
    (root / "train.idx").write_text("".join(f"{k}\t{v}\n" for k, v in offsets.items()))
    return str(root)


def _header(*labels, flag=None):
    lab = np.asarray(labels, np.float32)
    return struct.pack("<IfQQ", len(lab) if flag is None else flag, 0.0, 0, 0) + lab.tobytes()


def _image_record(label=0.0):
    import io

    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    return struct.pack("<IfQQ", 0, label, 0, 0) + buf.getvalue()


@pytest.mark.parametrize(
    "head, match",
    [
        ((1e12, 1e12 + 5), "first non-image key = 99999999"),  # would allocate 8 TB of keys
        ((float("nan"), 3.0), "nan"),
        ((2.0, float("inf")), "end key = inf"),
        ((-5.0, 3.0), "-5"),
        ((2.5, 3.0), "2.5"),
        ((3.0, 2.0), r"identity keys \[3, 2\)"),
    ],
)
def test_recordio_lying_header_refused_before_allocating(tmp_path, head, match):
    root = _write_rec(tmp_path / "rec", {0: _header(*head), 1: _image_record(), 2: _image_record()})
    t0 = time.time()
    with pytest.raises(ValueError, match=match) as e:
        fr.RecordIOSource(root, (4, 4))
    assert "train.rec" in str(e.value)
    assert time.time() - t0 < 5


def test_recordio_flag_without_label_bytes_names_the_file(tmp_path):
    # Header claims 2 float labels (8 bytes) but carries none.
    root = _write_rec(tmp_path / "a", {0: _header(flag=2), 1: _image_record()})
    with pytest.raises(ValueError, match=r"train.rec key 0: header announces 2 float labels"):
        fr.RecordIOSource(root, (4, 4))
    # An image record with flag 3 and 4 bytes: refused when read, naming file and key.
    bad = struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\0\0\0\0"
    root = _write_rec(tmp_path / "b", {0: _image_record(), 1: bad})
    src = fr.RecordIOSource(root, (4, 4))
    with pytest.raises(ValueError, match=r"train.rec key 1: header announces 3"):
        src.__getitems__([1])
    src.close()
    # A NaN label of an image.
    root = _write_rec(tmp_path / "c", {0: _image_record(float("nan"))})
    with pytest.raises(ValueError, match=r"train.rec"):
        _ = fr.RecordIOSource(root, (4, 4)).num_classes


def test_recordio_source_closes_quietly_at_exit(tmp_path):
    root = _write_rec(tmp_path / "rec", {0: _image_record(), 1: _image_record(1.0)})
    code = (
        "from jaxpapers.data import face_recognition as fr\n"
        f"src = fr.RecordIOSource({root!r}, (4, 4))\n"
        "keep = [src, src.__getitems__([0, 1])]\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=120,
    )
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


@pytest.mark.parametrize(
    "line",
    [
        "../../etc\t1\t2",
        "/etc\t1\t2",
        "Ann_A\t1\t..\t2",
        "a/../../x\t1\t2",
        "Ann_A\t-1\t2",
    ],
)
def test_lfw_pairs_cannot_point_outside_the_root(tmp_path, line):
    lfw = tmp_path / "lfw"
    os.makedirs(lfw / "Ann_A")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"1\t1\n{line}\nAnn_A\t1\tAnn_A\t2\n")
    with pytest.raises(ValueError, match="pairs.txt"):
        fv.read_pairs(str(pairs))
    with pytest.raises(ValueError, match="pairs.txt"):
        fr.check_lfw_pairs(str(lfw), str(pairs))


def test_confined_join_refuses_escapes(tmp_path):
    from jaxpapers import safe_io

    root = str(tmp_path)
    assert safe_io.confined_join(root, "a/b.jpg") == os.path.join(root, "a/b.jpg")
    for rel in ("/etc/passwd", "../x", "a/../../x", "", "a\0b"):
        with pytest.raises(ValueError):
            safe_io.confined_join(root, rel)


def test_image_folder_cache_key_follows_contents(tmp_path):
    root = tmp_path / "imgs"
    os.makedirs(root / "cat")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "cat" / "a.png")
    key = lambda: builders.JaxpapersImageFolder.key(str(root), (8, 8), 3, 5)  # noqa: E731
    k0 = key()
    assert key() == k0
    Image.fromarray(np.full((4, 4, 3), 255, np.uint8)).save(root / "cat" / "a.png")
    os.utime(root / "cat" / "a.png", ns=(1, 1))  # replaced image, new mtime
    k1 = key()
    assert k1 != k0
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "cat" / "b.png")
    assert key() != k1  # added image
    # Same contents elsewhere: same key (the key is not the folder's path).
    other = tmp_path / "copy"
    os.makedirs(other / "cat")
    for name in ("a.png", "b.png"):
        src = root / "cat" / name
        (other / "cat" / name).write_bytes(src.read_bytes())
        st = os.stat(src)
        os.utime(other / "cat" / name, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert builders.JaxpapersImageFolder.key(str(other), (8, 8), 3, 5) == key()


# Deserialisers that can run code or allocate from a file's claims. Only the safe layer (and
# the restricted unpicklers built on it) may unpickle; nobody calls eval/exec on file contents.
_BANNED_CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cPickle", "load"),
    ("dill", "load"),
    ("joblib", "load"),
    ("torch", "load"),
}
_ALLOWED_FILES = {
    # The safe layer itself.
    os.path.join("jaxpapers", "safe_io.py"),
    # exec of functions compiled from the official TRACE source the user supplies (checked
    # parse tree, not a data file) to compare against it.
    os.path.join("jaxpapers", "tools", "trace_check_official_tree.py"),
}


# Restricted unpicklers written before the safe layer existed; they must move onto it.
_LEGACY_UNPICKLER_FILES: set[str] = set()


def _violations(path: str, rel: str) -> list[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in ("eval", "exec"):
                out.append(f"{rel}:{node.lineno}: {fn.id}(")
            if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
                if (fn.value.id, fn.attr) in _BANNED_CALLS:
                    out.append(f"{rel}:{node.lineno}: {fn.value.id}.{fn.attr}(")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    out.append(f"{rel}:{node.lineno}: allow_pickle=")
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "dill", "marshal"):
            names = {a.name for a in node.names}
            if names & {"load", "loads", "Unpickler"}:
                out.append(f"{rel}:{node.lineno}: from {node.module} import {sorted(names)}")
        if isinstance(node, ast.ClassDef) and rel not in _LEGACY_UNPICKLER_FILES:
            for base in node.bases:
                if (
                    isinstance(base, ast.Attribute)
                    and isinstance(base.value, ast.Name)
                    and (base.value.id, base.attr) == ("pickle", "Unpickler")
                ):
                    out.append(f"{rel}:{node.lineno}: subclass of pickle.Unpickler")
    return out


def test_no_unsafe_deserialisation_outside_the_safe_layer():
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "jaxpapers")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)
                if rel not in _ALLOWED_FILES:
                    found += _violations(path, rel)
    assert not found, "unsafe deserialisation (use jaxpapers.safe_io): " + "; ".join(found)


def test_the_guard_catches_each_pattern(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, numpy as np\n"
        "pickle.load(open('x', 'rb'))\n"
        "pickle.loads(b'')\n"
        "np.load('x', allow_pickle=True)\n"
        "eval('1')\n"
        "exec('1')\n"
        "class U(pickle.Unpickler):\n    pass\n"
    )
    assert len(_violations(str(bad), "bad.py")) == 6
