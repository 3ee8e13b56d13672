"""The streaming input pipeline: whole batches decoded and augmented in grain worker processes.

For data sets too large to hold in memory (ImageNet, FFHQ, CASIA-WebFace/MS1M, Market-1501's
JPEGs at full size), ``data.pipeline="stream"`` replaces the in-memory arrays by a random-access
source that decodes on read, and `HostStream` runs

    grain.MapDataset.range(start_step, ...).map(StepBatches(...)).mp_prefetch(workers)

One grain element is one step's batch of this process: worker ``w`` of ``W`` builds the batches
of steps ``start + w``, ``start + w + W``, ... and grain hands them back in step order. The batch
of a step is read by the same index function as the in-memory `Loader` (``order.py``, a pure
function of seed and step), so the stream yields exactly the batches `Loader` yields, for any
number of workers, and a run resumed at step ``s`` (a new stream started at ``s``) continues
exactly where an uninterrupted one would be. The optional augmentation ('flip') draws from
``(seed, step)`` and the example's position in the global batch, so it too is independent of the
worker and process counts.

Sources (picklable: each worker process receives a copy and opens files itself):

* `FileImageSource`: image files under a root, listed by `list_images` with ``layout``
  'classes' (root/<class>/<image>, labels = sorted class folder names, as the image-folder
  builder) or 'flat' (every image below root, recursively, no labels: FFHQ's folders, face sets);
  split like the builder (every ``test_every``-th image of a class is 'test'). Paths are stored
  relative to the root and joined with ``safe_io.confined_join``.
* `ShapedSource`: any other random-access source (a TFDS / array_record data source, a local
  builder's records) with its 'image' brought to the target size: encoded bytes are decoded with
  the bounded decoder, arrays resized.
* The face-recognition sources of ``face_recognition.py`` (identity folders, insightface RecordIO).
* `JoinedSource`: per-example arrays kept in memory (annotations, synthesis-plan rows, face
  geometry) joined with fields read from any of the sources above on read (SynFace's real faces,
  UniFaceGAN's frames t, t+1 and reference); `Concat` puts sources end to end.
* `ClipBoxSource`: key frames of videos stored as image files with their boxes and relations
  (TRACE on Action Genome): the clip decoded onto a fixed canvas with Detectron's scale rule, the
  boxes scaled with the key frame, annotations in memory, large per-example features (.npy)
  memory-mapped in each worker.

Every image from outside goes through ``decode.decode_image``: the declared size is checked
against ``data.max_pixels`` before a pixel buffer is allocated, and a bad file stops the run
with one line naming it. `open_stream_source` builds the source a config asks for.

Worker processes are started with ``spawn`` and each needs memory for ``worker_buffer`` batches
in shared memory (/dev/shm); grain is imported only when a stream is built.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from jaxpapers import safe_io
from jaxpapers.data import decode, order

LAYOUTS = ("classes", "flat")
AUGMENTS = ("none", "flip")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_ERROR = "__stream_error__"  # a worker's one-line error travels as this key of the batch
_FLIP_STREAM = 0x666C6970  # separates the flip draws from any other use of (seed, step)


def list_images(root: str, layout: str = "classes"):
    """(class names, relative file paths, labels or None) of an image folder, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist; set --config.data.path.")
    if layout == "classes":
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        if not classes:
            raise ValueError(
                f"Image folder {root!r} has no class sub-folders (expected root/<class>/img); "
                "use data.layout='flat' for a folder of unlabelled images."
            )
        files, labels = [], []
        for label, c in enumerate(classes):
            for name in sorted(os.listdir(os.path.join(root, c))):
                if name.lower().endswith(IMAGE_SUFFIXES):
                    files.append(f"{c}/{name}")
                    labels.append(label)
        out_labels = np.asarray(labels, np.int32)
    elif layout == "flat":
        classes, files, out_labels = [], [], None
        for d, dirs, names in os.walk(root):  # symlinked folders are not followed (no loops)
            dirs.sort()
            rel = os.path.relpath(d, root)
            for name in sorted(names):
                if name.lower().endswith(IMAGE_SUFFIXES):
                    files.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
        files.sort()
    else:
        raise ValueError(f"data.layout must be one of {LAYOUTS}, got {layout!r}.")
    if not files:
        raise ValueError(f"Image folder {root!r} holds no image files {IMAGE_SUFFIXES}.")
    return classes, files, out_labels


