"""Re-ID pieces of StRA: the Market-1501 protocol on a hand-made gallery, the folder reader,
the batch-hard triplet loss, and the converter's name mapping."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxpapers.methods.stra import convert, reid, steps


def test_cmc_map_hand_made_gallery():
    g_pids = np.array([1, 2, 1, 3, 1])
    g_cams = np.array([0, 1, 1, 1, 2])
    q_pids, q_cams = np.array([1, 2, 3]), np.array([0, 1, 0])
    dist = np.array(
        [
            [0.0, 1.0, 2.0, 3.0, 4.0],  # q1: same-cam pid1 removed -> [2, 1, 3, 1]: AP (1/2+2/4)/2
            [5.0, 0.0, 1.0, 2.0, 3.0],  # q2: its only match shares its camera -> query skipped
            [3.0, 2.0, 1.0, 0.0, 4.0],  # q3: pid3 ranked first -> AP 1
        ]
    )
    cmc, mean_ap = reid.cmc_map(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    np.testing.assert_allclose(cmc, [0.5, 1.0, 1.0, 1.0, 1.0])
    assert mean_ap == pytest.approx((0.5 + 1.0) / 2)


def test_cmc_map_no_valid_query_raises():
    with pytest.raises(ValueError, match="No query"):
        reid.cmc_map(np.zeros((1, 1)), [1], [1], [0], [0])


def test_euclidean_distances_of_normalised_features():
    d = reid.euclidean_distances(np.array([[3.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(d, [[0.0, 2.0]], atol=1e-12)


def test_read_market1501_layout(tmp_path):
    for split, names in {
        "bounding_box_train": [
            "0002_c1s1_000451_03.jpg",
            "0007_c2s3_0701_01.jpg",
            "0002_c3s1_000551_01.jpg",
        ],
        "query": ["0002_c2s1_000301_00.jpg"],
        "bounding_box_test": [
            "-1_c1s1_000401_03.jpg",
            "0000_c1s1_0_01.jpg",
            "0002_c1s1_000801_01.jpg",
        ],
    }.items():
        (tmp_path / split).mkdir()
        for n in names:
            Image.new("RGB", (64, 128), (10, 20, 30)).save(tmp_path / split / n)
    tr = reid.read_market1501(str(tmp_path), "train", (32, 16))
    assert tr["image"].shape == (3, 32, 16, 3) and tr["image"].dtype == np.uint8
    assert tr["pid"].tolist() == [2, 2, 7] and tr["camid"].tolist() == [0, 2, 1]
    assert tr["label"].tolist() == [0, 0, 1]
    gal = reid.read_market1501(str(tmp_path), "gallery", (32, 16))
    assert gal["pid"].tolist() == [0, 2]  # junk (-1) skipped, distractor (0) kept
    with pytest.raises(FileNotFoundError, match="data.path"):
        reid.read_market1501(str(tmp_path / "missing"), "train")


def test_batch_hard_triplet():
    feat = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [9.0, 9.0]])
    labels = jnp.array([0, 0, 1, 2])
    # Anchors 0 and 1 have a positive; 2 and 3 do not (skipped).
    # a0: pos 1.0, neg min(3, |(9,9)|) = 3 -> relu(1 - 3 + 0.3) = 0
    # a1: pos 1.0, neg |(1,0)-(0,3)| = sqrt(10) -> 0
    assert float(steps.batch_hard_triplet(feat, labels, 0.3)) == pytest.approx(0.0)
    # With margin 2.5: a0 -> 0.5, a1 -> 3.5 - sqrt(10).
    want = (0.5 + 3.5 - np.sqrt(10.0)) / 2
    assert float(steps.batch_hard_triplet(feat, labels, 2.5)) == pytest.approx(want, rel=1e-5)


def test_converter_name_mapping():
    assert convert._target("layer4.0.conv2.mask_conv.3.weight") == (
        "params",
        "layer4_0/conv2/mask_conv2",
        "weight",
    )
    assert convert._target("layer4.2.conv2.moe.bn2.running_var") == (
        "batch_stats",
        "layer4_2/conv2/moe/bn2",
        "var",
    )
    assert convert._target("layer3.0.downsample.1.running_mean") == (
        "batch_stats",
        "layer3_0/downsample_bn",
        "mean",
    )
    assert convert._target("global_avg_pool.1.weight") == ("params", "neck_conv", "weight")
    assert convert._target("bn1.num_batches_tracked") is None


def test_load_pretrained_copies_matching_tensors_only(tmp_path):
    """Non-strict conversion (official init_pretrained_weights): matching names and shapes only."""
    import jax

    from jaxpapers.methods.stra.model import StRAResNet

    model = StRAResNet(
        num_classes=3,
        stage_sizes=(1, 1),
        width=8,
        attn_stages=(1,),
        heads=4,
        ratio=2,
        stem="small",
        neck_dim=0,
    )
    init = jax.jit(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)), train=False))
    variables = jax.device_get(init(jax.random.key(0)))
    r = np.random.default_rng(0)
    sd = {
        "conv1.weight": r.normal(size=(8, 1, 3, 3)).astype(np.float32),
        "bn1.running_var": np.full((8,), 2.0, np.float32),
        "layer1.0.conv1.weight": np.ones((5, 5, 1, 1), np.float32),  # wrong shape: skipped
        "fc.weight": np.ones((1000, 2048), np.float32),
    }  # no such module: skipped
    np.savez(tmp_path / "sd.npz", **sd)
    out = steps.load_pretrained(variables, str(tmp_path / "sd.npz"))
    np.testing.assert_array_equal(
        out["params"]["conv1"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(out["batch_stats"]["bn1"]["var"], 2.0)
    np.testing.assert_array_equal(
        out["params"]["layer1_0"]["conv1"]["kernel"],
        variables["params"]["layer1_0"]["conv1"]["kernel"],
    )
    with pytest.raises(FileNotFoundError, match="pretrained_npz"):
        steps.load_pretrained(variables, str(tmp_path / "missing.npz"))


def test_market1501_stream_source_matches_the_arrays(tmp_path):
    """The market1501 preset streams bounding_box_train: same images and labels, decoded lazily."""
    from jaxpapers import config_lib
    from jaxpapers.data import stream
    from jaxpapers.methods.stra import inputs

    (tmp_path / "bounding_box_train").mkdir()
    for k, n in enumerate(["0002_c1s1_000451_03.jpg", "0007_c2s3_0701_01.jpg", "0009_c3_1.jpg"]):
        Image.new("RGB", (64, 128), (10 * k, 20, 30)).save(tmp_path / "bounding_box_train" / n)
    config = config_lib.load("stra:market1501", {"data.path": str(tmp_path)})
    assert config.data.pipeline == "stream"
    src = inputs.make_source(config, "train")
    assert isinstance(src, stream.FileImageSource) and len(src) == 3
    got = stream._read(src, np.arange(3))
    ref = reid.read_market1501(str(tmp_path), "train", (256, 128))
    np.testing.assert_array_equal(got["image"], ref["image"])
    np.testing.assert_array_equal(got["label"], ref["label"])
