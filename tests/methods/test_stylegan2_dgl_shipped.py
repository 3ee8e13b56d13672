"""The shipped Fashion-MNIST teacher and the checkpoint its training continues from.

The default preset loads ``weights/fmnist_teacher.msgpack`` (hash-checked); the teacher run's
last checkpoint (``launch/fmnist_teacher_run``) restores into the ``teacher`` preset's state
(``--config.resume_from``) and holds the very networks of the shipped file."""

import json
import os

import jax
import numpy as np

from jaxpapers import checkpoint, config_lib, methods, trainer
from jaxpapers.methods.stylegan2_dgl import steps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(ROOT, "configs", "stylegan2_dgl.py")
RUN = os.path.join(ROOT, "launch", "fmnist_teacher_run")


def test_default_preset_loads_the_shipped_teacher():
    cfg = config_lib.load_config_file(CFG)
    tree = steps.prepare(cfg)  # sha256 against the JSON, model settings against config.model
    assert sorted(tree["teacher"]) == sorted(steps.TEACHER_FIELDS)
    info = json.load(open(os.path.join(steps.WEIGHTS_DIR, "fmnist_teacher.json")))
    assert info["preset"] == "teacher" and info["step"] > 0


def test_the_teacher_run_resumes_from_the_committed_checkpoint():
    cfg = config_lib.load_config_file(CFG, "teacher")
    method = methods.get(cfg.method)
    fn, args = trainer.init_fn(method, cfg)
    like = jax.eval_shape(fn, *args)
    state = checkpoint.restore_dir(RUN, like)  # digest-verified
    assert jax.tree.structure(state) == jax.tree.structure(like)
    step = int(state.step)
    shipped = steps.prepare(config_lib.load_config_file(CFG))
    info = json.load(open(os.path.join(steps.WEIGHTS_DIR, "fmnist_teacher.json")))
    assert step == info["step"]
    for name in steps.TEACHER_FIELDS:
        for a, b in zip(
            jax.tree.leaves(getattr(state.teacher, name)),
            jax.tree.leaves(shipped["teacher"][name]),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