def split_positions(labels: np.ndarray | None, count: int, split: str, test_every: int):
    """Positions of ``split``: every ``test_every``-th image of each class is 'test' (as the
    image-folder builder; 0 = everything is 'train')."""
    if split not in ("train", "test"):
        raise ValueError(f"An image folder has the splits 'train' and 'test', not {split!r}.")
    labels = np.zeros(count, np.int64) if labels is None else labels
    rank = np.zeros(count, np.int64)
    for c in np.unique(labels):
        sel = np.flatnonzero(labels == c)
        rank[sel] = np.arange(len(sel))
    is_test = (rank % test_every == 0) if test_every else np.zeros(count, bool)
    return np.flatnonzero(is_test if split == "test" else ~is_test)


class FileImageSource:
    """Image files (paths relative to ``root``) decoded on read to uint8 (H, W, C)."""

    def __init__(
        self,
        root: str,
        files,
        labels=None,
        *,
        image_size: tuple[int, int],
        channels: int = 3,
        crop: str = "stretch",
        max_pixels: int = decode.MAX_PIXELS,
        num_classes: int = 0,
    ):
        self.root = os.path.abspath(root)
        self.files = list(files)
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        if self.labels is not None and len(self.labels) != len(self.files):
            raise ValueError(f"{len(self.files)} files but {len(self.labels)} labels.")
        self.image_size, self.channels = tuple(int(s) for s in image_size), int(channels)
        self.crop, self.max_pixels = crop, int(max_pixels)
        decode.crop_box(1, 1, self.image_size, crop)  # validates crop now, not in a worker
        self.num_classes = int(num_classes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitems__(self, indices) -> list[dict]:
        out = []
        for i in indices:
            path = safe_io.confined_join(self.root, self.files[i], what="image file")
            rec = {
                "image": decode.decode_image(
                    path,
                    self.image_size,
                    self.channels,
                    crop=self.crop,
                    where=repr(path),
                    max_pixels=self.max_pixels,
                )
            }
            if self.labels is not None:
                rec["label"] = self.labels[i]
            out.append(rec)
        return out


class ShapedSource:
    """A random-access source whose 'image' (encoded bytes or an array of any size) is brought
    to ``image_size``/``channels``; only ``keys`` are kept (TFDS records carry file names)."""

    def __init__(
        self,
        inner,
        *,
        image_size: tuple[int, int],
        channels: int = 3,
        crop: str = "stretch",
        max_pixels: int = decode.MAX_PIXELS,
        keys: tuple[str, ...] = ("image", "label"),
        where: str = "record",
        num_classes: int = 0,
    ):
        self.inner, self.keys, self.where = inner, tuple(keys), where
        self.image_size, self.channels = tuple(int(s) for s in image_size), int(channels)
        self.crop, self.max_pixels = crop, int(max_pixels)
        decode.crop_box(1, 1, self.image_size, crop)
        self.num_classes = int(num_classes)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitems__(self, indices) -> list[dict]:
        indices = [int(i) for i in indices]
        records = self.inner.__getitems__(indices)
        out = []
        for i, r in zip(indices, records, strict=True):
            img = r["image"]
            if isinstance(img, np.ndarray) and img.dtype == object and img.ndim == 0:
                img = img.item()
            if isinstance(img, (bytes, bytearray)):
                img = decode.decode_image(
                    bytes(img),
                    self.image_size,
                    self.channels,
                    crop=self.crop,
                    where=f"{self.where} {i}",
                    max_pixels=self.max_pixels,
                )
            else:
                img = decode.shape_array(img, self.image_size, self.channels, self.crop)
            out.append({"image": img, **{k: r[k] for k in self.keys if k != "image" and k in r}})
        return out


class Subset:
    """The first ``n`` records of a source (``data.train_limit``)."""

    def __init__(self, inner, n: int):
        self.inner, self.n = inner, min(int(n), len(inner))
        self.num_classes = getattr(inner, "num_classes", 0)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: str) -> np.ndarray:
        """The inner source's in-memory array ``key`` (see `JoinedSource`), first ``n`` rows."""
        return self.inner[key][: self.n]

    def __getitems__(self, indices) -> list[dict]:
        if any(not 0 <= int(i) < self.n for i in indices):
            raise IndexError(f"Index outside the first {self.n} records.")
        return self.inner.__getitems__(indices)


def _records(source, rows) -> list[dict]:
    """Records ``rows`` of a source or of a dict of arrays (a small in-memory part)."""
    rows = [int(r) for r in rows]
    if isinstance(source, dict):
        return [{k: v[r] for k, v in source.items()} for r in rows]
    return source.__getitems__(rows)


