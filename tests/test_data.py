"""Data builders on small files the tests write; the deterministic, resumable batch order."""

import gzip

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxpapers import data, parallel
from jaxpapers.data import builders


def _cfg(tmp_path, **kw):
    return ml_collections.ConfigDict({"tfds_dir": str(tmp_path / "tfds"), "path": "", **kw})


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_builder_reads_idx_files(tmp_path):
    src = tmp_path / "fm"
    src.mkdir()
    r = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(src / f"{split}-images-idx3-ubyte.gz", r.integers(0, 256, (n, 28, 28)))
        _write_idx(src / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = data.load(_cfg(tmp_path, name="fashion_mnist", path=str(src)), "train")
    assert d["image"].shape == (12, 28, 28, 1) and d["image"].dtype == np.uint8
    assert sorted(d["label"].tolist()) == sorted((np.arange(12) % 10).tolist())
    assert len(data.load(_cfg(tmp_path, name="fashion_mnist", path=str(src)), "test")["label"]) == 5


def test_fashion_mnist_missing_files_names_package(tmp_path, monkeypatch):
    monkeypatch.setattr(builders, "FMNIST_DEBIAN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        builders.find_fashion_mnist(str(tmp_path / "empty"), download=False)


def test_truncated_idx_is_reported(tmp_path):
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="truncated"):
        builders._read_idx(str(p))


def test_image_folder_builder_and_corrupt_file(tmp_path):
    root = tmp_path / "faces"
    for c in ("alice", "bob"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((10, 8), 40 * i, np.uint8)).save(root / c / f"{i}.pgm")
    cfg = _cfg(
        tmp_path, name="image_folder", path=str(root), image_size=(6, 4), channels=1, test_every=5
    )
    train = data.load(cfg, "train")
    test = data.load(cfg, "test")
    assert train["image"].shape == (8, 6, 4, 1) and len(test["label"]) == 2
    assert set(test["label"].tolist()) == {0, 1}
    (root / "bob" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        builders.read_image(str(root / "bob" / "bad.png"), (6, 4), 1)


def test_digits_split_is_disjoint_and_complete(tmp_path):
    train = data.load(_cfg(tmp_path, name="digits"), "train")
    test = data.load(_cfg(tmp_path, name="digits"), "test")
    assert len(train["label"]) + len(test["label"]) == 1797
    assert train["image"].shape[1:] == (8, 8, 1)


def test_unknown_dataset_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="neither a local builder"):
        data.load(_cfg(tmp_path, name="no_such_dataset_xyz"), "train")


def test_loader_order_is_a_function_of_step_and_covers_each_epoch():
    src = {"x": np.arange(40, dtype=np.int32)}
    mesh = parallel.make_mesh()
    a = data.Loader(src, 8, mesh, seed=3)
    batches = [np.asarray(jax.device_get(next(a)["x"])) for _ in range(7)]
    a.close()
    epoch0 = np.concatenate(batches[:5])
    assert sorted(epoch0.tolist()) == list(range(40)), "one epoch must visit every example once"
    b = data.Loader(src, 8, mesh, seed=3, start_step=5)
    np.testing.assert_array_equal(np.asarray(jax.device_get(next(b)["x"])), batches[5])
    b.close()
    np.testing.assert_array_equal(np.sort(a.indices(6)), batches[6])
    with pytest.raises(ValueError, match="not divisible"):
        data.Loader(src, 12, mesh)
