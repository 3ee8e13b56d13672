"""Classifier ResNets of the robustness literature: exact parameter counts and block structure."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.layers import resnet


def _count(module, hw=32) -> tuple[int, int]:
    """(trainable parameters, BN running-statistics entries) from shapes only (no compute)."""
    v = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, hw, hw, 3))))
    size = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))
    return size(v["params"]), size(v["batch_stats"])


@pytest.mark.parametrize(
    "arch, params",
    [
        # RobustBench / TRADES counts for 10 classes (PyTorch `sum(p.numel())`, BN affine included).
        ("wrn34_10", 46_160_474),
        ("wrn28_10", 36_479_194),
        ("preact_resnet18", 11_172_170),
    ],
)
def test_parameter_counts_match_the_literature(arch, params):
    cfg = ml_collections.ConfigDict(dict(arch=arch, num_classes=10, width=64))
    n_params, n_stats = _count(resnet.build(cfg))
    assert n_params == params
    assert n_stats > 0  # BN running mean/var live in batch_stats, not in the parameter count


def test_wide_resnet_layout_and_forward():
    """WRN-10-1: n = 1 block per group, widths 16/32/64, strides 1/2/2, 1x1 shortcuts where the
    width changes (all three groups, since the stem has 16 = 16·k channels only for k = 1)."""
    model = resnet.build(
        ml_collections.ConfigDict(dict(arch="wide_resnet", num_classes=7, depth=10, widen_factor=2))
    )
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    variables = model.init(jax.random.key(0), x)
    p = variables["params"]
    blocks = sorted(k for k in p if k.startswith("PreActBlock"))
    assert len(blocks) == 3
    widths = [p[b]["Conv_1"]["kernel"].shape[-1] for b in blocks]
    assert widths == [32, 64, 128]
    # Every block changes the width here, so each has the 1x1 shortcut conv (Conv_0 is 1x1).
    assert all(p[b]["Conv_0"]["kernel"].shape[:2] == (1, 1) for b in blocks)
    assert p["Conv_0"]["kernel"].shape == (3, 3, 3, 16)  # stem to 16 channels
    np.testing.assert_array_equal(np.asarray(p["Dense_0"]["bias"]), 0.0)
    logits, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (2, 7) and np.all(np.isfinite(np.asarray(logits)))
    # Strides 1/2/2: the last block works at 16 / 4 = 4 pixels.
    _, inter = model.apply(variables, x, capture_intermediates=lambda m, _: m.name == blocks[-1])
    assert inter["intermediates"][blocks[-1]]["__call__"][0].shape == (2, 4, 4, 128)


def test_bad_depth_and_arch_fail_clearly():
    bad = ml_collections.ConfigDict(
        dict(arch="wide_resnet", num_classes=10, depth=30, widen_factor=1)
    )
    with pytest.raises(ValueError, match="6n \\+ 4"):
        resnet.build(bad).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="wrn34_10"):
        resnet.build(ml_collections.ConfigDict(dict(arch="wrn34", num_classes=10)))


def test_rat_wrn34_preset_and_trades_recipe():
    c = config_lib.load_config_file("configs/rat.py", "cifar10_wrn34")
    spe = 50000 // 128
    assert (c.model.arch, c.batch_size, c.method_variant) == ("wrn34_10", 128, "rat")
    assert c.optim.weight_decay == 5e-4 and c.optim.momentum == 0.9 and c.optim.lr == 0.1
    assert c.optim.milestones == (100 * spe, 150 * spe) and c.num_train_steps == 200 * spe
    assert (c.attack.eps, c.attack.step_size, c.attack.num_steps) == (8 / 255, 2 / 255, 10)
    t = config_lib.load_config_file("configs/rat.py", "cifar10_wrn34,method_variant=trades")
    assert t.method_variant == "trades" and t.optim.weight_decay == 2e-4
    assert t.num_train_steps == 76 * spe and t.optim.milestones == (74 * spe,)
    assert (t.attack.eps, t.trades.step_size, t.trades.num_steps, t.trades.beta) == (
        0.031,
        0.007,
        10,
        6.0,
    )
    # The preact18 preset is unchanged by the shared branch.
    p = config_lib.load_config_file("configs/rat.py", "cifar10_preact18,method_variant=trades")
    assert p.model.arch == "preact_resnet18" and p.optim.weight_decay == 5e-4