def _length(source) -> int:
    return len(next(iter(source.values()))) if isinstance(source, dict) else len(source)


class JoinedSource:
    """Per-example arrays held in memory joined with fields read from other sources on read.

    ``arrays`` {key: (N, ...)}: what is small (annotations, synthesis-plan rows, face geometry);
    each worker process holds a copy. ``fields`` {key: (source, rows, inner_key)}: example ``i``'s
    ``key`` is ``inner_key`` of record ``rows[i]`` of ``source`` (decoded image files, frames of an
    array_record cache, a dict of arrays), read when a batch is read; a record that several
    examples or fields of a batch share is read once. ``source[key]`` gives an in-memory array
    (statistics over a split without decoding anything).
    """

    def __init__(self, arrays: dict, fields: dict | None = None, *, num_classes: int = 0):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.fields = {
            k: (src, np.asarray(rows, np.int64), inner)
            for k, (src, rows, inner) in (fields or {}).items()
        }
        lengths = {len(v) for v in self.arrays.values()} | {
            len(r) for _, r, _ in self.fields.values()
        }
        if len(lengths) != 1:
            raise ValueError(f"JoinedSource arrays and fields differ in length: {sorted(lengths)}.")
        self.n = lengths.pop()
        for key, (src, rows, _) in self.fields.items():
            if len(rows) and not (0 <= rows.min() and rows.max() < _length(src)):
                raise ValueError(f"Field {key!r} names records outside its {_length(src)}.")
        self.num_classes = int(num_classes)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __getitems__(self, indices) -> list[dict]:
        idx = np.asarray([int(i) for i in indices], np.int64)
        cols = {k: v[idx] for k, v in self.arrays.items()}
        by_source: dict[int, tuple] = {}  # fields reading the same source object: one read
        for key, (src, rows, inner) in self.fields.items():
            by_source.setdefault(id(src), (src, []))[1].append((key, rows[idx], inner))
        for src, items in by_source.values():
            need = np.unique(np.concatenate([r for _, r, _ in items]))
            recs = _records(src, need)
            where = {int(r): p for p, r in enumerate(need)}
            for key, rows, inner in items:
                cols[key] = [recs[where[int(r)]][inner] for r in rows]
        return [{k: v[i] for k, v in cols.items()} for i in range(len(idx))]


