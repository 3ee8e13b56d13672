"""``model.dtype = "bfloat16"`` (layers/precision.py) for every method that has the switch.

Each test runs one train step in float32 and one in bfloat16 from the same state and batch
(`testing.check_mixed_precision_step`) and asserts: the new state keeps float32 params, optimizer
state and statistics; the loss agrees within 2 % and the whole state change (parameter update,
optimizer moments, running statistics) within 5 % in relative L2 norm. Why those limits:
bfloat16 keeps 8 significant bits (unit roundoff 2**-8 = 0.39 %); a forward/backward pass through
a few layers rounds every activation and gradient once or a few times, and independent roundings
add up to a few roundoffs (1-3 % measured on these tiny models), while a wrong policy (a bf16
loss or softmax, statistics in bf16, an update applied to rounded params) misses by far more or
changes the state's dtypes. The steps must also differ (the switch took effect) and run
convolutions/matmuls in bfloat16.
"""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from jaxpapers import config_lib, testing
from jaxpapers.layers import precision


def _config(method: str, arg: str):
    return config_lib.load_config_file(config_lib.config_path(method), arg)


def test_policy_casts_params_and_inputs_and_returns_float32():
    import flax.linen as nn
    import jax

    m = nn.Sequential([nn.Conv(4, (3, 3)), nn.relu, nn.Dense(3)])
    x = jnp.ones((2, 5, 5, 1))
    v = m.init(jax.random.key(0), x)
    y = precision.apply(m, v, x, dtype=jnp.bfloat16)
    assert y.dtype == jnp.float32
    np_ref = m.apply(v, x)
    assert float(jnp.max(jnp.abs(y - np_ref))) < 2e-2 * float(jnp.max(jnp.abs(np_ref)))

    def loss(p, keep=()):
        return jnp.sum(precision.apply(m, {"params": p}, x, dtype=jnp.bfloat16, keep=keep) ** 2)

    g = jax.grad(loss)(v["params"])
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(g))
    counts = precision.matmul_dtypes(jax.grad(loss), v["params"])
    assert set(counts) == {("conv_general_dilated", "bfloat16"), ("dot_general", "bfloat16")}
    kept = precision.matmul_dtypes(jax.grad(lambda p: loss(p, keep=("layers_2",))), v["params"])
    assert kept[("dot_general", "float32")] > 0 and kept[("dot_general", "bfloat16")] == 0
    # float32 is the plain apply, bit for bit.
    assert jnp.array_equal(precision.apply(m, v, x, dtype=jnp.float32), np_ref)


def test_bias_gradients_are_summed_in_float32():
    """A conv bias gradient sums over batch x positions (16 x 32 x 32 here): summed in bfloat16
    (XLA:CPU) it was 50-90 % off; `apply` adds Flax biases in float32 (`add_bias`)."""
    import flax.linen as nn
    import jax
    import numpy as np

    m = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(4, (3, 3))])
    x = jax.random.normal(jax.random.key(0), (16, 32, 32, 3))
    v = m.init(jax.random.key(1), x)

    def grads(dtype):
        f = lambda p: jnp.sum(precision.apply(m, {"params": p}, x, dtype=dtype) ** 2)
        return jax.grad(f)(v["params"])

    g32, g16 = grads(jnp.float32), grads(jnp.bfloat16)
    for layer in ("layers_0", "layers_2"):
        a, b = g32[layer]["bias"], g16[layer]["bias"]
        assert b.dtype == jnp.float32
        assert np.linalg.norm(b - a) / np.linalg.norm(a) < 2e-2, layer


def test_compute_dtype_names_and_the_legacy_flag():
    c = config_lib.ConfigDict(dict(dtype="bfloat16"))
    assert precision.compute_dtype(c) == jnp.bfloat16
    assert precision.compute_dtype(config_lib.ConfigDict(dict(bf16=True))) == jnp.bfloat16
    assert precision.compute_dtype(config_lib.ConfigDict()) == jnp.float32
    with pytest.raises(config_lib.ConfigError, match="model.dtype='float16'"):
        precision.compute_dtype(config_lib.ConfigDict(dict(dtype="float16")))


@pytest.mark.parametrize(
    "method,arg",
    [
        ("classifier", "smoke"),
        ("rat", "smoke,method_variant=sat"),
    ],
)
def test_bf16_step_close_to_f32_step(method, arg):
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(method, _config(method, arg))
    print(method, rel, metrics, dict(counts), max(leaves.values()))


