"""Tests for jaxpapers.layers.face_backbones (shapes, PReLU, BN modes, paper sizes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.layers import face_backbones as fb

TINY = dict(widths=(4, 4, 8, 8, 16), depths=(1, 2, 1, 1), embed_dim=8)


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def test_prelu_formula():
    x = jnp.array([[-2.0, -1.0], [0.5, 3.0]])
    m = fb.PReLU()
    params = m.init(jax.random.key(0), x)
    np.testing.assert_allclose(m.apply(params, x), [[-0.5, -0.25], [0.5, 3.0]])
    params = {"params": {"slope": jnp.array([0.1, 2.0])}}
    np.testing.assert_allclose(m.apply(params, x), [[-0.2, -2.0], [0.5, 3.0]])


@pytest.mark.parametrize(
    "factory,hw,c5",
    [
        (fb.lresnet50e_ir, (112, 96), (7, 6)),
        (fb.iresnet50, (112, 112), (7, 7)),
        (fb.lresnet50e_ir, (56, 48), (4, 3)),
    ],
)
def test_tiny_shapes(factory, hw, c5):
    """Feature-map pyramid sizes follow PyTorch's padding=1 arithmetic (shape-only, fast)."""
    net = factory(**TINY)
    x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
    v = jax.eval_shape(lambda x: net.init({"params": jax.random.key(0)}, x), x)
    emb, feats = jax.eval_shape(lambda v, x: net.apply(v, x, return_features=True), v, x)
    assert emb.shape == (2, 8)
    h, w = hw
    expect = [((h + 1) // 2, (w + 1) // 2)]
    for _ in range(3):
        expect.append(((expect[-1][0] + 1) // 2, (expect[-1][1] + 1) // 2))
    assert [f.shape[1:3] for f in feats] == expect
    assert feats[-1].shape[1:3] == c5 == fb.feature_hw(hw)
    assert [f.shape[-1] for f in feats] == [4, 8, 8, 16]


def test_train_mode_updates_bn_and_eval_is_deterministic():
    net = fb.lresnet50e_ir(**TINY)
    x = jax.random.normal(jax.random.key(1), (4, 24, 20, 3))
    v = jax.jit(lambda x: net.init({"params": jax.random.key(0)}, x))(x)
    train = jax.jit(
        lambda v, x, k: net.apply(v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"])
    )
    emb_a, upd = train(v, x, jax.random.key(2))
    emb_b, _ = train(v, x, jax.random.key(3))
    assert np.all(np.isfinite(emb_a))
    assert not np.allclose(emb_a, emb_b)  # dropout 0.5 is active in train mode
    changed = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), v["batch_stats"], upd["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(changed))
    ev = jax.jit(lambda v, x: net.apply(v, x))
    np.testing.assert_array_equal(ev(v, x), ev(v, x))
    # Eval on a single image equals eval in a batch (running statistics, no batch coupling).
    np.testing.assert_allclose(ev(v, x)[:1], ev(v, x[:1]), atol=1e-5)


def test_paper_sizes_and_heads():
    """Full-size nets via eval_shape (no compute): C5 sizes and parameter counts."""
    x96 = jax.ShapeDtypeStruct((1, 112, 96, 3), jnp.float32)
    x112 = jax.ShapeDtypeStruct((1, 112, 112, 3), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    l50 = jax.eval_shape(lambda x: fb.lresnet50e_ir().init(keys, x), x96)
    r50 = jax.eval_shape(lambda x: fb.iresnet50().init(keys, x), x112)
    r100 = jax.eval_shape(lambda x: fb.iresnet100().init(keys, x), x112)
    # FC 512*7*6 -> 512 in LResNet50E-IR, 512*7*7 -> 512 in IResNet.
    assert l50["params"]["head"]["fc"]["kernel"].shape == (21504, 512)
    assert r50["params"]["head"]["fc"]["kernel"].shape == (25088, 512)
    # IResNet's final BN has no learnable scale; its input BN is per channel.
    assert "scale" not in r50["params"]["head"]["bn_out"]
    assert r50["params"]["head"]["bn_in"]["scale"].shape == (512,)
    assert l50["params"]["head"]["bn_in"]["scale"].shape == (21504,)
    # insightface reports 43.6M (r50) and 65.2M (r100) parameters.
    assert abs(_count(r50["params"]) / 1e6 - 43.6) < 0.1
    assert abs(_count(r100["params"]) / 1e6 - 65.2) < 0.2
    n_units = sum(1 for k in l50["params"]["backbone"] if k.startswith("stage"))
    assert n_units == 24


def test_bad_input():
    with pytest.raises(ValueError, match="NHWC"):
        fb.lresnet50e_ir(**TINY).init(jax.random.key(0), jnp.zeros((112, 96, 3)))
    with pytest.raises(ValueError, match="depth"):
        fb.iresnet(42)
