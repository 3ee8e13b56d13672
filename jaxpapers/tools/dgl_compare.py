"""DGL vs the same student without the teacher term, over seeds and alphas, from one teacher file.

    python -m jaxpapers.tools.dgl_compare --teacher=fmnist_teacher.msgpack --seeds=3 \\
        --alphas=0.1,0.5 --steps=800 --stage1=400 --workdir=/tmp/dgl_compare

Trains, for every seed ``s`` in ``0..seeds-1``, the ``stylegan2_dgl`` student on the teacher
file ``--teacher`` (a bare name is a file shipped in ``jaxpapers/methods/stylegan2_dgl/weights``):

* ``alpha0``: the compressed student, ``--stage1`` steps of stage 1 then stage 2 with alpha 0
  (no teacher term): the baseline;
* ``dgl_a<alpha>``: the same student, same seed (so the same initialisation and data order),
  same steps, with the teacher discriminator's term at ``alpha`` in stage 2, for each alpha;
* with ``--uncompressed`` (default on), ``uncompressed_alpha0`` and
  ``uncompressed_dgl_a<alphas[0]>``: the student as wide as the teacher ("DGL on the
  uncompressed model").

Stage 1 has no teacher term, so it is the same for every alpha: it is trained once per seed and
student width, as its own run ``WORKDIR/runs/stage1_only/seed<s>`` (and
``uncompressed_stage1_only``) of ``--stage1`` steps, and every variant of that width resumes
from its checkpoint (``resume_from``) for stage 2. The result is the same as training each
variant from step 0: the data order is a function of the seed and step, the step's random key
one of the state (``rng.step_key``), and the checkpoint holds the whole state; the stage-1 runs'
own evaluations are the "after stage 1" rows.

Each run is a normal training run (``jaxpapers.trainer.train``) in
``WORKDIR/runs/<variant>/seed<s>`` evaluated once at its end (the config's ``eval``: FD-FMNIST,
KID, precision/recall on ``eval.num_samples`` fakes; pass ``--config=default,eval.num_samples=
10000`` for the full evaluation). Writes ``WORKDIR/comparison.md`` (mean ± std per variant and
the paired difference to its alpha-0 baseline), ``WORKDIR/runs.json`` (every run's numbers) and
``WORKDIR/grids/<variant>.png`` (the seed-0 student's samples; every run draws the grid from the
same fixed latents, ``eval.seed``) plus ``grids/teacher.png``, and all of them side by side,
titled with their FD, in ``grids/comparison.png``. Re-running the same command skips
finished runs and resumes an interrupted one; other settings in the same workdir are refused.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from absl import flags

from jaxpapers.tools import cli

# (key, column): KID is the evaluator's raw value on the FmnistCNN features (not ×10³).
METRICS = (("fd", "FD-FMNIST"), ("kid_mean", "KID"), ("precision", "precision"))
METRICS += (("recall", "recall"),)


def define_flags() -> None:
    flags.DEFINE_string("teacher", None, "teacher file (tools.export_teacher)", required=True)
    flags.DEFINE_string("workdir", None, "output directory", required=True)
    flags.DEFINE_integer("seeds", 3, "seeds 0..seeds-1")
    flags.DEFINE_string("alphas", "0.1,0.5", "DGL teacher-term weights (stage 2), comma-separated")
    flags.DEFINE_integer("steps", 800, "student steps per run (both stages)")
    flags.DEFINE_integer("stage1", -1, "stage-1 steps (-1: half of --steps)")
    flags.DEFINE_bool("uncompressed", True, "also DGL on the uncompressed (teacher-wide) student")
    flags.DEFINE_string("config", "default", "stylegan2_dgl preset[,key=value...] of every run")
    flags.DEFINE_string(
        "shard",
        "",
        "I/N: train only every N-th (seed, student width) group from the I-th, so that N "
        "processes (e.g. one per core under `taskset`) share one workdir; with --uncompressed, 0/2 "
        "and 1/2 are the compressed and the uncompressed runs. Then run once without --shard "
        "for the whole table",
    )


TRUNKS = {False: "stage1_only", True: "uncompressed_stage1_only"}  # By `wide`.


def variants(alphas: list[float], uncompressed: bool) -> list[dict]:
    """The compared runs' settings: (name, alpha, student width overrides, paired baseline)."""
    out = [dict(name="alpha0", alpha=0.0, wide=False, baseline=None)]
    out += [dict(name=f"dgl_a{a:g}", alpha=a, wide=False, baseline="alpha0") for a in alphas]
    if uncompressed:
        out.append(dict(name="uncompressed_alpha0", alpha=0.0, wide=True, baseline=None))
        out.append(
            dict(
                name=f"uncompressed_dgl_a{alphas[0]:g}",
                alpha=alphas[0],
                wide=True,
                baseline="uncompressed_alpha0",
            )
        )
    return out


