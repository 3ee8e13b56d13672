"""Local TFDS builders (array_record, no TensorFlow) for the offline data sets.

Each builder writes ``array_record`` files that are read back with ``as_data_source()``; the
TFDS path is the single source of truth even for data that then fits in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request

import numpy as np
import tensorflow_datasets as tfds

from jaxpapers.data import decode

FMNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _image_label_info(builder, shape: tuple[int, ...], **classes) -> tfds.core.DatasetInfo:
    """The features of every builder here: a uint8 ``image`` of ``shape`` and its ``label``
    (``classes``: the ``ClassLabel`` arguments, ``num_classes`` or ``names``)."""
    return tfds.core.DatasetInfo(
        builder=builder,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
                "label": tfds.features.ClassLabel(**classes),
            }
        ),
        supervised_keys=("image", "label"),
    )


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number); is the file corrupt?")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated: expected {np.prod(shape)} values, found {arr.size}."
        )
    return arr.reshape(shape)


def find_fashion_mnist(path: str = "", download: bool = True) -> str:
    """The directory holding the four Fashion-MNIST files; downloads them only when online."""
    candidates = [
        p for p in (path, os.environ.get("FASHION_MNIST_DIR", ""), FMNIST_DEBIAN_DIR) if p
    ]
    names = [n for pair in FMNIST_FILES.values() for n in pair]
    for c in candidates:
        if all(os.path.isfile(os.path.join(c, n)) for n in names):
            return c
    if download:
        target = os.path.join(os.path.expanduser("~"), ".cache", "jaxpapers", "fashion_mnist")
        try:
            os.makedirs(target, exist_ok=True)
            for n in names:
                dest = os.path.join(target, n)
                if not os.path.isfile(dest):
                    with urllib.request.urlopen(FMNIST_URL + n, timeout=10) as r:
                        data = r.read()
                    with open(dest + ".part", "wb") as f:
                        f.write(data)
                    os.replace(dest + ".part", dest)
            return target
        except OSError:
            pass
    raise FileNotFoundError(
        "Fashion-MNIST files not found in "
        + ", ".join(repr(c) for c in candidates)
        + " and they could not be downloaded. Install the Debian package "
        "('apt-get install -y dataset-fashion-mnist', files in /usr/share/datasets/fashion-mnist) "
        "or set --config.data.path to a directory holding " + ", ".join(names) + "."
    )


class JaxpapersFashionMnist(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (Zalando, MIT) from the Debian package's IDX files."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, source_dir: str = "", **kwargs):
        self._source_dir = source_dir
        super().__init__(**kwargs)

    def _info(self):
        return _image_label_info(self, (28, 28, 1), num_classes=10)

    def _split_generators(self, dl_manager):
        del dl_manager
        d = find_fashion_mnist(self._source_dir)
        return {s: self._generate_examples(d, *files) for s, files in FMNIST_FILES.items()}

    def _generate_examples(self, d, images_file, labels_file):
        images = _read_idx(os.path.join(d, images_file))
        labels = _read_idx(os.path.join(d, labels_file))
        if len(images) != len(labels):
            raise ValueError(f"{images_file} and {labels_file} in {d} differ in length.")
        for i, (x, y) in enumerate(zip(images, labels, strict=False)):
            yield i, {"image": x[..., None], "label": int(y)}


class JaxpapersDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 digits (UCI), split 80/20 with a fixed permutation, scaled to uint8."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return _image_label_info(self, (8, 8, 1), num_classes=10)

    def _split_generators(self, dl_manager):
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.clip(d.images * 16.0, 0, 255).astype(np.uint8)[..., None]
        perm = np.random.RandomState(0).permutation(len(images))
        cut = int(0.8 * len(images))
        return {
            "train": self._generate_examples(images, d.target, perm[:cut]),
            "test": self._generate_examples(images, d.target, perm[cut:]),
        }

    def _generate_examples(self, images, labels, idx):
        for i in idx:
            yield int(i), {"image": images[i], "label": int(labels[i])}


def list_image_folder(root: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted sub-folders) and (file, label) pairs of an image folder."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist.")
    classes = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    if not classes:
        raise ValueError(
            f"Image folder {root!r} has no class sub-folders (expected root/<class>/img)."
        )
    files = []
    for label, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(root, c))):
            if name.lower().endswith(IMAGE_SUFFIXES):
                files.append((os.path.join(root, c, name), label))
    if not files:
        raise ValueError(
            f"Image folder {root!r} has class folders but no image files {IMAGE_SUFFIXES}."
        )
    return classes, files


def read_image(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decodes and resizes one image to (H, W, C) uint8; a corrupt or oversized file is named in
    the error (``decode.decode_image``: the declared size is checked before decoding)."""
    return decode.decode_image(path, tuple(size), channels, where=repr(path))


class JaxpapersImageFolder(tfds.core.GeneratorBasedBuilder):
    """One sub-folder per class of image files of any PIL format, resized to a fixed size.

    The split is deterministic per class: every ``test_every``-th image of a class goes to 'test'.
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = []

    def __init__(self, *, root: str, image_size=(64, 64), channels=3, test_every=5, **kwargs):
        self._root = os.path.abspath(root)
        self._size = tuple(int(s) for s in image_size)
        self._channels = int(channels)
        self._test_every = int(test_every)
        self._classes, self._files = list_image_folder(self._root)
        super().__init__(**kwargs)

    @staticmethod
    def key(root, image_size, channels, test_every) -> str:
        """The cache key: the build settings and (relative path, size, mtime_ns) of every image.

        Keyed by content rather than by the folder's path, so adding, removing, replacing or
        touching an image builds a fresh cache instead of silently reusing the old one.
        """
        h = hashlib.sha256(f"{tuple(image_size)}|{channels}|{test_every}".encode())
        _, files = list_image_folder(root)
        for path, label in files:
            st = os.stat(path)
            rel = os.path.relpath(path, root)
            h.update(f"\n{rel}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def _info(self):
        return _image_label_info(self, (*self._size, self._channels), names=self._classes)

    def _split_generators(self, dl_manager):
        del dl_manager
        per_class: dict[int, int] = {}
        split = {"train": [], "test": []}
        for path, label in self._files:
            k = per_class.get(label, 0)
            per_class[label] = k + 1
            split["test" if self._test_every and k % self._test_every == 0 else "train"].append(
                (path, label)
            )
        return {s: self._generate_examples(items) for s, items in split.items() if items}

    def _generate_examples(self, items):
        for path, label in items:
            yield path, {"image": read_image(path, self._size, self._channels), "label": label}
