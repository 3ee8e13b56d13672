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
    "stylegan2_dgl",
    "trace_vidsgg",
    "faceanime",
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


# StyleGAN2 (stylegan2_dgl): the official num_fp16_res layout, here at 16x16 so that two blocks
# (8x8, 16x16) run in bfloat16 and the 4x4 block, the mapping network, the style affines and D's
# epilogue in float32.
SG2 = "smoke,model.resolution=16"


@pytest.mark.slow
def test_stylegan2_dgl_bf16_step_close_to_f32_step():
    """Student stage 2 with both lazy regularizers: G main + the teacher-D term, path length, D
    main, R1 (double backward through `stylegan2_ops.conv2d`'s matmul weight gradients), the G
    EMA; SGD, so the update error is the gradients' (Adam's first update is lr * sign(g)). Same
    limits as the other GANs' cases (2 % on the losses and penalties, 5 % on the whole update):
    the bfloat16 blocks round every activation and gradient a few times at 2**-8."""
    from jaxpapers.methods.stylegan2_dgl import steps

    cfg = _config("stylegan2_dgl", SG2 + ",optim.g.name=sgd,optim.d.name=sgd")
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "stylegan2_dgl",
        cfg,
        phase=steps.Phase(2, True, True),
        metric_keys=("g_loss", "d_loss", "teacher_term", "r1", "pl"),
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))
    # The float32 part of the layout (4x4 blocks) still runs float32 convolutions.
    assert counts[("conv_general_dilated", "float32")] > 0
    assert counts[("conv_general_dilated", "bfloat16")] > 0


def test_stylegan2_bf16_layout_is_the_official_num_fp16_res():
    """Which parameters stay float32: stylegan2-ada-pytorch's fp16_resolution =
    max(2 ** (log2(res) + 1 - num_fp16_res), 8), the mapping network and the style affines."""
    import re

    from jaxpapers.methods.stylegan2_dgl import model

    def kept(arg, name, net):
        g, d = model.f32_params(_config("stylegan2_dgl", arg))
        return any(re.search(p, name) for p in (g if net == "g" else d))

    assert model.bf16_resolution(_config("stylegan2_dgl", "ffhq256")) == 32
    assert model.bf16_resolution(_config("stylegan2_dgl", "ffhq1024")) == 128
    assert model.bf16_resolution(_config("stylegan2_dgl", "smoke")) == 8
    assert model.bf16_resolution(_config("stylegan2_dgl", "ffhq256,model.bf16_res=9")) == 8
    for name, f32 in [
        ("synthesis/b16_conv1/weight", True),
        ("synthesis/b32_conv0/weight", False),
        ("synthesis/b256_torgb/bias", False),
        ("synthesis/b32_conv0/mod_weight", True),
        ("synthesis/b64_torgb/mod_bias", True),
        ("synthesis/const", True),
        ("mapping/fc0/weight", True),
    ]:
        assert kept("ffhq256", name, "g") == f32, name
    for name, f32 in [
        ("b256_fromrgb/weight", False),
        ("b32_skip/weight", False),
        ("b16_conv0/weight", True),
        ("b4_conv/weight", True),
        ("b4_out/bias", True),
    ]:
        assert kept("ffhq256", name, "d") == f32, name
    assert kept("ffhq256,model.bf16_res=0", "synthesis/b256_conv1/weight", "g")
    assert kept("ffhq256,model.bf16_res=0", "b256_conv0/weight", "d")


def test_stylegan2_blocks_compute_in_the_layout_dtypes():
    """Under the policy each layer computes in its weight's dtype: at 16x16 with bf16_res=1
    only the 16x16 blocks return bfloat16; the G image, D's minibatch-std and logits are
    float32."""
    import jax

    from jaxpapers.methods.stylegan2_dgl import model, steps

    cfg = _config("stylegan2_dgl", SG2 + ",model.bf16_res=1,model.dtype=bfloat16")
    g_net, d_net = model.make_nets(cfg, "teacher")
    state = jax.jit(lambda k: steps.init_state(k, cfg))(jax.random.key(0))
    pol = steps.policy(cfg)
    ws = g_net.apply({"params": state.teacher.g}, jnp.ones((4, 16)), method=g_net.mapping)
    common = dict(capture_intermediates=True, mutable=["intermediates"])
    img, g_mid = jax.jit(
        lambda p, ws: precision.apply(
            g_net,
            {"params": p},
            ws=ws,
            dtype=pol.dtype,
            keep=pol.g_keep,
            rngs={"noise": jax.random.key(1)},
            method=g_net.synthesis,
            **common,
        )
    )(state.teacher.g, ws)
    logits, d_mid = jax.jit(
        lambda p, x: precision.apply(
            d_net, {"params": p}, img=x, dtype=pol.dtype, keep=pol.d_keep, **common
        )
    )(state.teacher.d, img)
    assert img.dtype == logits.dtype == jnp.float32
    out = {
        **{
            f"g/{k}": v["__call__"][0].dtype
            for k, v in g_mid["intermediates"]["synthesis"].items()
            if k != "__call__"
        },
        **{
            f"d/{k}": v["__call__"][0].dtype
            for k, v in d_mid["intermediates"].items()
            if k != "__call__"
        },
    }
    assert out["g/b16_conv0"] == out["g/b16_torgb"] == out["d/b16_fromrgb"] == jnp.bfloat16
    assert out["d/b16_conv1"] == out["d/b16_skip"] == jnp.bfloat16
    for name in ("g/b4_conv1", "g/b8_conv1", "g/b8_torgb", "d/b8_conv0", "d/b4_conv", "d/b4_out"):
        assert out[name] == jnp.float32, name


