"""The grain stream: same batches as the in-memory Loader, exact resume, process shards, bad files.

Images are small PNGs written here (lossless, so a pixel identifies its example): channel 1 holds
the example's id, channel 0 a left-to-right ramp (so a horizontal flip is visible).
"""

import io
import struct
import zlib

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxpapers import data, parallel
from jaxpapers.data import decode, order, stream

H, W = 6, 8


def _image(uid: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = np.arange(W) * 30
    img[..., 1] = uid
    img[..., 2] = 7
    return img


def _folder(root, classes=3, per_class=8):
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(_image(c * per_class + j)).save(root / f"class_{c}" / f"{j:02d}.png")
    return root


def _cfg(root, **kw):
    return ml_collections.ConfigDict(
        dict(name="image_folder", path=str(root), test_every=0, pipeline="stream", **kw)
    )


def _source(root, **kw):
    return stream.open_stream_source(_cfg(root, **kw), "train", image_size=(H, W), channels=3)


def _take(s: stream.HostStream, k: int) -> list[dict]:
    with s:
        return [next(s) for _ in range(k)]


def _assert_batches_equal(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_stream_equals_loader_and_resumes_mid_epoch(tmp_path):
    src = _source(_folder(tmp_path / "imgs"))
    assert len(src) == 24 and src.num_classes == 3  # 3 steps per epoch of 8
    full = _take(stream.HostStream(src, 8, seed=3), 8)  # crosses two epoch boundaries
    ids = np.concatenate([b["image"][:, 0, 0, 1] for b in full[:3]])
    assert sorted(ids.tolist()) == list(range(24))  # one epoch = every example once
    np.testing.assert_array_equal(full[0]["label"], full[0]["image"][:, 0, 0, 1] // 8)
    assert full[0]["label"].dtype == np.int32
    # The in-memory Loader reads the same batches (shared order.py).
    mesh = parallel.make_mesh()
    loader = data.Loader(src, 8, mesh, seed=3)
    try:
        _assert_batches_equal(full, [loader.host_batch(s) for s in range(8)])
    finally:
        loader.close()
    # A stream started at step 4 (mid-epoch 1) continues the uninterrupted one exactly.
    _assert_batches_equal(_take(stream.HostStream(src, 8, seed=3, start_step=4), 4), full[4:])
    # Another seed is another order.
    other = _take(stream.HostStream(src, 8, seed=4), 1)[0]
    assert not np.array_equal(other["image"], full[0]["image"])


def test_two_processes_see_disjoint_parts_covering_the_batch(tmp_path):
    src = _source(_folder(tmp_path / "imgs"))
    whole = _take(stream.HostStream(src, 8, seed=1, augment="flip"), 5)
    parts = [
        _take(
            stream.HostStream(src, 8, seed=1, augment="flip", process_index=p, process_count=2), 5
        )
        for p in (0, 1)
    ]
    flipped = 0
    for step in range(5):
        a, b = parts[0][step], parts[1][step]
        assert len(a["label"]) == len(b["label"]) == 4
        ids_a, ids_b = set(a["image"][:, 0, 0, 1].tolist()), set(b["image"][:, 0, 0, 1].tolist())
        assert not ids_a & ids_b
        by_id = {int(img[0, 0, 1]): img for img in whole[step]["image"]}
        assert ids_a | ids_b == set(by_id)
        # The flip of an example depends on its position in the global batch, not the process.
        for img in np.concatenate([a["image"], b["image"]]):
            np.testing.assert_array_equal(img, by_id[int(img[0, 0, 1])])
        flipped += sum(int(img[0, 0, 0] != 0) for img in whole[step]["image"])
    assert 0 < flipped < 40  # flips happen, and not to every image


def test_workers_give_the_batches_of_the_calling_process(tmp_path):
    """Two grain worker processes build alternate steps; the order is unchanged, resume too."""
    src = _source(_folder(tmp_path / "imgs"))
    ref = _take(stream.HostStream(src, 8, seed=5, start_step=2, augment="flip"), 4)
    got = _take(stream.HostStream(src, 8, seed=5, start_step=2, augment="flip", workers=2), 4)
    _assert_batches_equal(got, ref)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height RGB whose (empty) pixel data is never reached."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b"")
    )


def test_bad_file_gives_one_line_error(tmp_path):
    root = _folder(tmp_path / "imgs", classes=1, per_class=8)
    (root / "class_0" / "03.png").write_bytes(b"this is not an image\n\nat all")
    s = stream.HostStream(_source(root), 8, seed=0)
    with s, pytest.raises(ValueError) as e:
        next(s)
    msg = str(e.value)
    assert "\n" not in msg and "03.png" in msg and msg.startswith("Input stream, step 0:")


def test_oversized_image_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(9000, 8000))  # 72M pixels (216 MB as RGB) declared in 57 bytes
    with pytest.raises(ValueError, match=r"bomb.png' declares 9000x8000 pixels.*refused before"):
        decode.decode_image(str(path), (8, 8), 3)
    with pytest.raises(ValueError, match="declares 64x64 pixels"):
        decode.decode_image(_png_header(64, 64), (8, 8), 3, max_pixels=1000)
    path.write_bytes(_png_header(100_000, 100_000))  # PIL's own bomb check comes first here
    with pytest.raises(ValueError, match="bomb.png"):
        decode.decode_image(str(path), (8, 8), 3)


def test_paths_stay_inside_the_root(tmp_path):
    root = _folder(tmp_path / "imgs", classes=1, per_class=2)
    Image.fromarray(_image(9)).save(tmp_path / "outside.png")
    src = stream.FileImageSource(str(root), ["../outside.png"], image_size=(H, W))
    with pytest.raises(ValueError, match="escapes"):
        src.__getitems__([0])


def test_host_padding_is_refused_on_the_stream(tmp_path):
    root = _folder(tmp_path / "imgs", classes=1, per_class=2)
    with pytest.raises(ValueError, match="data.pad_to is for in-memory data"):
        _source(root, pad_to=32)


def test_flat_layout_and_center_crop(tmp_path):
    root = tmp_path / "ffhq"
    (root / "00000").mkdir(parents=True)
    wide = np.zeros((4, 12, 3), np.uint8)
    wide[:, 4:8] = 200  # the centred 4x4 square is bright, the sides dark
    Image.fromarray(wide).save(root / "00000" / "a.png")
    Image.fromarray(wide).save(root / "b.png")
    _, files, labels = stream.list_images(str(root), "flat")
    assert files == ["00000/a.png", "b.png"] and labels is None
    cfg = _cfg(root, layout="flat", crop="center")
    src = stream.open_stream_source(cfg, "train", image_size=(4, 4), channels=3, labels=False)
    batch = stream._read(src, np.arange(2))
    assert set(batch) == {"image"} and np.all(batch["image"] == 200)
    with pytest.raises(ValueError, match="layout='flat' gives no labels"):
        stream.open_stream_source(cfg, "train", image_size=(4, 4), channels=3)


class _EncodedImages(tfds.core.GeneratorBasedBuilder):
    """An array_record data set whose 'image' is encoded PNG bytes (as TFDS Image features are
    read with SkipDecoding), of varying sizes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            "label": tfds.features.ClassLabel(num_classes=2),
            "file_name": tfds.features.Text(),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(10):
            img = np.asarray(Image.fromarray(_image(i)).resize((W + 2 * i, H + i)))
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            yield i, {"image": buf.getvalue(), "label": i % 2, "file_name": f"{i}.png"}


def test_array_record_source_decodes_encoded_images(tmp_path):
    builder = _EncodedImages(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(file_format="array_record")
    src = stream.ShapedSource(
        builder.as_data_source(split="train"), image_size=(H, W), channels=3, num_classes=2
    )
    batches = _take(stream.HostStream(src, 4, seed=0), 3)
    for b in batches:
        assert set(b) == {"image", "label"} and b["image"].shape == (4, H, W, 3)
        np.testing.assert_array_equal(b["label"], b["image"][:, 0, 0, 1] % 2)
    # A local builder's records (decoded arrays) stream as data.load reads them.
    cfg = ml_collections.ConfigDict(dict(name="digits", tfds_dir=str(tmp_path / "tfds"), path=""))
    digits = stream.open_stream_source(cfg, "train", image_size=(8, 8), channels=1)
    arrays = data.load(cfg, "train")
    got = _take(stream.HostStream(digits, 16, seed=2, start_step=100), 1)[0]
    local, _ = order.process_part(order.step_indices(len(digits), 16, 2, 100), 0, 1)
    np.testing.assert_array_equal(got["image"], arrays["image"][local])
    np.testing.assert_array_equal(got["label"], arrays["label"][local])


def test_make_loader_stream_places_the_loader_batches_on_the_mesh(tmp_path):
    src = _source(_folder(tmp_path / "imgs"))
    mesh = parallel.make_mesh()
    cfg = ml_collections.ConfigDict(
        dict(seed=0, batch_size=8, prefetch=2, data=_cfg(tmp_path, workers=0, augment="none"))
    )
    streamed = data.make_loader(src, cfg, mesh, start_step=1)
    cfg.data.pipeline = "memory"
    memory = data.make_loader(src, cfg, mesh, start_step=1)
    try:
        assert isinstance(streamed, data.StreamLoader) and type(memory) is data.Loader
        for _ in range(3):
            a, b = next(streamed), next(memory)
            assert isinstance(a["image"], jax.Array) and a["image"].sharding == b["image"].sharding
            np.testing.assert_array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    finally:
        streamed.close()
        memory.close()
    cfg.data.pipeline = "disk"
    with pytest.raises(ValueError, match="data.pipeline must be one of"):
        data.make_loader(src, cfg, mesh)


@pytest.mark.slow
def test_training_on_the_stream_resumes_exactly(tmp_path):
    """The trainer on data.pipeline='stream' (one worker process): 3 steps, then a resumed run to
    6, logs the losses of an uninterrupted 6-step run."""
    import json

    from jaxpapers import config_lib, trainer

    def run(workdir, steps):
        overrides = dict(num_train_steps=steps, ckpt_every=3, log_every=1, batch_size=16)
        overrides.update({"data.pipeline": "stream", "data.workers": 1, "model.width": 8})
        config = config_lib.load("classifier:smoke", {k: str(v) for k, v in overrides.items()})
        trainer.train(config, str(workdir))
        with open(workdir / "metrics.jsonl") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}

    full = run(tmp_path / "full", 6)
    run(tmp_path / "resumed", 3)
    resumed = run(tmp_path / "resumed", 6)
    assert sorted(full) == sorted(resumed) == list(range(1, 7))
    assert [full[s] for s in range(4, 7)] == [resumed[s] for s in range(4, 7)]


def test_gan_paper_presets_stream_their_folders(tmp_path):
    """biggan_dgl:imagenet128 (class folders, centre crop) and stylegan2_dgl:ffhq256 (FFHQ's
    folder tree, no labels) build stream sources at the model resolution."""
    from jaxpapers import config_lib
    from jaxpapers.methods.biggan_dgl import inputs as biggan_inputs
    from jaxpapers.methods.stylegan2_dgl import inputs as sg2_inputs

    root = _folder(tmp_path / "imagenet", classes=2, per_class=2)
    config = config_lib.load("biggan_dgl:imagenet128", {"data.path": str(root)})
    src = biggan_inputs.make_source(config, "train")
    batch = stream._read(src, np.arange(len(src)))
    assert len(src) == 4 and src.num_classes == 2  # test_every=0: every image trains
    assert batch["image"].shape == (4, 128, 128, 3) and batch["label"].tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="model.num_classes=1"):
        biggan_inputs.make_source(
            config_lib.load(
                "biggan_dgl:imagenet128", {"data.path": str(root), "model.num_classes": "1"}
            ),
            "train",
        )
    config = config_lib.load("stylegan2_dgl:ffhq256", {"data.path": str(root)})
    src = sg2_inputs.make_source(config, "train")
    batch = stream._read(src, np.arange(len(src)))
    assert set(batch) == {"image"} and batch["image"].shape[1:] == (256, 256, 3)