class Concat:
    """Sources (or dicts of arrays) end to end: record ``len(a) + j`` is record ``j`` of ``b``."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [_length(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitems__(self, indices) -> list[dict]:
        idx = np.asarray([int(i) for i in indices], np.int64)
        if len(idx) and not (0 <= idx.min() and idx.max() < len(self)):
            raise IndexError(f"Index outside the {len(self)} records.")
        part = np.searchsorted(self.starts, idx, side="right") - 1
        out: list = [None] * len(idx)
        for p in np.unique(part):
            pos = np.flatnonzero(part == p)
            for k, rec in zip(pos, _records(self.parts[p], idx[pos] - self.starts[p]), strict=True):
                out[k] = rec
        return out


class ClipBoxSource:
    """Key frames of videos stored as image files, with their boxes: video detection / scene-graph
    examples decoded on read.

    Videos: ``files`` holds every video's frame paths (relative to ``root``, sorted, video ``v``
    at ``files[start[v] : start[v] + length[v]]``). Example ``i`` is the clip of frames at
    positions ``key[i] + offsets`` of video ``video[i]`` (clamped to its first / last frame),
    each decoded onto the (H, W) ``canvas`` by `decode.decode_to_canvas` (shorter side ``short``,
    longer at most ``max_long``, aspect kept, zero padding at the bottom / right): 'frames'
    uint8 (T, H, W, 3). Its annotations stay in memory: boxes (x1, y1, x2, y2, pixels of the key
    frame file) scaled like the key frame and zero-padded to ``n_max`` ('boxes'), 'labels',
    'num_boxes' and relation rows (subject, object, predicate) as the dense uint8 'rels'
    [n_max, n_max, predicates]. ``npy`` {key: .npy path}: row ``i`` of a file memory-mapped in
    each worker (per-example features too large for memory, e.g. detector box features).
    """

    def __init__(
        self,
        root: str,
        files,
        start,
        length,
        video,
        key,
        offsets,
        boxes: list,
        labels: list,
        rels: list,
        *,
        n_max: int,
        num_predicates: int,
        canvas: tuple[int, int],
        short: int,
        max_long: int,
        max_pixels: int = decode.MAX_PIXELS,
        npy: dict | None = None,
    ):
        self.root, self.files = os.path.abspath(root), np.asarray(files, str)
        self.start, self.length = np.asarray(start, np.int64), np.asarray(length, np.int64)
        self.video, self.key = np.asarray(video, np.int64), np.asarray(key, np.int64)
        self.offsets = np.asarray(offsets, np.int64)
        n = len(self.video)
        if not n:
            raise ValueError(f"No key frames to stream under {root!r}.")
        if not (len(self.key) == len(boxes) == len(labels) == len(rels) == n):
            raise ValueError("ClipBoxSource: video, key, boxes, labels and rels differ in length.")
        if n and not (np.all(self.key >= 0) and np.all(self.key < self.length[self.video])):
            raise ValueError("ClipBoxSource: a key frame position lies outside its video.")
        self.n_max, self.num_predicates = int(n_max), int(num_predicates)
        counts = np.asarray([len(b) for b in boxes], np.int64)
        if n and counts.max() > self.n_max:
            raise ValueError(f"A key frame has {counts.max()} boxes > n_max={self.n_max}.")
        # Ragged annotations as flat arrays + offsets: a few arrays to pickle, not N objects.
        self.box_start = np.concatenate([[0], np.cumsum(counts)])
        self.box_rows = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes])
        self.label_rows = np.concatenate([np.asarray(v, np.int32).reshape(-1) for v in labels])
        rel_counts = [len(r) for r in rels]
        self.rel_start = np.concatenate([[0], np.cumsum(rel_counts)]).astype(np.int64)
        self.rel_rows = np.concatenate([np.asarray(r, np.int64).reshape(-1, 3) for r in rels])
        bad = (self.rel_rows[:, 2] >= self.num_predicates) | (self.rel_rows[:, 2] < 0)
        owner = np.repeat(np.arange(n), rel_counts)
        bad |= (self.rel_rows[:, :2] < 0).any(1) | (
            self.rel_rows[:, :2] >= counts[owner, None]
        ).any(1)
        if bad.any():
            raise ValueError(
                f"Relation row {self.rel_rows[bad][0].tolist()} of key frame {owner[bad][0]} names "
                f"a box it does not have or a predicate outside [0, {self.num_predicates})."
            )
        self.canvas = tuple(int(s) for s in canvas)
        self.short, self.max_long, self.max_pixels = int(short), int(max_long), int(max_pixels)
        self.npy = dict(npy or {})
        for k, path in self.npy.items():
            rows = len(np.load(path, mmap_mode="r"))
            if rows != n:
                raise ValueError(f"{path} ({k}) has {rows} rows, the split has {n} key frames.")
        self._maps: dict = {}
        self.num_classes = 0

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_maps"}  # maps reopen per worker

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._maps = {}

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, key: str) -> np.ndarray:
        """In-memory annotations of the whole split: 'labels', 'num_boxes' or 'rels' (dense)."""
        if key not in ("labels", "num_boxes", "rels"):
            raise KeyError(f"{key!r}: only the annotations labels, num_boxes, rels are in memory.")
        return np.stack([self._annotations(i)[key] for i in range(len(self))])

    def _annotations(self, i: int) -> dict[str, np.ndarray]:
        b0, b1 = self.box_start[i], self.box_start[i + 1]
        labels = np.zeros(self.n_max, np.int32)
        labels[: b1 - b0] = self.label_rows[b0:b1]
        rels = np.zeros((self.n_max, self.n_max, self.num_predicates), np.uint8)
        r = self.rel_rows[self.rel_start[i] : self.rel_start[i + 1]]
        rels[r[:, 0], r[:, 1], r[:, 2]] = 1
        return {"labels": labels, "num_boxes": np.int32(b1 - b0), "rels": rels}

    def _frame(self, v: int, pos: int) -> tuple[np.ndarray, tuple[float, float]]:
        pos = min(max(int(pos), 0), int(self.length[v]) - 1)
        rel = str(self.files[self.start[v] + pos])
        path = safe_io.confined_join(self.root, rel, what="frame file")
        return decode.decode_to_canvas(
            path,
            self.canvas,
            self.short,
            self.max_long,
            where=repr(path),
            max_pixels=self.max_pixels,
        )

    def __getitems__(self, indices) -> list[dict]:
        out = []
        for i in (int(i) for i in indices):
            v, k = int(self.video[i]), int(self.key[i])
            clip = [self._frame(v, k + o) for o in self.offsets]
            _, (fx, fy) = (
                self._frame(v, k) if 0 not in self.offsets else clip[list(self.offsets).index(0)]
            )
            b0, b1 = self.box_start[i], self.box_start[i + 1]
            boxes = np.zeros((self.n_max, 4), np.float32)
            boxes[: b1 - b0] = self.box_rows[b0:b1] * np.asarray([fx, fy, fx, fy], np.float32)
            rec = {"frames": np.stack([f for f, _ in clip]), "boxes": boxes, **self._annotations(i)}
            for key, path in self.npy.items():
                if key not in self._maps:
                    self._maps[key] = np.load(path, mmap_mode="r")
                rec[key] = np.array(self._maps[key][i])
            out.append(rec)
        return out


def _read(source, indices: np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(source, dict):
        return {k: v[indices] for k, v in source.items()}
    records = source.__getitems__([int(i) for i in indices])
    return {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}


class StepBatches:
    """step -> this process's batch of that step (runs in grain's workers; picklable)."""

    def __init__(
        self,
        source,
        n: int,
        global_batch: int,
        *,
        seed: int,
        shuffle: bool,
        process_index: int,
        process_count: int,
        augment: str,
    ):
        if augment not in AUGMENTS:
            raise ValueError(f"data.augment must be one of {AUGMENTS}, got {augment!r}.")
        self.source, self.n, self.global_batch = source, int(n), int(global_batch)
        self.seed, self.shuffle, self.augment = int(seed), bool(shuffle), augment
        self.process_index, self.process_count = int(process_index), int(process_count)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        idx = order.step_indices(self.n, self.global_batch, self.seed, step, self.shuffle)
        local, positions = order.process_part(idx, self.process_index, self.process_count)
        try:
            batch = _read(self.source, local)
        except (ValueError, OSError) as e:  # a bad file: one line for the training loop
            return {_ERROR: " ".join(str(e).split()) or type(e).__name__}
        if "label" in batch and np.issubdtype(batch["label"].dtype, np.integer):
            batch["label"] = batch["label"].astype(np.int32)
        if self.augment == "flip":
            rng = np.random.default_rng([self.seed, _FLIP_STREAM, int(step)])
            flip = (rng.random(self.global_batch) < 0.5)[positions]
            img = batch["image"]
            batch["image"] = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
        return batch


def _absl_flags_parsed() -> None:
    """grain reads absl flags; a program that did not parse them (a test, a notebook) gets the
    defaults, as an absl app would."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


