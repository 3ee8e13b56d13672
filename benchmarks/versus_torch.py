"""The classifier/attack workloads, this suite vs the PyTorch references, in one run, JSON out.

    python -m benchmarks.versus_torch --torch_python=TORCHVENV/bin/python --out_dir=vs_torch

Each measurement is its own process (``benchmarks.resnet_step`` / ``benchmarks.hedge_unroll``
with this interpreter, ``benchmarks/reference/torch_*.py`` with ``--torch_python``, 2 threads),
the variants of one workload back to back and ``--rounds`` times over, so the compared
programs see the same machine load. Writes every process's JSON to ``--out_dir`` and
``summary.json`` there: per workload and variant the images/s and CPU s/step of each round, and
the ratios to PyTorch of the same round (images/s ratio; CPU-seconds ratio = torch CPU s / ours).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

_TORCH = flags.DEFINE_string("torch_python", "", "Python interpreter with torch 2.13 (CPU).")
_OUT_DIR = flags.DEFINE_string("out_dir", "vs_torch", "Directory for the JSON files.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Times each workload's variants are alternated.")
_ONLY = flags.DEFINE_list("only", [], "Subset of workloads (default: all).")
_CONVS = flags.DEFINE_list("convs", ["lax", "mm_grad"], "Our conv options (train steps).")
_PGD_CONVS = flags.DEFINE_list("pgd_convs", ["lax", "mm_grad"], "Our conv options (PGD step).")
_ATTACK_BATCH = flags.DEFINE_integer("attack_batch", 128, "Batch of the PGD and hedge workloads.")

_TORCH_THREADS = "2"


def workloads(convs, pgd_convs, attack_batch):
    """name -> list of (variant, 'jax' | 'torch', argv after the interpreter)."""
    ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
    out = {}
    ab = str(attack_batch)
    for tag, shape, extra, steps in (
        ("train_32x32x3", "32,32,3", [], "2"),
        ("train_28x28x1", "28,28,1", [], "2"),
        ("pgd10_32x32x3", "32,32,3", ["10"], "1"),
    ):
        pgd_j = [f"--pgd_steps={extra[0]}", f"--batch={ab}"] if extra else []
        pgd_t = ["--pgd_steps", extra[0], "--batch", ab] if extra else []
        runs = [
            (
                f"jax_{c}",
                "jax",
                ["-m", "benchmarks.resnet_step", f"--shape={shape}", f"--steps={steps}"]
                + [f"--conv={c}"]
                + pgd_j,
            )
            for c in (pgd_convs if extra else convs)
        ]
        runs.insert(
            1,
            (
                "torch",
                "torch",
                [os.path.join(ref, "torch_resnet.py"), "--shape", shape, "--steps", steps]
                + ["--threads", _TORCH_THREADS]
                + pgd_t,
            ),
        )
        out[tag] = runs
    out["hedge20_32x32x3"] = [
        (
            "jax_unrolled",
            "jax",
            ["-m", "benchmarks.hedge_unroll", "--unroll=yes", "--steps=1", f"--batch={ab}"],
        ),
        (
            "torch",
            "torch",
            [os.path.join(ref, "torch_hedge.py"), "--steps", "1", "--batch", ab]
            + ["--threads", _TORCH_THREADS],
        ),
    ]
    return out


def main(argv) -> None:
    del argv
    if not _TORCH.value:
        raise app.UsageError("--torch_python is required (an interpreter with torch installed).")
    os.makedirs(_OUT_DIR.value, exist_ok=True)
    table = workloads(_CONVS.value, _PGD_CONVS.value, _ATTACK_BATCH.value)
    names = _ONLY.value or list(table)
    summary = {}
    for name in names:
        if name not in table:
            raise app.UsageError(f"Unknown workload {name!r}; expected one of {list(table)}.")
        summary[name] = []
        for r in range(_ROUNDS.value):
            row = {}
            for variant, framework, args in table[name]:
                path = os.path.join(_OUT_DIR.value, f"{name}_{variant}_r{r}.json")
                exe = sys.executable if framework == "jax" else _TORCH.value
                cmd = ["nice", "-n", "0", exe, *args, "--out", path]
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                with open(path) as f:
                    res = json.load(f)
                row[variant] = {
                    k: res[k]
                    for k in (
                        "images_per_second",
                        "step_seconds_mean",
                        "cpu_seconds_per_step",
                        "compile_seconds",
                        "load_average_before",
                        "load_average_after",
                    )
                }
                print(f"  {variant}: {row[variant]}", flush=True)
            for variant, v in row.items():
                if variant != "torch":
                    v["ratio_images_per_second"] = round(
                        v["images_per_second"] / row["torch"]["images_per_second"], 3
                    )
                    v["ratio_cpu_seconds"] = round(
                        row["torch"]["cpu_seconds_per_step"] / v["cpu_seconds_per_step"], 3
                    )
            summary[name].append(row)
            with open(os.path.join(_OUT_DIR.value, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
