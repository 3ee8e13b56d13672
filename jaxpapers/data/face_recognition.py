"""Face-recognition data: CASIA-WebFace / MS1M training sets and the LFW pairs split.

Training sets are random-access sources (``__len__``, ``__getitems__`` -> records with 'image'
uint8 (H, W, C) and 'label' int32), the interface `jaxpapers.data.Loader` reads; images are decoded
and resized when a batch is read, so nothing is prepared up front (CASIA-WebFace has ~0.5M
images, MS1M 5.8M):
  * ``FaceFolderSource``: root/<identity>/<image> (CASIA-WebFace and MS1M dumps as folders,
    aligned 112x96 or 112x112 crops supplied by the user); identities = sorted folder names.
  * ``RecordIOSource``: insightface's ``train.rec`` + ``train.idx`` (MXNet indexed RecordIO, read
    without mxnet).  Record framing as dmlc-core ``RecordIOReader::NextRecord`` (magic 0xced7230a,
    lrec = cflag << 29 | length, 4-byte padding, multi-part records re-joined by the magic);
    payload as ``mxnet.recordio.unpack`` (IRHeader 'IfQQ' then ``flag`` float32 labels when
    flag > 0); image list as insightface ``MXFaceDataset`` (record 0 with flag > 0 holds
    (first non-image key, end of identity records): images are keys 1 .. label[0] − 1; otherwise
    every key is an image); label = header.label, or label[0] when it is a vector.

LFW: root/<Name>/<Name>_<nnnn>.<ext> and the standard ``pairs.txt``: header "<sets>\\t<n>" then,
per set, n matched lines "name i j" followed by n mismatched lines "name1 i name2 j".
``load_lfw_pairs`` validates all of that and returns unique images plus (index_a, index_b, same,
fold) rows in file order, which is what `jaxpapers.evals.face_verification` consumes (its
contiguous 10 folds are exactly LFW's sets).  Parsing the lines reuses ``read_pairs``.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import weakref

import numpy as np

from jaxpapers import safe_io
from jaxpapers.data import builders, decode, lfw_pairs

TRAIN_NAMES = ("casia_webface", "ms1m")  # data.name values handled here
RECORDIO_MAGIC = 0xCED7230A
_IR_HEADER = struct.Struct("<IfQQ")  # mxnet.recordio IRHeader: flag, label, id, id2


class FaceFolderSource:
    """root/<identity>/<image> as a random-access source; decodes and resizes on read."""

    def __init__(self, root: str, image_size: tuple[int, int], channels: int = 3):
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"Face training folder {root!r} not found (expected root/<identity>/<image>, "
                "e.g. CASIA-WebFace aligned to 112x96); set --config.data.path."
            )
        self.classes, files = builders.list_image_folder(root)
        self.paths = [p for p, _ in files]
        self.labels = np.asarray([lab for _, lab in files], np.int32)
        self.image_size, self.channels = tuple(int(s) for s in image_size), int(channels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitems__(self, indices) -> list[dict]:
        return [
            {
                "image": builders.read_image(self.paths[i], self.image_size, self.channels),
                "label": self.labels[i],
            }
            for i in indices
        ]


def _read_record(fd: int, offset: int, path: str) -> bytes:
    """One (possibly multi-part) RecordIO record starting at byte ``offset``."""
    out, pos = [], offset
    while True:
        head = os.pread(fd, 8, pos)
        if len(head) != 8:
            raise ValueError(f"{path}: truncated RecordIO record at byte {pos}.")
        magic, lrec = struct.unpack("<II", head)
        if magic != RECORDIO_MAGIC:
            raise ValueError(
                f"{path}: no RecordIO magic at byte {pos} (found {magic:#010x}); the .idx file "
                "does not belong to this .rec file, or the file is corrupt."
            )
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        data = os.pread(fd, length, pos + 8)
        if len(data) != length:
            raise ValueError(f"{path}: truncated RecordIO record at byte {pos}.")
        out.append(data)
        pos += 8 + ((length + 3) >> 2 << 2)
        if cflag in (0, 3):
            break
        # The writer split the payload at an aligned occurrence of the magic: put it back.
        out.append(struct.pack("<I", RECORDIO_MAGIC))
    return b"".join(out)


def unpack_record(record: bytes, where: str = "RecordIO record") -> tuple[int, np.ndarray, bytes]:
    """(flag, label vector float32, payload) as ``mxnet.recordio.unpack``."""
    if len(record) < _IR_HEADER.size:
        raise ValueError(f"{where}: payload of {len(record)} bytes is shorter than its header.")
    flag, label, _, _ = _IR_HEADER.unpack_from(record)
    body = record[_IR_HEADER.size :]
    if flag > 0:
        if len(body) < 4 * flag:
            raise ValueError(
                f"{where}: header announces {flag} float labels ({4 * flag} bytes), the record "
                f"has {len(body)} bytes after its header."
            )
        labels = np.frombuffer(body[: 4 * flag], np.float32).copy()
        return flag, labels, body[4 * flag :]
    return 0, np.asarray([label], np.float32), body


def _key_count(value: float, where: str, what: str, limit: int) -> int:
    """A record-0 label used as a key bound: a finite whole number in [1, limit]."""
    if not np.isfinite(value) or value != int(value) or not 1 <= value <= limit:
        raise ValueError(
            f"{where}: header record 0 gives {what} = {value!r}; with this .idx it must be a "
            f"whole number in [1, {limit}]. The file is corrupt or not an insightface RecordIO set."
        )
    return int(value)


class RecordIOSource:
    """insightface ``train.rec``/``train.idx`` (e.g. MS1M-ArcFace) as a random-access source."""

    def __init__(
        self,
        root: str,
        image_size: tuple[int, int],
        channels: int = 3,
        max_pixels: int = decode.MAX_PIXELS,
    ):
        self.rec_path = os.path.join(root, "train.rec")
        self.max_pixels = int(max_pixels)
        idx_path = os.path.join(root, "train.idx")
        for p in (self.rec_path, idx_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(
                    f"{p!r} not found: an insightface RecordIO data set is a folder with "
                    "train.rec and train.idx (set --config.data.path to it)."
                )
        self.offsets: dict[int, int] = {}
        with open(idx_path) as f:
            for n, line in enumerate(f, 1):
                toks = line.split()
                if not toks:
                    continue
                if len(toks) != 2 or not all(t.isdigit() for t in toks):
                    raise ValueError(f"{idx_path}:{n}: expected 'key<TAB>offset', got {line!r}.")
                self.offsets[int(toks[0])] = int(toks[1])
        if not self.offsets:
            raise ValueError(f"{idx_path} is empty.")
        self.image_size, self.channels = tuple(int(s) for s in image_size), int(channels)
        self._open()
        self._identities: int | None = None
        head = None
        if 0 in self.offsets:
            flag, head, _ = unpack_record(self._read(0), f"{self.rec_path} key 0")
        if head is not None and flag > 0:
            # insightface: record 0 = (first non-image key, end key); identity records between.
            # Both are checked against the .idx before anything is allocated from them.
            if len(head) < 2:
                raise ValueError(
                    f"{self.rec_path}: header record 0 has {len(head)} label(s), not 2."
                )
            # Image keys 1 .. first-1 must all be in the .idx, so first <= #keys + 1.
            n_keys = len(self.offsets)
            first = _key_count(float(head[0]), self.rec_path, "the first non-image key", n_keys + 1)
            end = _key_count(float(head[1]), self.rec_path, "the end key", max(self.offsets) + 1)
            if end < first:
                raise ValueError(
                    f"{self.rec_path}: header record 0 gives identity keys [{first}, {end})."
                )
            self.keys = np.arange(1, first, dtype=np.int64)
            self._identities = end - first
        else:
            self.keys = np.asarray(sorted(self.offsets), np.int64)
        missing = np.setdiff1d(self.keys, np.fromiter(self.offsets, np.int64, len(self.offsets)))
        if len(missing):
            raise ValueError(
                f"{idx_path} lacks {len(missing)} image keys named by record 0, e.g. "
                f"{missing[:5].tolist()}."
            )
        prop = os.path.join(root, "property")  # insightface: "num_classes,h,w"
        if os.path.isfile(prop):
            with open(prop) as f:
                first_field = f.read(4096).split(",")[0].strip()
            if not first_field.isdigit() or int(first_field) < 1:
                raise ValueError(f"{prop}: expected 'num_classes,h,w', got {first_field!r}.")
            self._identities = int(first_field)

    def close(self) -> None:
        self._closer()

    def _open(self) -> None:
        self._fd = os.open(self.rec_path, os.O_RDONLY)
        # Closes the descriptor when the source is collected or at interpreter exit (a __del__
        # could run after `os` is torn down and print an AttributeError).
        self._closer = weakref.finalize(self, os.close, self._fd)

    def __getstate__(self) -> dict:
        # A copy sent to a grain worker process opens its own descriptor (the number is
        # meaningless in another process).
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_closer")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def _read(self, key: int) -> bytes:
        return _read_record(self._fd, self.offsets[int(key)], self.rec_path)

    def _unpack(self, key: int) -> tuple[int, np.ndarray, bytes]:
        return unpack_record(self._read(key), f"{self.rec_path} key {key}")

    @property
    def num_classes(self) -> int:
        """Identities (record 0 / `property` file; else 1 + max label over all records)."""
        if self._identities is None:
            labels = [self._unpack(k)[1][0] for k in self.keys]
            if not np.all(np.isfinite(labels)) or min(labels) < 0:
                raise ValueError(f"{self.rec_path}: labels must be finite and >= 0.")
            self._identities = int(max(labels)) + 1
        return self._identities

    def labels(self) -> np.ndarray:
        """The class id of every image record, read from the record headers (no image decoded;
        one small read per record, for selecting identities of a large set)."""
        out = np.empty(len(self.keys), np.int64)
        need = 8 + _IR_HEADER.size + 4  # framing, IRHeader, the first float label when flag > 0
        for n, key in enumerate(self.keys):
            head = os.pread(self._fd, need, self.offsets[int(key)])
            ok = len(head) >= 8 + _IR_HEADER.size
            if ok:
                magic, lrec = struct.unpack_from("<II", head)
                length = lrec & ((1 << 29) - 1)
                ok = magic == RECORDIO_MAGIC and length >= _IR_HEADER.size
            if ok:
                flag, label, _, _ = _IR_HEADER.unpack_from(head, 8)
                if flag > 0:
                    ok = length >= _IR_HEADER.size + 4 and len(head) == need
                    if ok:
                        label = struct.unpack_from("<f", head, 8 + _IR_HEADER.size)[0]
            if not ok:  # a multi-part or damaged record: the full reader (it names the fault)
                label = float(self._unpack(key)[1][0])
            if not np.isfinite(label) or label < 0 or label != int(label):
                raise ValueError(f"{self.rec_path} key {key}: label {label} is not a class id.")
            out[n] = int(label)
        return out

    def __len__(self) -> int:
        return len(self.keys)

    def __getitems__(self, indices) -> list[dict]:
        out = []
        for i in indices:
            key = int(self.keys[i])
            _, label, payload = self._unpack(key)
            if not np.isfinite(label[0]) or label[0] < 0:
                raise ValueError(f"{self.rec_path} key {key}: label {label[0]} is not a class id.")
            arr = decode.decode_image(
                payload,
                self.image_size,
                self.channels,
                where=f"{self.rec_path} key {key}",
                max_pixels=self.max_pixels,
            )
            out.append({"image": arr, "label": np.int32(label[0])})
        return out


def train_root_and_format(data_cfg) -> tuple[str, str]:
    """``(data.path, 'folder' | 'rec' | other)``: the training face set's folder (checked to
    exist, one line if not) and its format, ``'auto'`` resolved by the presence of train.rec."""
    root, fmt = data_cfg.path, data_cfg.get("format", "auto")
    if not root or not os.path.isdir(root):
        raise FileNotFoundError(
            f"{data_cfg.name} folder {root!r} not found; set --config.data.path to the aligned "
            "face folder (root/<identity>/<image>) or to the insightface folder with train.rec."
        )
    if fmt == "auto":
        fmt = "rec" if os.path.isfile(os.path.join(root, "train.rec")) else "folder"
    return root, fmt


def open_train_source(data_cfg, num_classes: int = 0):
    """The training source for ``data.name`` in TRAIN_NAMES.

    ``data.format``: 'folder' (root/<identity>/<image>), 'rec' (train.rec/.idx) or 'auto' (rec
    when data.path holds train.rec).  A ``num_classes`` > 0 must equal the source's identities.
    """
    if data_cfg.name not in TRAIN_NAMES:
        raise ValueError(f"data.name must be one of {TRAIN_NAMES}, got {data_cfg.name!r}.")
    root, fmt = train_root_and_format(data_cfg)
    size, channels = tuple(data_cfg.image_size), int(data_cfg.get("channels", 3))
    if fmt == "folder":
        src = FaceFolderSource(root, size, channels)
    elif fmt == "rec":
        src = RecordIOSource(
            root, size, channels, int(data_cfg.get("max_pixels", decode.MAX_PIXELS))
        )
    else:
        raise ValueError(f"data.format must be 'auto', 'folder' or 'rec', got {fmt!r}.")
    if num_classes and src.num_classes != num_classes:
        raise ValueError(
            f"{root!r} holds {src.num_classes} identities but model.num_classes={num_classes}; "
            "set --config.model.num_classes to match."
        )
    return src


@dataclasses.dataclass
class LfwPairs:
    """The LFW pairs split: unique images and one row per pair in pairs-file order."""

    images: np.ndarray  # (M, H, W, C) uint8
    paths: list[str]  # relative to the LFW root, aligned with images
    pairs: np.ndarray  # (P, 3) int64: index_a, index_b, same
    fold: np.ndarray  # (P,) int32: the LFW set (0 .. sets − 1) of each pair


def read_lfw_pairs(pairs_file: str, ext: str = "jpg") -> tuple[list, np.ndarray]:
    """Parses and validates a standard LFW pairs.txt: ([(rel_a, rel_b, same)], fold per pair)."""
    if not os.path.isfile(pairs_file):
        raise FileNotFoundError(
            f"LFW pairs file {pairs_file!r} not found; set --config.eval.pairs_file to the "
            "standard pairs.txt."
        )
    with open(pairs_file) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    head = lines[0] if lines else []
    if len(head) != 2 or not all(t.isdigit() for t in head) or int(head[0]) * int(head[1]) == 0:
        raise ValueError(
            f"{pairs_file}: the first line must be the header '<sets>\\t<pairs per class>' "
            f"(LFW: '10\\t300'), got {' '.join(head)!r}."
        )
    sets, n = int(head[0]), int(head[1])
    if len(lines) - 1 != 2 * sets * n:
        raise ValueError(
            f"{pairs_file}: header '{sets} {n}' announces {sets} sets of {n} matched + {n} "
            f"mismatched pairs = {2 * sets * n} lines, the file has {len(lines) - 1}."
        )
    pairs = lfw_pairs.read_pairs(pairs_file, ext)
    for k, (_, _, same) in enumerate(pairs):
        want = (k % (2 * n)) < n  # each set: n matched lines, then n mismatched lines
        if same != want:
            raise ValueError(
                f"{pairs_file}: pair {k + 1} (set {k // (2 * n) + 1}) is "
                f"{'matched' if same else 'mismatched'} but LFW sets list {n} matched then "
                f"{n} mismatched pairs: {' '.join(lines[k + 1])!r}."
            )
    fold = (np.arange(len(pairs)) // (2 * n)).astype(np.int32)
    return pairs, fold


def check_lfw_pairs(lfw_dir: str, pairs_file: str, ext: str = "jpg") -> tuple[list, np.ndarray]:
    """Validates the folder, the pairs file and that every image it names exists (no decoding)."""
    if not lfw_dir or not os.path.isdir(lfw_dir):
        raise FileNotFoundError(
            f"LFW folder {lfw_dir!r} not found (expected <root>/<Name>/<Name>_<nnnn>.{ext}); "
            "set --config.eval.lfw_dir."
        )
    pairs, fold = read_lfw_pairs(pairs_file, ext)
    for k, (a, b, _) in enumerate(pairs):
        for p in (a, b):
            if not os.path.isfile(safe_io.confined_join(lfw_dir, p, what=f"{pairs_file}: image")):
                raise FileNotFoundError(
                    f"{pairs_file}: pair {k + 1} names {p!r}, which is missing under "
                    f"{lfw_dir!r}; check eval.lfw_dir and eval.pairs_ext={ext!r}."
                )
    return pairs, fold


def load_lfw_pairs(
    lfw_dir: str,
    pairs_file: str,
    image_size: tuple[int, int],
    channels: int = 3,
    ext: str = "jpg",
) -> LfwPairs:
    """Reads the images a pairs.txt names under ``lfw_dir`` (each once, resized)."""
    pairs, fold = check_lfw_pairs(lfw_dir, pairs_file, ext)
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    index = {p: i for i, p in enumerate(paths)}
    images = np.stack(
        [
            builders.read_image(safe_io.confined_join(lfw_dir, p), tuple(image_size), channels)
            for p in paths
        ]
    )
    rows = np.asarray([(index[a], index[b], int(s)) for a, b, s in pairs], np.int64)
    return LfwPairs(images=images, paths=paths, pairs=rows, fold=fold)
