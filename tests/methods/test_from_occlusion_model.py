"""FROM network shapes (paper sizes via eval_shape), variants and the FPN upsampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.lib import occlusion as oc
from jaxpapers.methods.from_occlusion.model import FROMNet, upsample2_to


def _shapes(net, hw):
    x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    v = jax.eval_shape(lambda x: net.init(keys, x), x)
    out = jax.eval_shape(lambda v, x: net.apply(v, x), v, x)
    return v, out


def test_paper_model_shapes():
    net = FROMNet(num_patterns=oc.num_patterns(5))
    v, out = _shapes(net, (112, 96))
    assert out["mask"].shape == (2, 7, 6, 512)  # same shape as C5
    assert out["pattern_logits"].shape == (2, 226)
    assert out["emb"].shape == out["emb_masked"].shape == (2, 512)
    p = v["params"]
    assert p["opp"]["fc"]["kernel"].shape == (512 * 7 * 6, 226) and "bias" not in p["opp"]["fc"]
    assert p["fpn"]["P3_2"]["kernel"].shape == (3, 3, 256, 256)
    assert p["mask_decoder"]["conv2"]["kernel"].shape == (3, 3, 256, 512)


@pytest.mark.parametrize("variant,mask_shape", [("2d", (2, 4, 3, 16)), ("fc", (2, 8))])
def test_ablation_variants(variant, mask_shape):
    net = FROMNet(
        widths=(4, 4, 8, 8, 16),
        depths=(1, 1, 1, 1),
        embed_dim=8,
        fpn_features=8,
        num_patterns=10,
        variant=variant,
    )
    _, out = _shapes(net, (56, 48))
    assert out["mask"].shape == mask_shape
    assert out["pattern_logits"].shape == (2, 10)


def test_small_forward_mask_range_and_2d_repeat():
    net = FROMNet(
        widths=(4, 4, 8, 8, 16),
        depths=(1, 1, 1, 1),
        embed_dim=8,
        fpn_features=8,
        num_patterns=10,
        variant="2d",
    )
    x = jax.random.normal(jax.random.key(0), (2, 32, 24, 3))
    v = jax.jit(lambda x: net.init({"params": jax.random.key(0, impl="rbg")}, x))(x)
    out = jax.jit(lambda v, x: net.apply(v, x))(v, x)
    m = np.asarray(out["mask"])
    assert m.shape == (2, 2, 2, 16) and np.all((m > 0) & (m < 1))
    np.testing.assert_array_equal(m, np.repeat(m[..., :1], 16, -1))


def test_upsample_matches_torch_nearest():
    x = jnp.arange(12.0).reshape(1, 4, 3, 1)
    up = upsample2_to(x, (7, 6))[0, ..., 0]
    rows, cols = np.arange(7) // 2, np.arange(6) // 2  # torch nearest x2: src = floor(dst / 2)
    np.testing.assert_array_equal(up, np.asarray(x[0, ..., 0])[rows][:, cols])
