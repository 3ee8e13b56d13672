"""tools.dgl_compare end to end on the smoke preset with a tiny teacher file written here."""

import json
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image

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


def test_shards_split_the_seed_and_width_groups_and_variants_continue_their_stage1_run(
    teacher_file, tmp_path, monkeypatch
):
    trained = []

    def fake_train(cfg, rdir):  # Records the call and writes what a finished run leaves.
        variant, seed = rdir.split(os.sep)[-2:]
        trained.append((variant, seed, cfg.num_train_steps, cfg.resume_from, cfg.student.alpha))
        os.makedirs(rdir, exist_ok=True)
        final = {"eval/student_fd": float(len(trained)), "eval/g_param_ratio": 0.5}
        final.update({"eval/g_mac_ratio": 0.25, "eval/student_kid_mean": 0.0})
        final.update({"eval/student_precision": 0.5, "eval/student_recall": 0.5})
        json.dump(final, open(os.path.join(rdir, "final_metrics.json"), "w"))
        grid = np.full((10, 10), 40 * len(trained), np.uint8)  # A grid per run, told apart.
        for who in ("student", "teacher"):
            path = os.path.join(rdir, f"samples_{who}_step{cfg.num_train_steps}.png")
            Image.fromarray(grid).save(path)

    monkeypatch.setattr(trainer, "train", fake_train)
    out = str(tmp_path / "cmp")
    args = dict(seeds=2, alphas=[0.5], steps=6, stage1=2, uncompressed=True, config_arg=ARG)
    dgl_compare.compare(teacher_file, out, **args, shard=(1, 2))
    # Shard 1 of 2: every seed's uncompressed group, each variant resuming its stage-1 run.
    wide = os.path.join(out, "runs", "uncompressed_stage1_only")
    trunk = {s: os.path.join(wide, s) for s in ("seed0", "seed1")}
    assert trained == [
        ("uncompressed_stage1_only", "seed0", 2, "", 0.0),
        ("uncompressed_alpha0", "seed0", 6, trunk["seed0"], 0.0),
        ("uncompressed_dgl_a0.5", "seed0", 6, trunk["seed0"], 0.5),
        ("uncompressed_stage1_only", "seed1", 2, "", 0.0),
        ("uncompressed_alpha0", "seed1", 6, trunk["seed1"], 0.0),
        ("uncompressed_dgl_a0.5", "seed1", 6, trunk["seed1"], 0.5),
    ]
    del trained[:]
    md = dgl_compare.compare(teacher_file, out, **args, shard=(0, 2))
    assert [(t[0], t[1]) for t in trained] == [
        (n, s) for s in ("seed0", "seed1") for n in ("stage1_only", "alpha0", "dgl_a0.5")
    ]
    # Unsharded, nothing is left to train and the table has every group.
    del trained[:]
    assert dgl_compare.compare(teacher_file, out, **args) != md and trained == []
    # One picture of every seed-0 grid, titled with its FD, referenced by comparison.md.
    assert "(grids/comparison.png)" in open(os.path.join(out, "comparison.md")).read()
    pic = np.asarray(Image.open(os.path.join(out, "grids", "comparison.png")).convert("L"))
    assert pic.shape[0] > 300 and pic.shape[1] > 5 * 250
    assert {40 * i for i in (1, 2, 3, 4, 5, 6)} <= set(np.unique(pic))  # Seed 0's six grids.
    with pytest.raises(cli.BadInput, match="other settings"):
        dgl_compare.compare(teacher_file, out, **dict(args, stage1=3), shard=(0, 2))


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
        ("stage1_only", 0),
        ("stage1_only", 1),
    ]
    # Every run's numbers are its own final evaluation.
    for r in runs:
        final = json.load(open(os.path.join(r["dir"], "final_metrics.json")))
        assert r["metrics"]["student_fd"] == final["eval/student_fd"]
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"variant", "teacher (shipped)", "stage1_only", "alpha0", "dgl_a0.5"}
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
    want = ["alpha0.png", "comparison.png", "dgl_a0.5.png", "stage1_only.png", "teacher.png"]
    assert grids == want
    # Continuing the shared stage-1 run is the same as training the variant from step 0.
    v = dgl_compare.variants([0.5], uncompressed=False)[1]
    cfg = dgl_compare.run_config(ARG, teacher_file, v, 1, 2, 1, False)
    alone = trainer.train(cfg, str(tmp_path / "alone"))
    shared = json.load(open(os.path.join(out, "runs", "dgl_a0.5", "seed1", "final_metrics.json")))
    assert alone["eval/student_fd"] == shared["eval/student_fd"]
    for k in ("train/g_loss", "train/d_loss"):
        assert alone[k] == shared[k], k
    assert "teacher (shipped)" in open(os.path.join(out, "comparison.md")).read()
    # A second call trains nothing and writes the same table.
    monkeypatch.setattr(trainer, "train", lambda *a: pytest.fail("finished runs must be skipped"))
    assert dgl_compare.compare(teacher_file, out, **args) == md
    with pytest.raises(cli.BadInput, match="other settings"):
        dgl_compare.compare(teacher_file, out, **dict(args, steps=4))