def trunk(wide: bool) -> dict:
    """The stage-1 run that the variants of one student width share."""
    return dict(name=TRUNKS[wide], alpha=0.0, wide=wide, baseline=None)


def run_config(
    arg: str,
    teacher: str,
    v: dict,
    seed: int,
    steps: int,
    stage1: int,
    first: bool,
    resume_from: str = "",
):
    """One run's config; ``resume_from``: the stage-1 run this variant continues."""
    from jaxpapers import config_lib

    over = [
        "teacher.steps=0",
        f"teacher.weights={teacher}",
        f"student.stage1_steps={stage1}",
        f"num_train_steps={steps}",
        f"student.alpha={v['alpha']!r}",
        f"seed={seed}",
        "eval_every=0",
        "eval.fd=True",
        f"eval.score_teacher={first}",  # The teacher's numbers once: they are the same each run.
        f"resume_from={resume_from}",
    ]
    if v["wide"]:
        # From scratch: a teacher-wide student started from the teacher would be the teacher.
        over += ["student.g_divisor=1", "student.mapping_layers=0", "student.w_dim=0"]
        over += ["student.init=scratch"]
    path = os.path.join(config_lib.configs_dir(), "stylegan2_dgl.py")
    return config_lib.load_config_file(path, ",".join([arg, *over]))


