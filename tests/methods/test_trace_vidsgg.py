"""TRACE method: the standard jit test, the loss sampler, and the model's masking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib
from jaxpapers.methods.trace_vidsgg import inputs, model, steps
from jaxpapers.methods.trace_vidsgg.evaluate import evaluate


def smoke():
    return config_lib.load_config_file("configs/trace_vidsgg.py", "smoke")


def init(cfg):
    return steps.init_state(jax.random.PRNGKey(0), cfg, prepared=steps.prepare(cfg))


def test_trace_vidsgg_train_step_jit(jit_check):
    _, metrics = jit_check("trace_vidsgg", smoke())
    assert 0.0 <= float(metrics[-1]["obj_acc"]) <= 1.0
    assert float(metrics[-1]["entries"]) > 0


def test_prepared_frequency_bias_enters_the_params():
    cfg = smoke()
    assert cfg.model.use_freq_bias and cfg.model.freq_bias_from_data
    prepared = steps.prepare(cfg)
    src = inputs.make_source(cfg, "train")
    want = steps.freq_bias_init(
        src["rels"], src["labels"], src["num_boxes"], cfg.model.num_obj_classes
    )
    np.testing.assert_allclose(prepared["freq_bias"], want, rtol=1e-6)
    st = jax.jit(lambda k, p: steps.init_state(k, cfg, prepared=p))(jax.random.PRNGKey(0), prepared)
    np.testing.assert_array_equal(np.asarray(st.params["freq_bias"]), prepared["freq_bias"])
    bad = {"freq_bias": prepared["freq_bias"][:-1]}
    with pytest.raises(ValueError, match="freq_bias does not match"):
        steps.init_state(jax.random.PRNGKey(0), cfg, prepared=bad)


def test_sampler_keeps_all_positives_and_fills_with_negatives():
    labels = jnp.zeros((2, 3, 3, 4), jnp.uint8).at[0, 0, 1, 2].set(1).at[1, 2, 0, :].set(1)
    valid = jnp.ones((2, 3, 3, 1), bool).at[:, jnp.arange(3), jnp.arange(3)].set(False)
    keep = steps.sample_entries(jax.random.PRNGKey(0), labels, valid, fg_max=3, total=6)
    keep = np.asarray(keep)
    assert keep[0, 0, 1, 2] and keep[0].sum() == 6  # the one positive + 5 negatives
    assert keep[1, 2, 0].sum() == 3 and keep[1].sum() == 6  # 4 positives capped at 3, + 3 negatives
    assert not keep[:, np.arange(3), np.arange(3)].any()  # never the diagonal (invalid pairs)


@pytest.mark.slow
def test_padding_boxes_do_not_change_valid_outputs():
    cfg = smoke()
    st = init(cfg)
    src = inputs.make_source(cfg, "train")
    i = int(np.argmin(src["num_boxes"]))
    batch = {k: v[i : i + 1] for k, v in src.items()}
    n = int(batch["num_boxes"][0])
    assert n < cfg.model.n_max
    other = dict(batch)
    other["boxes"] = batch["boxes"].copy()
    other["boxes"][0, n:] = [[1, 2, 20, 25]]  # garbage in the padding slots
    other["labels"] = batch["labels"].copy()
    other["labels"][0, n:] = 3
    net = model.build_model(cfg)
    f = jax.jit(lambda b: net.apply({"params": st.params}, b, train=False))
    a, b = f(batch), f(other)
    np.testing.assert_allclose(a["rel_logits"][0, :n, :n], b["rel_logits"][0, :n, :n], atol=1e-5)
    np.testing.assert_allclose(a["obj_logits"][0, :n], b["obj_logits"][0, :n], atol=1e-5)


@pytest.mark.slow
def test_evaluate_runs_on_smoke(tmp_path):
    cfg = config_lib.load_config_file(
        "configs/trace_vidsgg.py", "smoke,save_pictures=True,model.mode=sgcls"
    )
    st = init(cfg)
    res = evaluate(st, cfg, str(tmp_path))
    for key in ("with_R@5", "with_R@10", "no_R@10", "no_mR@10"):
        assert 0.0 <= res[key] <= 100.0
    assert list(tmp_path.glob("scene_graph_*.png"))


# ------------------------------------------------------------------ mixed precision (model.dtype)


def _step_inputs(cfg):
    from jaxpapers import methods, testing

    return init(cfg), testing.make_batches(methods.get("trace_vidsgg"), cfg, 1)[0]


def test_float32_step_is_the_plain_step_bit_for_bit():
    """model.dtype=float32 (the default) is the step as it was before the switch: plain
    ``model.apply`` on the float32 params and batch; every cast the model gained is a no-op."""
    import functools

    from jaxpapers import optim, rng

    cfg = smoke()
    assert cfg.model.dtype == "float32"
    st, batch = _step_inputs(cfg)

    def plain_step(st, batch):
        net = model.build_model(cfg)
        k_drop, k_sample = jax.random.split(rng.step_key(st))

        def loss_fn(params):
            out = net.apply({"params": params}, batch, train=True, rngs={"dropout": k_drop})
            return steps.losses(out, batch, k_sample, cfg)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
        return st.apply_gradients(grads, optim.make(cfg.optim)), {"loss": loss, **aux}

    want = jax.device_get(jax.jit(plain_step)(st, batch))
    got = jax.device_get(jax.jit(functools.partial(steps.train_step, config=cfg))(st, batch))
    for a, b in zip(jax.tree.leaves(want[0]), jax.tree.leaves(got[0]), strict=True):
        np.testing.assert_array_equal(a, b)
    for k, v in want[1].items():
        np.testing.assert_array_equal(v, got[1][k], err_msg=k)


def test_bf16_step_close_to_f32_step_with_the_same_tree_and_entries():
    """One f32 and one bf16 step (SGD: the update error is the gradients'; Adam's first update
    is lr * sign(g)) from the same state and batch (`testing.check_mixed_precision_step`: losses
    within 2 %, the whole update within 5 %, each leaf within 25 %; why those limits:
    tests/test_mixed_precision.py). The HRTree, the LCAs and the sampled loss entries depend on
    the boxes, labels and keys only, so they are identical in both dtypes."""
    from jaxpapers import testing
    from jaxpapers.layers import precision

    cfg = config_lib.load_config_file("configs/trace_vidsgg.py", "smoke,optim.name=sgd")
    st, batch = _step_inputs(cfg)
    rel, metrics, counts, leaves = testing.check_mixed_precision_step(
        "trace_vidsgg",
        cfg,
        state=st,
        batch=batch,
        metric_keys=("loss", "rel_loss", "obj_loss", "det_loss", "entries"),
    )
    print(rel, metrics, dict(counts), max(leaves.items(), key=lambda kv: kv[1]))
    assert metrics["entries"][0] == metrics["entries"][1]
    # Convolutions all in bf16; float32 matmuls only in the logit heads (model.F32_PARAMS: six
    # Dense layers, forward + input and kernel gradients).
    assert counts[("conv_general_dilated", "float32")] == 0
    assert counts[("dot_general", "float32")] == 6 * 3

    def forward(dtype):
        net = model.build_model(cfg, dtype)
        return jax.jit(
            lambda p, b: precision.apply(
                net, {"params": p}, batch=b, train=False, dtype=dtype, keep=model.F32_PARAMS
            )
        )(st.params, batch)

    o32, o16 = forward(jnp.float32), forward(jnp.bfloat16)
    for k in ("tree_parent", "lca", "pair_mask"):
        np.testing.assert_array_equal(o32[k], o16[k], err_msg=k)
    assert o16["rel_logits"].dtype == jnp.float32
