"""SynFace synthesis: plan, new identity codes, builder round-trip, row determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.methods.synface import losses, steps, synthesis


@pytest.fixture(scope="module")
def smoke():
    config = config_lib.load_config_file("configs/synface.py", "smoke")
    state = steps.init_state(jax.random.key(0), config)
    return config, jax.device_get(state.gen.g_ema)


def test_plan_follows_official_rules():
    p = synthesis.synthesis_plan(12, 5, seed=10, mixup=True)
    assert len(p["syn_seed"]) == 60 and len(set(p["syn_seed"])) == 60
    np.testing.assert_array_equal(p["syn_id_a"], np.repeat(np.arange(12), 5))
    assert np.all(p["syn_id_a"] != p["syn_id_b"])
    for i in range(12):  # distinct partners within a class
        assert len(set(p["syn_id_b"][p["syn_id_a"] == i])) == 5
    grid = set(np.round(losses.mixup_grid(), 2))
    assert set(np.round(p["syn_phi"], 2)).issubset(grid) and len(set(p["syn_phi"])) > 5
    q = synthesis.synthesis_plan(12, 5, seed=10, mixup=False)
    assert np.all(q["syn_phi"] == 1.0)
    again = synthesis.synthesis_plan(12, 5, seed=10, mixup=True)
    for k in p:
        np.testing.assert_array_equal(p[k], again[k])


def test_new_identity_codes_differ_from_training_codes(smoke):
    config, g = smoke
    train = np.asarray(g["id_codes"])
    new = np.asarray(synthesis.identity_codes(g, config))
    assert new.shape == (config.synth.num_ids, train.shape[1])
    d = np.linalg.norm(new[:, None] - train[None], axis=-1)
    spread = np.linalg.norm(train[:, None] - train[None], axis=-1)
    assert d.min() > 1e-3 * spread.max()
    # Codes follow the learned distribution: a large draw matches the training mean/covariance.
    big = np.asarray(synthesis.new_identity_codes(jnp.asarray(train), jax.random.key(3), 20000))
    np.testing.assert_allclose(big.mean(0), train.mean(0), atol=0.05)
    np.testing.assert_allclose(np.cov(big.T), np.cov(train.T), atol=0.08)


def test_builder_round_trip_and_row_determinism(smoke, tmp_path):
    config, g = smoke
    s = config.synth
    plan = synthesis.synthesis_plan(s.num_ids, s.per_id, s.seed, True)
    r = config.gen.resolution
    gen_cfg = {"num_ids": s.num_ids, "per_id": s.per_id, "truncation_psi": s.truncation_psi}
    synthesis.write_synthetic_set(
        str(tmp_path), lambda: synthesis.plan_chunks(g, config, plan, batch=7), (r, r, 1), gen_cfg
    )
    back = synthesis.read_synthetic_set(str(tmp_path), (r, r, 1))
    order = np.argsort(back["seed"])
    np.testing.assert_array_equal(back["label_a"][order], plan["syn_id_a"])
    np.testing.assert_array_equal(back["label_b"][order], plan["syn_id_b"])
    np.testing.assert_allclose(back["weight_a"][order], plan["syn_phi"])
    np.testing.assert_allclose(back["weight_b"][order], 1.0 - plan["syn_phi"], atol=1e-6)
    assert back["generation"] == gen_cfg
    # The stored image of a row == the image the train step generates for that row.
    codes = synthesis.identity_codes(g, config)
    rows = {k: v[:5] for k, v in plan.items()}
    online = np.asarray(synthesis.to_uint8(synthesis.generate(g, codes, rows, config)))
    np.testing.assert_array_equal(back["image"][order][:5], online)
    assert back["image"].std() > 0


def test_controlled_variation_keeps_the_fixed_factors(smoke):
    config, g = smoke
    codes = synthesis.identity_codes(g, config)
    n = 4
    rows = {
        "syn_id_a": np.zeros(n, np.int32),
        "syn_id_b": np.ones(n, np.int32),
        "syn_phi": np.ones(n, np.float32),
        "syn_seed": np.arange(n, dtype=np.int32),
    }
    anchor = np.full(n, 99, np.int32)
    num_ws = 2 * int(np.log2(config.gen.resolution)) - 2
    fixed = synthesis.generate(g, codes, rows, config, jnp.zeros(num_ws, bool), anchor)
    np.testing.assert_allclose(np.asarray(fixed), np.asarray(fixed[:1]).repeat(n, 0), atol=1e-6)
    free = synthesis.generate(g, codes, rows, config, jnp.ones(num_ws, bool), anchor)
    np.testing.assert_allclose(
        np.asarray(free), np.asarray(synthesis.generate(g, codes, rows, config)), atol=1e-6
    )
    assert np.abs(np.asarray(free[0]) - np.asarray(free[1])).max() > 1e-4
