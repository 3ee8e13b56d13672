"""Throughput of the robustness toolkit on PreActResNet-18 at 32x32x3 (issues 6 and 7, item 9).

    python -m benchmarks.robust --what=train,aa,hedge --out=robust.json

Parts (each reports compile seconds apart from the steady state, wall and user-CPU seconds):
  train   adversarial-training examples/s: the `rat` train step of configs/rat.py:cifar10_preact18
          (batch 128, PGD-10 ε 8/255 α 2/255) for each of --variants (sat = Madry PGD-AT; rat adds
          one region sample per point), timed by benchmarks.step_time (AOT compile, 1 warm-up
          step, --train_steps timed steps) on uniform random uint8 batches.
  aa      AutoAttack standard through jaxpapers.evals.robust.evaluate (cascade) on --aa_n points.
          No trained CIFAR-10 PreActResNet-18 exists offline, so the weights are the random init
          and the points uniform noise; labels are the model's own clean predictions so that every
          point enters the cascade.  Such a model is fooled early, later stages then see few or no
          points: the robust fraction after each stage is reported with the time.  Run twice with
          the persistent XLA cache: run 1 = compile + attack, run 2 = attack (+ a cache load), so
          compile ≈ run 1 − run 2.  'aa_stages' then times each stage alone at a tiny ε (1e-6,
          nothing is fooled, every loop runs to its end: the cost on a fully robust model) with a
          reduced budget and extrapolates linearly in the fixed loop length to the standard one.
  hedge   hedge-defended inference (jaxpapers.methods.hedge_defense, 20 steps of 0.007, ε 0.031,
          official path-logit-sum prediction) on --hedge_batch points, AOT-compiled, then timed.
"""

from __future__ import annotations

import json
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from benchmarks import step_time
from jaxpapers import config_lib
from jaxpapers.evals import robust
from jaxpapers.methods import rat
from jaxpapers.methods.hedge_defense import protocol

