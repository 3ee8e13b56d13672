"""FROM: the standard jit test (both phases in one run) and the phase semantics of the step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib, testing
from jaxpapers.methods import from_occlusion as fro
from jaxpapers.methods.from_occlusion import steps


def _smoke(**kw):
    arg = ",".join(["smoke"] + [f"{k}={v}" for k, v in kw.items()])
    return config_lib.load_config_file("configs/from_occlusion.py", arg)


def _batches(config, n):
    # Tests never read the ORL folder: random uint8 faces with labels in range.
    spec = fro.input_spec(config)
    return [testing.random_batch(spec, seed=i, int_high=config.model.num_classes) for i in range(n)]


def test_from_occlusion_train_step_jit():
    """Step 0 is phase 1 (clean baseline), step 1 is phase 2 (FROM) of the same compiled step."""
    config = _smoke()
    _, metrics = testing.check_train_step_jit(
        "from_occlusion", config, steps=2, batches=_batches(config, 2)
    )
    assert [float(m["phase"]) for m in metrics] == [1.0, 2.0]
    assert float(metrics[0]["occluded"]) == 0.0 and float(metrics[0]["loss_pred"]) > 0


@pytest.fixture(scope="module")
def three_steps():
    config = _smoke(clean_steps=1, num_train_steps=3)
    state = steps.init_state(jax.random.key(0), config)
    fn = jax.jit(lambda s, b: steps.train_step(s, b, config=config))
    states, metrics = [state], []
    for b in _batches(config, 2):
        state, m = fn(state, jax.tree.map(jnp.asarray, b))
        states.append(state)
        metrics.append(m)
    return config, states, metrics


def _sub(tree, name):
    return jax.device_get(tree["net"][name])


def test_phase_semantics(three_steps):
    config, (s0, s1, s2), (m0, m1) = three_steps
    # Phase 1: mask branch frozen (updates zeroed, like PyTorch skipping grad-less params),
    # backbone/classifier trained, baseline snapshot == current network.
    for name in steps.MASK_BRANCH:
        for a, b in zip(
            jax.tree.leaves(_sub(s0.params, name)),
            jax.tree.leaves(_sub(s1.params, name)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(
        jax.tree.leaves(_sub(s0.params, "backbone"))[0],
        jax.tree.leaves(_sub(s1.params, "backbone"))[0],
    )
    for a, b in zip(
        jax.tree.leaves(s1.baseline["params"]), jax.tree.leaves(s1.params["net"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(s0.opt_mask), jax.tree.leaves(s1.opt_mask), strict=True):
        np.testing.assert_array_equal(a, b)  # phase-2 optimizer untouched in phase 1
    # Phase 2: the mask branch and OPP learn, the baseline stays frozen, ~2/3 images occluded.
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(_sub(s1.params, "mask_decoder")),
            jax.tree.leaves(_sub(s2.params, "mask_decoder")),
            strict=True,
        )
    ]
    assert any(changed)
    for a, b in zip(jax.tree.leaves(s1.baseline), jax.tree.leaves(s2.baseline), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(m0["phase"]) == 1.0 and float(m1["phase"]) == 2.0
    assert float(m1["occluded"]) > 0.2
    np.testing.assert_allclose(
        m1["loss"], m1["loss_cls"] + config.loss.weight_pred * m1["loss_pred"], rtol=1e-5
    )
    np.testing.assert_allclose(m0["loss"], m0["loss_cls"], rtol=1e-6)


def test_load_init_takes_all_but_the_pattern_predictor(three_steps):
    """init_from: network (but the OPP), classifier, BN statistics loaded; baseline = loaded."""
    config, (s0, _, s2), _ = three_steps
    tree = jax.device_get({"params": s2.params, "batch_stats": s2.batch_stats, "step": s2.step})
    loaded = fro.load_init(s0, tree, config)

    def same(a, b):
        return all(
            np.array_equal(x, y)
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    for name in ("backbone", "head", "fpn", "mask_decoder"):
        assert same(_sub(loaded.params, name), _sub(s2.params, name))
    assert same(_sub(loaded.params, "opp"), _sub(s0.params, "opp"))
    assert not same(_sub(s2.params, "opp"), _sub(s0.params, "opp"))
    assert same(loaded.params["cls"], s2.params["cls"])
    assert same(loaded.batch_stats, s2.batch_stats)
    assert same(loaded.baseline["params"], loaded.params["net"])
    assert same(loaded.opt_mask, s0.opt_mask) and int(loaded.step) == 0
    with pytest.raises(ValueError, match="params/net"):
        fro.load_init(s0, {"params": {}}, config)
    bad = jax.tree.map(lambda a: a[..., :1] if a.ndim else a, tree)
    with pytest.raises(ValueError, match="shape"):
        fro.load_init(s0, bad, config)