_NO_END = 1 << 50  # the stream has no last step; the trainer stops asking


class HostStream(Iterator[dict]):
    """This process's numpy batches of steps ``start_step``, ``start_step + 1``, ...

    ``workers`` grain processes (0: decoded in the calling thread), each ``worker_buffer``
    batches ahead. Close it (or use ``with``) to stop the workers.
    """

    def __init__(
        self,
        source,
        global_batch: int,
        *,
        seed: int = 0,
        start_step: int = 0,
        shuffle: bool = True,
        workers: int = 0,
        worker_buffer: int = 2,
        augment: str = "none",
        process_index: int = 0,
        process_count: int = 1,
    ):
        import grain

        n = len(next(iter(source.values()))) if isinstance(source, dict) else len(source)
        order.step_indices(n, global_batch, seed, 0, False)  # fewer examples than a batch: fail now
        if global_batch % process_count:
            raise ValueError(
                f"batch_size {global_batch} is not divisible by the {process_count} processes."
            )
        if workers < 0 or worker_buffer < 1:
            raise ValueError(f"data.workers={workers} must be >= 0, worker_buffer >= 1.")
        fn = StepBatches(
            source,
            n,
            global_batch,
            seed=seed,
            shuffle=shuffle,
            process_index=process_index,
            process_count=process_count,
            augment=augment,
        )
        _absl_flags_parsed()
        ds = grain.MapDataset.range(start_step, start_step + _NO_END).map(fn)
        # No reader threads: the batch is the unit of work, parallelism comes from the workers.
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        if workers:
            options = grain.MultiprocessingOptions(
                num_workers=workers, per_worker_buffer_size=worker_buffer
            )
            it_ds = it_ds.mp_prefetch(options)
        self.step, self._from_workers = start_step, workers > 0
        self._it = iter(it_ds)

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._it)
        if _ERROR in batch:
            raise ValueError(f"Input stream, step {self.step}: {batch[_ERROR]}")
        self.step += 1
        if not self._from_workers:
            return batch
        # A worker's arrays arrive in shared memory blocks; copies (one memcpy) release each block
        # at once, and device arrays made from the batch (zero-copy on CPU) never alias a block
        # that grain unmaps when the stream closes.
        return {k: np.array(v) for k, v in batch.items()}

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Paper presets: worker processes per host. Decoding scales with cores (benchmarks/README.md);
# 8 leaves a 16-core accelerator host cores for the training loop; set data.workers to taste.
PAPER_WORKERS = 8