def test_stylegan2_conv2d_matmul_weight_grad_in_bfloat16_to_second_order():
    """`stylegan2_ops.conv2d` (CPU: weight gradient as per-tap matmuls accumulated in float32)
    on bfloat16 operands, to second order as R1 takes it: gradients keep the operands' dtype,
    are as close to the float32 gradients as XLA's native bfloat16 convolution's, and within
    1 % (measured 0.3-0.4 %: the inputs' rounding; each weight-gradient entry sums 2 x 32 x 32
    products, which a bfloat16 accumulation would get far worse)."""
    import jax
    import numpy as np

    from jaxpapers.layers import stylegan2_ops as ops

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 32, 32, 4)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 4, 5)).astype(np.float32))
    pad = ((1, 1), (1, 1))
    native = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )

    def orders(conv, x, w):
        f32 = lambda y: y.astype(jnp.float32)
        first = jax.grad(lambda x, w: jnp.sum(f32(conv(x, w)) ** 2), (0, 1))(x, w)

        def pen(x, w):
            g = jax.grad(lambda x: 0.5 * jnp.sum(f32(conv(x, w)) ** 2))(x)
            return jnp.sum(jnp.square(f32(g)))

        return (*first, *jax.grad(pen, (0, 1))(x, w))

    def errors(got, ref):
        return [
            float(np.linalg.norm(np.float64(a) - np.float64(b)) / np.linalg.norm(np.float64(b)))
            for a, b in zip(got, ref, strict=True)
        ]

    bf = jnp.bfloat16
    ref = orders(native, x, w)
    got = orders(lambda x, w: ops.conv2d(x, w, pad), x.astype(bf), w.astype(bf))
    assert all(g.dtype == bf for g in got)
    ours, xla = errors(got, ref), errors(orders(native, x.astype(bf), w.astype(bf)), ref)
    for i, (a, b) in enumerate(zip(ours, xla, strict=True)):
        assert a < 1e-2 and a <= 1.1 * b + 1e-3, (i, ours, xla)


def test_stylegan2_conv_clamp_clips_where_the_official_code_does():
    """conv_clamp (off by default) bounds each synthesis, ToRGB and D conv output; the image is
    a sum of upsampled ToRGB outputs (the FIR upsampling's phases sum to 1), so |image| <=
    (number of ToRGB layers) * clamp."""
    import jax

    from jaxpapers.layers import stylegan2 as sg

    c = 2.0**-10  # Exact in float32.
    z = jax.random.normal(jax.random.key(0), (4, 16))
    g0 = sg.Generator(16, 3, 16, 16, 2, 64, 8)
    gc = sg.Generator(16, 3, 16, 16, 2, 64, 8, conv_clamp=c)
    p = g0.init({"params": jax.random.key(1), "noise": jax.random.key(2)}, z)["params"]
    rngs = {"noise": jax.random.key(3)}
    img0, imgc = (g.apply({"params": p}, z, rngs=rngs) for g in (g0, gc))
    assert float(jnp.max(jnp.abs(img0))) > 0.01
    assert float(jnp.max(jnp.abs(imgc))) <= 3 * c
    d0 = sg.Discriminator(16, 64, 8, mbstd_group_size=2)
    dc = sg.Discriminator(16, 64, 8, mbstd_group_size=2, conv_clamp=c)
    dp = d0.init(jax.random.key(4), img0)["params"]
    peak = {}
    for tag, d in (("off", d0), ("on", dc)):
        _, mid = d.apply({"params": dp}, img0, capture_intermediates=True, mutable=True)
        for name, v in mid["intermediates"].items():
            if name != "__call__":
                peak[tag, name] = float(jnp.max(jnp.abs(v["__call__"][0])))
    for name in ("b16_fromrgb", "b16_conv0", "b16_conv1", "b8_conv1", "b4_conv"):
        assert peak["off", name] > c >= peak["on", name], name


def test_stylegan2_teacher_file_of_a_bf16_run_loads_into_a_float32_job(tmp_path):
    """How a teacher was trained (model.dtype, model.bf16_res) is not checked against the student
    job; what its networks compute (e.g. model.conv_clamp) still is."""
    import jax

    from jaxpapers.lib import dgl
    from jaxpapers.methods.stylegan2_dgl import steps

    cfg16 = _config("stylegan2_dgl", "smoke,model.dtype=bfloat16,model.bf16_res=2")
    state = jax.jit(lambda k: steps.init_state(k, cfg16))(jax.random.key(0))
    fields = {f: jax.device_get(getattr(state.teacher, f)) for f in steps.TEACHER_FIELDS}
    path = str(tmp_path / "t.msgpack")
    dgl.save_teacher_file(path, fields, cfg16.model.to_dict())
    cfg = _config("stylegan2_dgl", f"smoke,teacher.steps=0,teacher.weights={path}")
    tree = steps.prepare(cfg)
    assert jnp.array_equal(tree["teacher"]["w_avg"], fields["w_avg"])
    clamped = str(tmp_path / "c.msgpack")
    dgl.save_teacher_file(clamped, fields, dict(cfg16.model.to_dict(), conv_clamp=256.0))
    bad = _config("stylegan2_dgl", f"smoke,teacher.steps=0,teacher.weights={clamped}")
    with pytest.raises(ValueError, match="model.conv_clamp=256.0"):
        steps.prepare(bad)
