"""Loading splits and iterating deterministic, resumable, per-process sharded batches.

The order of examples is a pure function of ``(seed, step)`` (``order.py``): the batch of step
``s`` is the ``s % steps_per_epoch``-th slice of the permutation of epoch ``s // steps_per_epoch``.
A resumed run therefore continues the data order exactly where it stopped, with no iterator state
to save. `Loader` reads the batches on a thread; `StreamLoader` decodes them in grain worker
processes (``stream.py``); `make_loader` picks one from ``config.data.pipeline``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from jaxpapers import parallel
from jaxpapers.data import builders, order

tfds.disable_progress_bar()

LOCAL = ("fashion_mnist", "digits", "image_folder")


def data_dir(cfg: ml_collections.ConfigDict | None = None) -> str:
    explicit = (cfg.get("tfds_dir", "") if cfg is not None else "") or os.environ.get(
        "TFDS_DATA_DIR"
    )
    return explicit or os.path.join(os.path.expanduser("~"), ".cache", "jaxpapers", "tfds")


def _builder(cfg: ml_collections.ConfigDict):
    name = cfg.name
    root = data_dir(cfg)
    if name == "fashion_mnist":
        return builders.JaxpapersFashionMnist(source_dir=cfg.get("path", ""), data_dir=root)
    if name == "digits":
        return builders.JaxpapersDigits(data_dir=root)
    if name == "image_folder":
        if not cfg.get("path", ""):
            raise ValueError("data.name='image_folder' needs --config.data.path=<root/class/img>.")
        size = tuple(cfg.get("image_size", (64, 64)))
        channels, every = int(cfg.get("channels", 3)), int(cfg.get("test_every", 5))
        key = builders.JaxpapersImageFolder.key(cfg.path, size, channels, every)
        return builders.JaxpapersImageFolder(
            root=cfg.path,
            image_size=size,
            channels=channels,
            test_every=every,
            data_dir=os.path.join(root, "image_folder", key),
        )
    return None


def open_source(cfg: ml_collections.ConfigDict, split: str, *, encoded_images: bool = False):
    """A random-access source (``__len__``, ``__getitems__``) for a split, prepared if local.

    ``encoded_images``: a TFDS ``Image`` feature named 'image' comes back as its encoded bytes
    (``SkipDecoding``), for the stream's bounded decoder (``stream.ShapedSource``).
    """
    builder = _builder(cfg)
    if builder is not None:
        builder.download_and_prepare(file_format="array_record")
        if split not in builder.info.splits:
            raise ValueError(
                f"Data set {cfg.name!r} has no split {split!r}; it has {list(builder.info.splits)}."
            )
        return builder.as_data_source(split=split)
    try:
        src = tfds.data_source(cfg.name, split=split, data_dir=data_dir(cfg), download=False)
        features = src.dataset_info.features
        if (
            encoded_images
            and "image" in features.keys()
            and isinstance(features["image"], tfds.features.Image)
        ):
            src = tfds.data_source(
                cfg.name,
                split=split,
                data_dir=data_dir(cfg),
                download=False,
                decoders={"image": tfds.decode.SkipDecoding()},
            )
        return src
    except Exception as e:  # tfds raises several types for 'not prepared' / 'unknown name'.
        raise ValueError(
            f"Data set {cfg.name!r} (split {split!r}) is neither a local builder {LOCAL} nor a "
            f"prepared TFDS data set under {data_dir(cfg)!r} ({type(e).__name__}: {e}). Prepare it "
            "with tfds on a machine with the internet and point TFDS_DATA_DIR at it."
        ) from e


def read_source(source, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Reads records (all, or ``indices``) of a source into stacked numpy arrays."""
    if isinstance(source, dict):
        return source if indices is None else {k: v[indices] for k, v in source.items()}
    if indices is None:
        indices = np.arange(len(source))
    records = source.__getitems__([int(i) for i in indices])
    return {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}


def load(cfg: ml_collections.ConfigDict, split: str) -> dict[str, np.ndarray]:
    """A whole split in memory, e.g. ``{'image': uint8 (N,H,W,C), 'label': int32 (N,)}``."""
    arrays = read_source(open_source(cfg, split))
    if "label" in arrays:
        arrays["label"] = arrays["label"].astype(np.int32)
    limit = int(cfg.get(f"{split}_limit", 0) or 0)
    if limit:
        arrays = {k: v[:limit] for k, v in arrays.items()}
    return arrays


def num_examples(source) -> int:
    if isinstance(source, dict):
        lengths = {len(v) for v in source.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"Source arrays differ in length: { {k: len(v) for k, v in source.items()} }."
            )
        return lengths.pop()
    return len(source)