@pytest.mark.slow
def test_biggan_dgl_bf16_step_close_to_f32_step():
    """Student stage 2 (G, D and the frozen teacher D in one step), 1 D step as the imagenet128
    preset. Adam's first update is lr * sign(g) (sign flips of near-zero gradients are not a
    precision error), so the test compares plain SGD updates: their relative error is the
    gradients'. Measured (phase 1): losses within 0.2 %, D updates within 2 %, G kernels within
    11 % (G's gradient crosses D and G). With the smoke preset's 2 D steps the G loss (computed
    after the D updates) came out 33 % apart: -1.97 (f32) vs -2.62 (bf16). Not a precision loss of
    the G loss itself: with the D learning rate at 0 the two agree to 0.3 % (5.626 vs 5.641); the
    two SGD updates of the untrained D move the G loss by -7.60 (f32) vs -8.26 (bf16), i.e. bf16
    reproduces that change to 8.7 % (like the 11 % of the leaf updates above), which is a large
    fraction of the small remainder. Measured by running this check with gan.num_d_steps=2 and
    optim.d.lr=0.0 vs the default D learning rate."""
    cfg = _config(
        "biggan_dgl",
        "smoke,teacher.steps=0,gan.num_d_steps=1,optim.g.name=sgd,optim.d.name=sgd",
    )
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "biggan_dgl", cfg, phase=2, metric_keys=("d_loss", "g_loss", "teacher_term")
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))


# Face recognition trains on scaled-cosine logits s * cos(theta) (ArcFace s = 64, CosFace
# s = 30): the bf16 rounding of the embedding (~0.4 % of cos theta) moves each logit by up to
# ~0.1-0.25, so the softmax-CE gradient of one step differs by ~10 % (measured 10.3 % for SynFace);
# the loss itself stays within 2 %.
FACE_TOLERANCES = dict(rtol_update=0.2, rtol_leaf=0.5)


def _random_batch(method: str, config):
    from jaxpapers import methods

    return testing.random_batch(methods.get(method).input_spec(config), int_high=4)


def test_stra_bf16_step_close_to_f32_step():
    """StRA block (local attention + hub routing), re-ID neck; fixbase phase off. The batch-hard
    triplet is off: its hardest-pair picks are discrete, and bf16 rounding of near-tied distances
    flips some (with it on, the stem kernel's update differed by 27 %; without, every leaf is
    within 3 %)."""
    cfg = _config("stra", "smoke,fixbase_steps=0,optim.name=sgd,triplet_weight=0.0")
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "stra", cfg, metric_keys=("ce", "diversity", "triplet")
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))


def test_from_occlusion_bf16_step_close_to_f32_step():
    """Phase 2 (mask branch trained, occluded inputs, OPP loss)."""
    cfg = _config("from_occlusion", "smoke,clean_steps=0")
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "from_occlusion",
        cfg,
        batch=_random_batch("from_occlusion", cfg),
        metric_keys=("loss_cls", "loss_pred"),
        **FACE_TOLERANCES,
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))


@pytest.mark.slow
def test_synface_recognition_bf16_step_close_to_f32_step():
    """The recognition phase (identity synthesis by the float32 generator, then the LResNet in
    bfloat16); the StyleGAN2 phase has no bfloat16 mode."""
    import numpy as np

    from jaxpapers.methods.synface import inputs, steps, synthesis

    cfg = _config("synface", "smoke")
    s = cfg.synth
    plan = synthesis.synthesis_plan(s.num_ids, s.per_id, s.seed, s.mixup)
    r, c, ids = cfg.gen.resolution, cfg.gen.img_channels, cfg.data.n_train_ids
    rng = np.random.default_rng(0)
    real = {
        "image": rng.integers(0, 256, (ids * 2, r, r, c), dtype=np.uint8),
        "label": np.repeat(np.arange(ids), 2).astype(np.int32),
    }
    rows = inputs.pair_rows(plan, real, 0)
    batch = {k: v[: cfg.batch_size] for k, v in rows.items()}
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "synface",
        cfg,
        phase=steps.Phase(1, False),
        batch=batch,
        metric_keys=("rec_loss",),
        **FACE_TOLERANCES,
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))


MIXED_PRECISION_METHODS = (
    "classifier",
    "rat",
    "hedge_defense",
    "from_occlusion",
    "stra",
    "biggan_dgl",
    "synface",
    "unifacegan",
)


@pytest.mark.parametrize("method", MIXED_PRECISION_METHODS)
def test_config_declares_model_dtype(method):
    """The key is in the locked defaults (float32), so the override works and typos fail."""
    assert config_lib.load(method).model.dtype == "float32"
    c = config_lib.load(method, {"model.dtype": "bfloat16"})
    assert precision.compute_dtype(c.model) == jnp.bfloat16
    with pytest.raises(config_lib.ConfigKeyError):
        config_lib.load(method, {"model.dtyp": "bfloat16"})


@pytest.mark.slow
def test_unifacegan_bf16_step_close_to_f32_step():
    """G (RACN res-blocks) and the multi-scale D; SGD so the update error is the gradients'."""
    cfg = _config("unifacegan", "smoke,optim.g.name=sgd,optim.d.name=sgd")
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "unifacegan", cfg, metric_keys=("g_loss", "d_loss")
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))


def test_hedge_defense_trains_its_base_model_in_the_configured_dtype():
    from jaxpapers.methods.hedge_defense import base_model

    cfg = config_lib.load("hedge_defense", {"model.dtype": "bfloat16"})
    rat = config_lib.load_config_file(config_lib.config_path("rat"), base_model._train_arg(cfg))
    assert rat.model.dtype == "bfloat16" and rat.method_variant == cfg.base.variant
    default = config_lib.load("hedge_defense")
    assert "dtype" not in base_model._train_arg(default)  # runs made before stay the same run