def _finished(workdir: str) -> dict | None:
    path = os.path.join(workdir, "final_metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _mean_std(values: list[float]) -> str:
    v = np.asarray(values, np.float64)
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def table(runs: list[dict], names: list[str], baselines: dict, teacher: dict | None) -> str:
    """The markdown comparison: one row per variant (mean ± sample std over seeds), the paired
    FD difference to the variant's alpha-0 baseline (same seeds) and how many seeds it wins."""
    head = "| variant | alpha | G params / MACs vs teacher | seeds | "
    head += " | ".join(label for _, label in METRICS) + " | ΔFD vs alpha 0 (paired) | lower FD |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    if teacher:
        cells = [f"{teacher[k]:.2f}" if k in teacher else "" for k, _ in METRICS]
        lines.append("| teacher (shipped) | — | 1 / 1 | — | " + " | ".join(cells) + " | — | — |")
    by = {n: [r for r in runs if r["variant"] == n] for n in names}
    for n in names:
        rs = sorted(by[n], key=lambda r: r["seed"])
        if not rs:
            continue
        m0 = rs[0]["metrics"]
        ratio = f"{m0['g_param_ratio']:.3f} / {m0['g_mac_ratio']:.3f}"
        cells = [_mean_std([r["metrics"][f"student_{k}"] for r in rs]) for k, _ in METRICS]
        delta, wins = "—", "—"
        base = {r["seed"]: r for r in by.get(baselines[n] or "", [])}
        pairs = [(r, base[r["seed"]]) for r in rs if r["seed"] in base]
        if pairs:
            d = [r["metrics"]["student_fd"] - b["metrics"]["student_fd"] for r, b in pairs]
            delta = _mean_std(d)
            wins = f"{sum(x < 0 for x in d)}/{len(d)}"
        row = [n, f"{rs[0]['alpha']:g}", ratio, str(len(rs)), *cells, delta, wins]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def picture(workdir: str, shown: list[dict], runs: list[dict]) -> str | None:
    """``grids/comparison.png``: the seed-0 grids side by side, one row per student width (the
    teacher first), each titled with its run's FD; None while a seed-0 grid is missing."""
    from PIL import Image

    from jaxpapers import viz

    fd = {r["variant"]: r["metrics"].get("student_fd") for r in runs if r["seed"] == 0}
    rows: dict[bool, list[tuple[str, str]]] = {False: [("teacher", "teacher (shipped)")]}
    for v in shown:
        title = v["name"] if fd.get(v["name"]) is None else f"{v['name']}: FD {fd[v['name']]:.1f}"
        rows.setdefault(v["wide"], []).append((v["name"], title))
    cells, titles = [], []
    for row in rows.values():
        paths = [os.path.join(workdir, "grids", f"{name}.png") for name, _ in row]
        if not all(os.path.isfile(p) for p in paths):
            return None
        cells.append([np.asarray(Image.open(p).convert("L"))[..., None] for p in paths])
        titles.append([t for _, t in row])
    labels = ["compressed student" if not w else "uncompressed student" for w in rows]
    out = os.path.join(workdir, "grids", "comparison.png")
    title = "DGL comparison, seed 0, the same latents in every grid (FD-FMNIST: lower is better)"
    viz.save_image_table(out, cells, labels, titles, title=title, cell_inches=2.9)
    return out


def compare(
    teacher: str,
    workdir: str,
    seeds: int,
    alphas: list[float],
    steps: int,
    stage1: int,
    uncompressed: bool = True,
    config_arg: str = "default",
    shard: tuple[int, int] = (0, 1),
) -> str:
    """Runs (or skips, when finished) every run; writes the table, runs.json and grids.

    ``shard=(i, n)`` trains and tabulates only every n-th (seed, student width) group from the
    i-th: with two widths, ``(0, 2)`` takes the compressed and ``(1, 2)`` the uncompressed runs.
    """
    from jaxpapers import trainer
    from jaxpapers.lib import dgl

    if seeds < 1 or steps < 2 or not alphas or any(a <= 0 for a in alphas):
        raise cli.BadInput("need --seeds >= 1, --steps >= 2 and positive --alphas.")
    stage1 = steps // 2 if stage1 < 0 else stage1
    if not 0 <= stage1 < steps:
        raise cli.BadInput(f"--stage1={stage1} must lie in [0, --steps={steps}).")
    vs = variants(alphas, uncompressed)
    settings = dict(config=config_arg, steps=steps, stage1=stage1, seeds=seeds)
    settings.update(alphas=alphas, uncompressed=uncompressed)
    # The teacher by content: the same file under another name still matches.
    from jaxpapers.methods.stylegan2_dgl import steps as sg_steps

    path = dgl.resolve_weights(teacher, sg_steps.WEIGHTS_DIR)
    dgl.load_teacher_file(path, sg_steps.TEACHER_FIELDS)  # Fails now, in one line, if it is bad.
    settings["teacher_sha256"] = dgl.file_sha256(path)
    os.makedirs(workdir, exist_ok=True)
    spath = os.path.join(workdir, "compare.json")
    if os.path.isfile(spath):
        with open(spath) as f:
            old = json.load(f)
        if old != json.loads(json.dumps(settings)):
            raise cli.BadInput(f"{workdir} holds a comparison with other settings {old}.")
    with open(spath + ".tmp", "w") as f:  # Atomic: shards read it while another writes it.
        json.dump(settings, f, indent=2)
    os.replace(spath + ".tmp", spath)
    runs, teacher_metrics = [], None

    def run_dir(name: str, seed: int) -> str:
        return os.path.join(workdir, "runs", name, f"seed{seed}")

    def run(v: dict, seed: int, run_steps: int, first: bool, resume_from: str = "") -> dict:
        rdir = run_dir(v["name"], seed)
        result = _finished(rdir)
        if result is None:
            print(f"dgl_compare: {v['name']} seed {seed} -> {rdir}", flush=True)
            cfg = run_config(config_arg, teacher, v, seed, run_steps, stage1, first, resume_from)
            trainer.train(cfg, rdir)
            result = _finished(rdir)
        else:
            print(f"dgl_compare: {v['name']} seed {seed} finished, skipped", flush=True)
        ev = {k.removeprefix("eval/"): x for k, x in result.items() if k.startswith("eval/")}
        runs.append(dict(variant=v["name"], seed=seed, alpha=v["alpha"], metrics=ev, dir=rdir))
        if seed == 0:
            os.makedirs(os.path.join(workdir, "grids"), exist_ok=True)
            grid = os.path.join(rdir, f"samples_student_step{run_steps}.png")
            shutil.copyfile(grid, os.path.join(workdir, "grids", f"{v['name']}.png"))
        return ev

    # A group: one seed and student width, i.e. a stage-1 run and the variants continuing it.
    groups = [(seed, w) for seed in range(seeds) for w in dict.fromkeys(v["wide"] for v in vs)]
    for seed, wide in groups[shard[0] :: shard[1]]:
        trunk_dir = ""
        if stage1 > 0:
            run(trunk(wide), seed, stage1, first=False)
            trunk_dir = run_dir(TRUNKS[wide], seed)
        for v in (v for v in vs if v["wide"] == wide):
            first = seed == 0 and v is vs[0]
            ev = run(v, seed, steps, first, trunk_dir)
            if first:  # Seed 0's first run scored the teacher and drew its grid.
                teacher_metrics = {
                    k.removeprefix("teacher_"): x for k, x in ev.items() if k.startswith("teacher_")
                }
                t_grid = os.path.join(run_dir(v["name"], seed), f"samples_teacher_step{steps}.png")
                shutil.copyfile(t_grid, os.path.join(workdir, "grids", "teacher.png"))
    with open(os.path.join(workdir, "runs.json"), "w") as f:
        json.dump(runs, f, indent=2)
    shown = []
    for v in vs:  # Each width's stage-1 row first, then its variants.
        if stage1 > 0 and trunk(v["wide"]) not in shown:
            shown.append(trunk(v["wide"]))
        shown.append(v)
    md = table(
        runs, [v["name"] for v in shown], {v["name"]: v["baseline"] for v in shown}, teacher_metrics
    )
    header = (
        f"# DGL comparison\n\nTeacher sha256 {settings['teacher_sha256'][:12]}, preset "
        f"`{config_arg}`, {steps} student steps ({stage1} stage 1), seeds 0-{seeds - 1}; mean ± "
        "sample std over seeds. `*stage1_only`: the shared stage-1 runs, evaluated after their "
        f"{stage1} steps; every variant continues its width's stage-1 run. ΔFD: the variant's "
        "FD minus its alpha-0 baseline's on the same seed (negative = DGL better). Grids: "
        "`grids/`, seed 0, the same latents.\n\n"
    )
    if picture(workdir, shown, runs):
        header += "![seed-0 grids](grids/comparison.png)\n\n"
    with open(os.path.join(workdir, "comparison.md"), "w") as f:
        f.write(header + md)
    return md


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    try:
        alphas = [float(a) for a in F.alphas.split(",") if a.strip()]
    except ValueError:
        raise cli.BadInput(f"--alphas={F.alphas!r}: give numbers like 0.1,0.5.") from None
    shard = (0, 1)
    if F.shard:
        i, _, n = F.shard.partition("/")
        if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
            raise cli.BadInput(f"--shard={F.shard!r}: give I/N with 0 <= I < N, e.g. 0/2.")
        shard = (int(i), int(n))
    md = compare(
        F.teacher, F.workdir, F.seeds, alphas, F.steps, F.stage1, F.uncompressed, F.config, shard
    )
    print(md)


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