_WHAT = flags.DEFINE_list("what", ["train", "aa", "aa_stages", "hedge"], "Parts to run.")
_VARIANTS = flags.DEFINE_list("variants", ["sat"], "rat method variants for 'train'.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 2, "Timed train steps (after one warm-up).")
_AA_N = flags.DEFINE_integer("aa_n", 16, "Points for AutoAttack.")
_HEDGE_BATCH = flags.DEFINE_integer("hedge_batch", 32, "Batch of the hedge benchmark.")
_HEDGE_REPEATS = flags.DEFINE_integer("hedge_repeats", 2, "Timed hedge batches.")
_STAGE_SCALE = flags.DEFINE_integer(
    "stage_scale", 9, "aa_stages: targeted attacks run 9/stage_scale targets, Square 5000/… queries"
)
_CACHE = flags.DEFINE_string("cache_dir", "/tmp/rat_bench/xla_cache", "Persistent XLA cache.")
_OUT = step_time._OUT  # --out (JSON output path), shared with the imported step_time flags

PRESET = "configs/rat.py:cifar10_preact18"
EPS = 8 / 255


def _user() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


class _Timer:
    """Wall and user-CPU seconds of a block (user time sums all threads of the process)."""

    def __enter__(self):
        self.w0, self.u0 = time.perf_counter(), _user()
        return self

    def __exit__(self, *exc):
        self.wall, self.user = time.perf_counter() - self.w0, _user() - self.u0


def _model(batch: int):
    path, preset = PRESET.split(":")
    config = config_lib.load_config_file(path, preset)
    st = rat.init_state(jax.random.key(0), config)
    logits_fn = jax.jit(rat.logits_fn(st, config))
    x = np.asarray(jax.random.uniform(jax.random.key(1), (batch, 32, 32, 3)), np.float32)
    y = np.asarray(jnp.argmax(logits_fn(x), -1), np.int32)
    return rat.logits_fn(st, config), x, y


def bench_train(variant: str, steps: int) -> dict:
    path, preset = PRESET.split(":")
    config = config_lib.load_config_file(path, f"{preset},method_variant={variant}")
    with _Timer() as t:
        r = step_time.benchmark(config, steps, aot_only=False)
    steady = config.batch_size / r["examples_per_second"] * steps
    return {
        "part": f"train_{variant}",
        "batch": config.batch_size,
        "pgd_steps": config.attack.num_steps,
        "compile_seconds": r["compile_seconds"],
        "examples_per_second": r["examples_per_second"],
        "steady_wall_seconds": steady,
        "total_wall_seconds": t.wall,
        "total_user_seconds": t.user,
        "gflop_per_step": r["flops_per_step"] / 1e9,
    }


def bench_aa(n: int) -> dict:
    logits_fn, x, y = _model(n)
    runs = []
    for _ in range(2):
        with _Timer() as t:
            res = robust.evaluate(
                logits_fn,
                x,
                y,
                jax.random.key(2),
                eps=EPS,
                attacks_to_run=("aa_standard",),
                cascade=True,
                batch_size=n,
            )
        runs.append((t, res))
    (t1, r1), (t2, r2) = runs
    stages = {a: r2[a] for a in robust.AA_STANDARD}
    return {
        "part": "aa_standard_cascade",
        "n": n,
        "weights": "random init, uniform-noise inputs, labels = clean predictions",
        "clean": r2["clean"],
        "robust_after_stage": stages,
        "stage_seconds_run2": {a: r2[f"{a}_seconds"] for a in robust.AA_STANDARD},
        "compile_seconds": t1.wall - t2.wall,
        "steady_wall_seconds": t2.wall,
        "steady_user_seconds": t2.user,
        "examples_per_second": n / t2.wall,
        "first_run_wall_seconds": t1.wall,
        "first_run_user_seconds": t1.user,
    }


def bench_aa_stages(n: int, scale: int) -> dict:
    """Each AA stage alone on a model that fools nothing (ε = 1e-6): full loops, reduced budget."""
    logits_fn, x, y = _model(n)
    n_targets = max(1, 9 // scale)
    queries = 5000 // scale
    budgets = {
        "apgd-ce": (dict(), 1.0),
        "apgd-t": (dict(num_target_classes=n_targets), 9 / n_targets),
        "fab-t": (dict(num_target_classes=n_targets), 9 / n_targets),
        "square": (dict(square_queries=queries), 5000 / queries),
    }
    out: dict = {"part": "aa_stages_fully_robust", "n": n, "stages": {}}
    total = 0.0
    for name, (kw, factor) in budgets.items():
        jitted = jax.jit(robust.make_attack(name, logits_fn, eps=1e-6, **kw))
        key = jax.random.key(3)
        with _Timer() as tc:
            compiled = jitted.lower(jnp.asarray(x), jnp.asarray(y), key).compile()
        with _Timer() as ts:
            adv = jax.block_until_ready(compiled(jnp.asarray(x), jnp.asarray(y), key))
        still = float(np.mean(np.asarray(jnp.argmax(logits_fn(adv), -1)) == y))
        est = ts.wall * factor
        total += est
        out["stages"][name] = {
            "budget": kw,
            "compile_seconds": tc.wall,
            "measured_wall_seconds": ts.wall,
            "measured_user_seconds": ts.user,
            "robust_fraction": still,
            "extrapolation_factor": factor,
            "standard_budget_wall_seconds_est": est,
        }
    out["standard_total_wall_seconds_est"] = total
    out["examples_per_second_est"] = n / total
    return out


def bench_hedge(batch: int, repeats: int) -> dict:
    path = "configs/hedge_defense.py"
    hcfg = config_lib.load_config_file(path, "cifar10").hedge
    logits_fn, x, _ = _model(batch)
    fn = protocol.classifiers(logits_fn, hcfg)["hedge"]
    key = jax.random.key(4)
    with _Timer() as tc:
        compiled = fn.lower(jnp.asarray(x), key).compile()
    jax.block_until_ready(compiled(jnp.asarray(x), key))  # warm-up
    with _Timer() as ts:
        for i in range(repeats):
            pred = compiled(jnp.asarray(x), jax.random.fold_in(key, i))
        jax.block_until_ready(pred)
    return {
        "part": "hedge_inference",
        "batch": batch,
        "hedge": {k: hcfg[k] for k in ("eps", "step_size", "num_steps", "predict")},
        "compile_seconds": tc.wall,
        "steady_wall_seconds": ts.wall,
        "steady_user_seconds": ts.user,
        "examples_per_second": batch * repeats / ts.wall,
    }


def table(results: list[dict]) -> str:
    rows = [f"{'part':<26} {'compile s':>10} {'steady s':>10} {'examples/s':>11}"]
    for r in results:
        if "stages" in r:
            for name, s in r["stages"].items():
                est = f"~{s['standard_budget_wall_seconds_est']:.0f} s full"
                rows.append(
                    f"{'aa_stage ' + name:<26} {s['compile_seconds']:>10.1f} "
                    f"{s['measured_wall_seconds']:>10.1f} {est:>11}"
                )
            rows.append(
                f"{'aa_standard est (robust)':<26} {'':>10} "
                f"{r['standard_total_wall_seconds_est']:>10.0f} "
                f"{r['examples_per_second_est']:>11.4f}"
            )
            continue
        rows.append(
            f"{r['part']:<26} {r['compile_seconds']:>10.1f} "
            f"{r['steady_wall_seconds']:>10.1f} {r['examples_per_second']:>11.3f}"
        )
    return "\n".join(rows)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    os.makedirs(_CACHE.value, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", _CACHE.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    results = []
    for part in _WHAT.value:
        if part == "train":
            new = [bench_train(v, _TRAIN_STEPS.value) for v in _VARIANTS.value]
        elif part == "aa":
            new = [bench_aa(_AA_N.value)]
        elif part == "aa_stages":
            new = [bench_aa_stages(_AA_N.value, _STAGE_SCALE.value)]
        elif part == "hedge":
            new = [bench_hedge(_HEDGE_BATCH.value, _HEDGE_REPEATS.value)]
        else:
            raise ValueError(f"Unknown part {part!r}; expected train, aa, aa_stages or hedge.")
        results += new
        for r in new:
            print(json.dumps(r), flush=True)
    meta = {
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    text = json.dumps(meta, indent=2)
    print(text)
    print(table(results))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
