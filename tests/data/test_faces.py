"""The face-identity source: data.path, then $JAXPAPERS_DATA_DIR, then scikit-learn's Olivetti.

Faces here are generated (a tiny ORL-layout folder; a fake Olivetti bunch); the scikit-learn fetch
is monkeypatched to simulate an offline machine and a cached download.
"""

import os
import urllib.error

import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

from jaxpapers import config_lib
from jaxpapers.data import faces


def _write_orl(root, n_ids=4, per_id=3, hw=(14, 12), seed=0):
    """root/s<k>/<j>.pgm like the AT&T archive, each identity a different brightness."""
    rng = np.random.default_rng(seed)
    for k in range(1, n_ids + 1):
        os.makedirs(root / f"s{k}")
        for j in range(1, per_id + 1):
            img = np.clip(rng.integers(0, 40, hw) + 50 * k, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"s{k}" / f"{j}.pgm")
    return str(root)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No $JAXPAPERS_DATA_DIR, an empty scikit-learn data home and no network."""
    calls = []

    def fetch(*, download_if_missing=True, **kw):
        calls.append(download_if_missing)
        if not download_if_missing:
            raise OSError("Data not found and `download_if_missing` is False")
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.delenv(faces.ENV_VAR, raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "skl_home"))
    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fetch)
    return calls


def test_explicit_folder_wins_and_loads(tmp_path, offline, monkeypatch):
    root = _write_orl(tmp_path / "orl")
    monkeypatch.setenv(faces.ENV_VAR, str(tmp_path / "elsewhere"))
    assert faces.resolve_dir(root) == root
    images, labels = faces.load_identity_folder(root, (7, 6))
    assert images.shape == (12, 7, 6, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 3))
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey replicated
    assert images[labels == 3].mean() > images[labels == 0].mean() + 100  # s4 is brighter
    assert offline == []  # the network is never consulted


def test_explicit_missing_folder_does_not_fall_back(tmp_path, offline, monkeypatch):
    monkeypatch.setenv(faces.ENV_VAR, str(tmp_path))
    _write_orl(tmp_path / "att_faces")
    with pytest.raises(faces.FacesNotFound, match=r"identity.path='/no/such'") as e:
        faces.resolve_dir("/no/such", key="identity.path")
    assert "\n" not in str(e.value)


def test_env_data_root(tmp_path, offline, monkeypatch):
    root = _write_orl(tmp_path / "faces" / "att_orl_faces")
    monkeypatch.setenv(faces.ENV_VAR, str(tmp_path))
    assert faces.resolve_dir("") == root
    assert offline == []


def test_offline_error_is_one_line_naming_the_three_ways(tmp_path, offline, monkeypatch):
    monkeypatch.setenv(faces.ENV_VAR, str(tmp_path / "data"))
    with pytest.raises(faces.FacesNotFound) as e:
        faces.resolve_dir("")
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("data.path", faces.ENV_VAR, "Olivetti", str(tmp_path / "data" / "att_faces")):
        assert part in msg
    assert str(tmp_path / "skl_home") in msg and "URLError" in msg
    assert offline == [False, True]  # cache first, then one download attempt
    with pytest.raises(faces.FacesNotFound):
        faces.resolve_dir("", download=False)
    assert offline == [False, True, False]


def test_cached_olivetti_becomes_an_orl_folder(tmp_path, offline, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.random((400, 64, 64), dtype=np.float32)
    target = np.repeat(np.arange(40), 10)
    order = rng.permutation(400)  # the layout must follow `target`, not the row order

    def cached(*, download_if_missing=True, **kw):
        return sklearn.datasets._base.Bunch(images=images[order], target=target[order])

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", cached)
    d = faces.resolve_dir("")
    assert d == os.path.join(str(tmp_path / "skl_home"), faces.OLIVETTI_FOLDER)
    assert sorted(os.listdir(d), key=lambda s: int(s[1:])) == [f"s{k}" for k in range(1, 41)]
    assert all(len(os.listdir(os.path.join(d, f"s{k}"))) == 10 for k in range(1, 41))
    rows = order[target[order] == 6]  # subject 6 -> s7, in the bunch's row order
    with Image.open(os.path.join(d, "s7", "1.pgm")) as im:
        first = np.asarray(im)
    np.testing.assert_array_equal(first, np.round(images[rows[0]] * 255).astype(np.uint8))

    def fail(**kw):
        raise AssertionError("the written folder must be reused without fetching")

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fail)
    assert faces.resolve_dir("") == d
    imgs, labels = faces.load_identity_folder(d, (64, 64))
    assert imgs.shape == (400, 64, 64, 3) and labels.max() == 39


def _config(name, arg):
    return config_lib.load_config_file(f"configs/{name}.py", arg)


def test_face_methods_fail_early_offline(offline, monkeypatch):
    """Each face method's data path raises the one-line error before reading anything else."""
    from jaxpapers.methods.faceanime import steps as fa_steps
    from jaxpapers.methods.from_occlusion import inputs as from_faces
    from jaxpapers.methods.stra import inputs as stra_steps
    from jaxpapers.methods.synface import inputs as syn_faces
    from jaxpapers.methods.unifacegan import inputs as uni_data

    with pytest.raises(faces.FacesNotFound, match="data.path"):
        from_faces.make_source(_config("from_occlusion", None), "train")
    with pytest.raises(faces.FacesNotFound, match="data.path"):
        syn_faces.make_source(_config("synface", None), "train")
    with pytest.raises(faces.FacesNotFound, match="data.path"):
        stra_steps.make_source(_config("stra", "faces"), "train")
    with pytest.raises(faces.FacesNotFound, match="identity.path"):
        fa_steps.identity_model(_config("faceanime", None))

    def no_tracking(*a, **k):
        raise AssertionError("the face folder must be checked before videos are tracked")

    monkeypatch.setattr(uni_data, "load_video", no_tracking)
    with pytest.raises(faces.FacesNotFound, match="data.orl_dir"):
        uni_data.make_source(_config("unifacegan", None), "train")


def test_face_methods_read_the_resolved_folder(tmp_path, offline, monkeypatch):
    root = _write_orl(tmp_path / "att_faces", n_ids=5, per_id=4, hw=(28, 24))
    monkeypatch.setenv(faces.ENV_VAR, str(tmp_path))
    from jaxpapers.methods.from_occlusion import inputs as from_faces
    from jaxpapers.methods.stra import inputs as stra_steps

    src = from_faces.make_source(
        _config("from_occlusion", "default,data.n_train_ids=3,model.num_classes=3"), "train"
    )
    assert src["image"].shape == (12, 56, 48, 3) and src["label"].max() == 2
    q = stra_steps.make_source(_config("stra", "faces,data.num_train_ids=3"), "query")
    assert q["image"].shape[0] == 2 * 2  # 2 query images of each of the 2 unseen identities
    assert root in faces.resolve_dir("")


def test_training_a_face_method_fails_before_building_the_model(offline, monkeypatch, tmp_path):
    """The trainer reads the data before it initialises (compiles) anything."""
    from jaxpapers import trainer

    def no_init(*a, **k):
        raise AssertionError("the model was built before the missing faces were reported")

    monkeypatch.setattr(trainer, "restore_or_init", no_init)
    with pytest.raises(faces.FacesNotFound, match="data.path"):
        trainer.train(_config("from_occlusion", "smoke"), str(tmp_path / "run"))
