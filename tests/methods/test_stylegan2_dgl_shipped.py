"""The shipped Fashion-MNIST teacher: the default preset loads it, the ``teacher`` preset's
training goes on from it (``--config.teacher.continue_from``), and the default's student can start
from the teacher's channels (``student.init='teacher'``)."""

import json
import os

import jax
import numpy as np
import pytest

from jaxpapers import config_lib, methods, optim, trainer
from jaxpapers.lib import dgl
from jaxpapers.methods.stylegan2_dgl import steps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(ROOT, "configs", "stylegan2_dgl.py")
SHIPPED = "fmnist_teacher.msgpack"


def _info():
    return json.load(open(os.path.join(steps.WEIGHTS_DIR, "fmnist_teacher.json")))


def _init(cfg):
    fn, args = trainer.init_fn(methods.get(cfg.method), cfg)
    return jax.jit(fn)(*args)


def _equal(a_tree, b_tree):
    for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_default_preset_loads_the_shipped_teacher():
    cfg = config_lib.load_config_file(CFG)
    tree = steps.prepare(cfg)  # sha256 against the JSON, model settings against config.model
    assert sorted(tree["teacher"]) == sorted(steps.TEACHER_FIELDS)
    info = _info()
    assert info["preset"] == "teacher" and info["step"] > 0


def test_the_teacher_run_continues_from_the_shipped_file_at_its_step():
    cfg = config_lib.load_config_file(CFG, f"teacher,teacher.continue_from={SHIPPED}")
    state = _init(cfg)
    step = _info()["step"]
    assert int(state.step) == step and 0 < step < cfg.teacher.steps
    shipped = steps.prepare(config_lib.load_config_file(CFG))["teacher"]
    for name in steps.TEACHER_FIELDS:
        _equal(getattr(state.teacher, name), shipped[name])
    # Fresh Adam states (the file holds no optimizer state): the teacher's as at step 0.
    fresh = optim.make(cfg.optim.g).init(state.teacher.g)
    _equal(state.teacher.g_opt, fresh)
    # The same seed's rng as a run from scratch: the randomness of step k is fold_in(rng, k).
    scratch = _init(config_lib.load_config_file(CFG, "teacher"))
    _equal(state.rng, scratch.rng)


@pytest.mark.parametrize(
    "over, msg",
    [
        (f"teacher.continue_from={SHIPPED},teacher.steps=10", "only inside"),
        (f"teacher.continue_from={SHIPPED},teacher.weights={SHIPPED}", "Set one of"),
        (f"teacher.continue_from={SHIPPED},model.fmap_max=32", "--config.model.fmap_max=64"),
        ("student.init=teacher", "needs a trained teacher"),
        ("student.init=pruned", "student.init must be one of"),
    ],
)
def test_bad_teacher_continuations_and_student_inits_fail_in_one_line(over, msg):
    cfg = config_lib.load_config_file(CFG, f"teacher,{over}")
    with pytest.raises(ValueError, match=msg):
        _init(cfg)


def test_a_student_from_the_teacher_keeps_the_channels_its_next_layers_rely_on():
    cfg = config_lib.load_config_file(CFG, "default,student.init=teacher")
    state = _init(cfg)
    t, s = state.teacher, state.student
    g, tg = s.g["synthesis"], t.g_ema["synthesis"]
    keep = steps.kept_channels(tg, t.w_avg, g)
    for name, idx in keep.items():  # Half of the teacher's 64, each once, in order.
        assert len(idx) == 32 and np.all(np.diff(np.asarray(idx)) > 0), name
    w = np.asarray(tg["b8_conv1"]["weight"])[:, :, keep["b8_conv0"]][..., keep["b8_conv1"]]
    np.testing.assert_array_equal(g["b8_conv1"]["weight"], w)
    np.testing.assert_array_equal(
        g["b8_conv1"]["mod_bias"], tg["b8_conv1"]["mod_bias"][keep["b8_conv0"]]
    )
    np.testing.assert_array_equal(g["b32_torgb"]["bias"], tg["b32_torgb"]["bias"])
    np.testing.assert_array_equal(
        g["b4_conv1"]["weight"], tg["b4_conv1"]["weight"][..., keep["b4_conv1"]]
    )
    np.testing.assert_array_equal(g["const"], tg["const"])
    # One mapping layer: the teacher's first; D: the student's own fresh one.
    np.testing.assert_array_equal(
        s.g["mapping"]["fc0"]["weight"], t.g_ema["mapping"]["fc0"]["weight"]
    )
    assert "fc1" not in s.g["mapping"]
    scratch = _init(config_lib.load_config_file(CFG, "default"))
    _equal(s.d, scratch.student.d)
    _equal(s.d_opt, scratch.student.d_opt)
    _equal(s.g_ema, s.g)
    _equal(s.g_opt, optim.make(cfg.optim.g).init(s.g))
    assert not np.any(np.asarray(s.w_avg))


def test_a_teacher_wide_student_from_the_teacher_is_the_teacher():
    state = _init(config_lib.load_config_file(CFG, "uncompressed,student.init=teacher"))
    _equal(state.student.g, state.teacher.g_ema)


def test_kept_channels_are_those_with_the_largest_share_downstream():
    rng = np.random.default_rng(0)
    wdim, c = 4, 4
    layer = lambda cin, cout, k: dict(  # noqa: E731
        weight=rng.normal(size=(k, k, cin, cout)).astype(np.float32),
        mod_weight=np.zeros((wdim, cin), np.float32),
        mod_bias=np.zeros(cin, np.float32),
        bias=np.zeros(cout, np.float32),
    )
    t_syn = {"const": np.zeros((4, 4, c)), "b4_conv1": layer(c, c, 3), "b4_torgb": layer(c, 1, 1)}
    t_syn["b4_torgb"]["weight"][0, 0, [1, 2], 0] = 1e-3  # ToRGB barely reads channels 1 and 2.
    student = {"b4_conv1": {"bias": np.zeros(2)}}
    keep = steps.kept_channels(t_syn, np.zeros(wdim, np.float32), student)
    np.testing.assert_array_equal(keep["b4_conv1"], [0, 3])
    t_syn["b4_torgb"]["mod_bias"][:] = [-1, 0, 0, -1]  # Style 0: channels 0 and 3 are muted.
    keep = steps.kept_channels(t_syn, np.zeros(wdim, np.float32), student)
    np.testing.assert_array_equal(keep["b4_conv1"], [1, 2])


def test_slice_like_refuses_a_smaller_or_missing_source_leaf():
    like = {"a": np.zeros((4, 2), np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"shape \(2, 2\) cannot give \(4, 2\)"):
        dgl.slice_like({"a": np.zeros((2, 2)), "b": np.zeros(3)}, like, "T")
    with pytest.raises(ValueError, match="T has no"):
        dgl.slice_like({"a": np.zeros((4, 2))}, like, "T")
    out = dgl.slice_like(
        {"a": np.arange(12, dtype=np.float32).reshape(6, 2), "b": np.ones(5), "c": 1}, like, "T"
    )
    np.testing.assert_array_equal(out["a"], np.arange(8.0).reshape(4, 2))
