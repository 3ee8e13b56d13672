"""tools.dgl_compare end to end on the smoke preset with a tiny teacher file written here."""

import json
import os
import re

import jax
import numpy as np
import pytest

from jaxpapers import config_lib, methods, trainer
from jaxpapers.lib import dgl
from jaxpapers.tools import cli, dgl_compare

CFG = "configs/stylegan2_dgl.py"
ARG = "smoke,eval.num_samples=32,eval.batch_size=32"


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    cfg = config_lib.load_config_file(CFG, "smoke,seed=3")
    state = jax.jit(lambda k: methods.get("stylegan2_dgl").init_state(k, cfg))(jax.random.key(3))
    t = jax.device_get(state.teacher)
    path = str(tmp_path_factory.mktemp("teacher") / "tiny.msgpack")
    fields = {"g": t.g, "d": t.d, "g_ema": t.g_ema, "w_avg": t.w_avg}
    dgl.save_teacher_file(path, fields, cfg.model.to_dict())
    return path


def test_variants_and_run_configs(teacher_file):
    vs = dgl_compare.variants([0.1, 0.5], uncompressed=True)
    assert [v["name"] for v in vs] == [
        "alpha0",
        "dgl_a0.1",
        "dgl_a0.5",
        "uncompressed_alpha0",
        "uncompressed_dgl_a0.1",
    ]
    wide = dgl_compare.run_config(ARG, teacher_file, vs[4], 2, 10, 4, False)
    assert wide.student.g_divisor == 1 and wide.student.alpha == 0.1 and wide.seed == 2
    assert wide.teacher.steps == 0 and wide.student.stage1_steps == 4 and wide.num_train_steps == 10
    base = dgl_compare.run_config(ARG, teacher_file, vs[0], 2, 10, 4, True)
    assert base.student.alpha == 0.0 and base.student.g_divisor == 2


@pytest.mark.slow  # Four smoke training runs: ~2.5 min on 2 loaded cores.
def test_compare_writes_a_table_from_the_runs_and_resumes(teacher_file, tmp_path, monkeypatch):
    out = str(tmp_path / "cmp")
    args = dict(seeds=2, alphas=[0.5], steps=2, stage1=1, uncompressed=False, config_arg=ARG)
    md = dgl_compare.compare(teacher_file, out, **args)
    runs = json.load(open(os.path.join(out, "runs.json")))
    assert sorted((r["variant"], r["seed"]) for r in runs) == [
        ("alpha0", 0),
        ("alpha0", 1),
        ("dgl_a0.5", 0),
        ("dgl_a0.5", 1),
    ]
    # Every run's numbers are its own final evaluation.
    for r in runs:
        final = json.load(open(os.path.join(r["dir"], "final_metrics.json")))
        assert r["metrics"]["student_fd"] == final["eval/student_fd"]
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"variant", "teacher (shipped)", "alpha0", "dgl_a0.5"}
    for name in ("alpha0", "dgl_a0.5"):
        fds = [r["metrics"]["student_fd"] for r in runs if r["variant"] == name]
        want = f"{np.mean(fds):.2f} ± {np.std(fds, ddof=1):.2f}"
        assert want in rows[name], (want, rows[name])
    d = [
        next(r for r in runs if r["variant"] == "dgl_a0.5" and r["seed"] == s)["metrics"][
            "student_fd"
        ]
        - next(r for r in runs if r["variant"] == "alpha0" and r["seed"] == s)["metrics"][
            "student_fd"
        ]
        for s in (0, 1)
    ]
    assert f"{np.mean(d):.2f} ± {np.std(d, ddof=1):.2f}" in rows["dgl_a0.5"]
    assert re.search(r"\| [0-2]/2 \|$", rows["dgl_a0.5"])
    # The same latents and the same init: stage 1 of both variants is the same student, so the
    # seed-0 grids differ only through stage 2's teacher term.
    grids = sorted(os.listdir(os.path.join(out, "grids")))
    assert grids == ["alpha0.png", "dgl_a0.5.png", "teacher.png"]
    assert "teacher (shipped)" in open(os.path.join(out, "comparison.md")).read()
    # A second call trains nothing and writes the same table.
    monkeypatch.setattr(trainer, "train", lambda *a: pytest.fail("finished runs must be skipped"))
    assert dgl_compare.compare(teacher_file, out, **args) == md
    with pytest.raises(cli.BadInput, match="other settings"):
        dgl_compare.compare(teacher_file, out, **dict(args, steps=4))