def config_keys(pipeline: str = "memory", workers: int = 0, **overrides) -> dict:
    """The ``data.*`` keys of the input pipeline, for a method config's ``c.data.update(...)``:
    pipeline ('memory' | 'stream'), workers (grain processes; 0 = in the loader thread),
    worker_buffer (batches each worker keeps ready), augment ('none' | 'flip', in the workers),
    crop ('stretch' | 'center'), layout ('classes' | 'flat') and max_pixels (decode bound)."""
    keys = dict(
        pipeline=pipeline,
        workers=workers,
        worker_buffer=2,
        augment="none",
        crop="stretch",
        layout="classes",
        max_pixels=decode.MAX_PIXELS,
    )
    unknown = set(overrides) - set(keys)
    if unknown:
        raise KeyError(f"Unknown stream keys {sorted(unknown)}; known: {sorted(keys)}.")
    return {**keys, **overrides}


def streaming(data_cfg) -> bool:
    """Whether a data config asks for the streaming pipeline."""
    return data_cfg.get("pipeline", "memory") == "stream"


def open_stream_source(
    data_cfg, split: str, *, image_size: tuple[int, int], channels: int, labels: bool = True
):
    """The lazily decoding source of ``data.name`` for the stream.

    'image_folder': `FileImageSource` over ``data.path`` (``data.layout``, ``data.test_every``);
    'casia_webface' / 'ms1m': ``face_recognition.open_train_source``; any other name: the
    prepared TFDS data set (or a local builder) as a `ShapedSource` (encoded images are decoded
    in the workers with the bounds check). ``data.crop`` ('stretch' | 'center'),
    ``data.max_pixels`` and ``data.train_limit`` apply to all of them; ``data.pad_to`` (host padding
    of in-memory images) must be 0.
    """
    d = data_cfg
    if int(d.get("pad_to", 0)):
        raise ValueError("data.pad_to is for in-memory data; the stream resizes, set it to 0.")
    size, crop = tuple(int(s) for s in image_size), d.get("crop", "stretch")
    max_pixels = int(d.get("max_pixels", decode.MAX_PIXELS))
    name = d.name
    if name == "image_folder":
        if not d.get("path", ""):
            raise ValueError("data.name='image_folder' needs --config.data.path=<image folder>.")
        layout = d.get("layout", "classes")
        classes, files, labs = list_images(d.path, layout)
        keep = split_positions(labs, len(files), split, int(d.get("test_every", 5)))
        if not len(keep):
            raise ValueError(f"Image folder {d.path!r} has no {split!r} images.")
        if labels and labs is None:
            raise ValueError(
                f"data.layout='flat' gives no labels, but this method needs them; use "
                f"data.layout='classes' (root/<class>/<image>) for {d.path!r}."
            )
        src = FileImageSource(
            d.path,
            [files[i] for i in keep],
            None if (labs is None or not labels) else labs[keep],
            image_size=size,
            channels=channels,
            crop=crop,
            max_pixels=max_pixels,
            num_classes=len(classes),
        )
    else:
        from jaxpapers.data import face_recognition

        if name in face_recognition.TRAIN_NAMES:
            src = face_recognition.open_train_source(d)
        else:
            from jaxpapers.data import loader

            inner = loader.open_source(d, split, encoded_images=True)
            info = getattr(inner, "dataset_info", None)
            feats = info.features if info is not None else {}
            label = feats["label"] if "label" in feats.keys() else None
            src = ShapedSource(
                inner,
                image_size=size,
                channels=channels,
                crop=crop,
                max_pixels=max_pixels,
                keys=("image", "label") if labels else ("image",),
                where=f"{name}[{split}] record",
                num_classes=int(getattr(label, "num_classes", 0) or 0),
            )
    limit = int(d.get(f"{split}_limit", 0) or 0)
    return Subset(src, limit) if limit else src