class Loader:
    """Per-step batches of a source, sharded over processes and placed on the mesh.

    A background thread reads and places ``prefetch`` batches ahead of the training loop.
    ``process_index``/``process_count`` default to JAX's (given explicitly only to read the part
    of another process, e.g. in tests).
    """

    def __init__(
        self,
        source,
        global_batch: int,
        mesh,
        *,
        seed: int = 0,
        start_step: int = 0,
        prefetch: int = 2,
        shuffle: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.source, self.mesh, self.seed, self.shuffle = source, mesh, seed, shuffle
        self.n = num_examples(source)
        self.global_batch = global_batch
        if self.n < global_batch:
            raise ValueError(
                f"The data set has {self.n} examples, fewer than one batch ({global_batch})."
            )
        parallel.check_batch_size(global_batch, mesh)
        self.steps_per_epoch = self.n // global_batch
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        self.local_batch = global_batch // self.process_count
        self._step = start_step
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def indices(self, step: int) -> np.ndarray:
        """The global example indices of a step (before per-process slicing)."""
        return order.step_indices(self.n, self.global_batch, self.seed, step, self.shuffle)

    def host_batch(self, step: int) -> dict[str, np.ndarray]:
        local, _ = order.process_part(self.indices(step), self.process_index, self.process_count)
        return read_source(self.source, local)

    def _host_batches(self, step: int) -> Iterator[dict[str, Any]]:
        """This process's batches of steps ``step``, ``step + 1``, ... (numpy, on the host)."""
        while True:
            yield self.host_batch(step)
            step += 1

    def _fill(self):
        step = self._step
        try:
            for host in self._host_batches(step):
                if self._stop.is_set():
                    return
                batch = parallel.global_batch(host, self.mesh)
                while not self._stop.is_set():
                    try:
                        self._queue.put((step, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                step += 1
        except Exception as e:  # Surface reader errors in the training loop, not a dead thread.
            self._queue.put((None, e))

    def __iter__(self) -> Iterator[dict[str, jax.Array]]:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        step, batch = self._queue.get()
        if step is None:
            raise batch
        return batch

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


class StreamLoader(Loader):
    """`Loader` whose host batches are decoded and augmented by a grain `stream.HostStream`
    (``workers`` processes; 0 = in this process) before the same thread places them on the mesh.

    The batches are the ones `Loader` reads for the same source, seed and step (``order.py``);
    ``augment`` ('none' | 'flip') is applied in the workers, keyed by (seed, step, position).
    """

    def __init__(
        self,
        source,
        global_batch: int,
        mesh,
        *,
        seed: int = 0,
        start_step: int = 0,
        prefetch: int = 2,
        shuffle: bool = True,
        workers: int = 0,
        worker_buffer: int = 2,
        augment: str = "none",
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        from jaxpapers.data import stream  # grain is imported only when a stream is used

        self._stream = stream.HostStream(
            source,
            global_batch,
            seed=seed,
            start_step=start_step,
            shuffle=shuffle,
            workers=workers,
            worker_buffer=worker_buffer,
            augment=augment,
            process_index=jax.process_index() if process_index is None else process_index,
            process_count=jax.process_count() if process_count is None else process_count,
        )
        try:
            super().__init__(
                source,
                global_batch,
                mesh,
                seed=seed,
                start_step=start_step,
                prefetch=prefetch,
                shuffle=shuffle,
                process_index=process_index,
                process_count=process_count,
            )
        except BaseException:
            self._stream.close()
            raise

    def _host_batches(self, step: int) -> Iterator[dict[str, Any]]:
        return self._stream

    def close(self):
        super().close()
        self._stream.close()


PIPELINES = ("memory", "stream")


def make_loader(source, config, mesh, *, start_step: int = 0) -> Loader:
    """The trainer's loader: ``config.data.pipeline`` 'memory' (default) or 'stream'
    (``data.workers`` grain processes, ``data.augment``), ``config.prefetch`` batches ahead."""
    d = config.data
    pipeline = d.get("pipeline", "memory")
    common = dict(seed=config.seed, start_step=start_step, prefetch=config.prefetch)
    if pipeline == "memory":
        return Loader(source, config.batch_size, mesh, **common)
    if pipeline != "stream":
        raise ValueError(f"data.pipeline must be one of {PIPELINES}, got {pipeline!r}.")
    return StreamLoader(
        source,
        config.batch_size,
        mesh,
        workers=int(d.get("workers", 0)),
        worker_buffer=int(d.get("worker_buffer", 2)),
        augment=d.get("augment", "none"),
        **common,
    )
