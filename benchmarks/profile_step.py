"""Where a PreActResNet-18 workload's time goes on XLA:CPU: per-HLO-op time from a profiler trace.

    python -m benchmarks.profile_step --workload=train --shape=32,32,3 --out=prof_train.json
    taskset -c 0 python -m benchmarks.profile_step --workload=train --out=prof_train_1core.json
    python -m benchmarks.profile_step --workload=pgd --iters=2      # PGD-2 + update
    python -m benchmarks.profile_step --workload=hedge --iters=2    # hedge, 2 defense steps
    python -m benchmarks.profile_step --compare=prof_train_1core.json,prof_train.json

Builds the workload of ``benchmarks.resnet_step`` (``train``, ``pgd``) or
``benchmarks.hedge_unroll`` (``hedge``), compiles it ahead of time, runs ``--warmup`` untimed
calls, then traces ``--steps`` calls with ``jax.profiler.trace`` and XLA:CPU's per-thunk trace
events (``--xla_cpu_enable_xprof_traceme=true``). Every thunk event is matched to its HLO
instruction in the compiled module and summed per instruction and per category (convolution,
dot, loop / reduction fusion, copy, ...), next to the traced steps' wall and process CPU seconds
(CPU / wall = the cores the process kept busy).

Which ops use both cores: run the same command once pinned to one core (``taskset -c 0``) and
once free, then ``--compare=ONE_CORE.json,TWO_CORES.json`` prints each category's and each large
op's time ratio: about 2 = it ran on both cores, about 1 = one thread did the work.
"""

from __future__ import annotations

import os

if "--xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
    ).strip()

import collections  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks import _timing, resnet_step  # noqa: E402
from jaxpapers import optim, state  # noqa: E402
from jaxpapers.layers import resnet  # noqa: E402

_WORKLOAD = flags.DEFINE_enum("workload", "train", ["train", "pgd", "hedge"], "What to profile.")
_ITERS = flags.DEFINE_integer("iters", 2, "PGD / hedge inner iterations (unrolled).")
_TOP = flags.DEFINE_integer("top", 25, "Largest instructions listed in 'top'.")
_COMPARE = flags.DEFINE_list("compare", [], "ONE_CORE.json,TWO_CORES.json: print time ratios.")
# --shape, --batch, --conv, --steps, --warmup, --out: benchmarks.resnet_step's flags.
_SHAPE, _BATCH, _CONV = resnet_step._SHAPE, resnet_step._BATCH, resnet_step._CONV
_STEPS, _WARMUP, _OUT = resnet_step._STEPS, resnet_step._WARMUP, resnet_step._OUT

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) (\w[\w\-]*)\(")


def _workload():
    shape = tuple(int(s) for s in _SHAPE.value)
    b = _BATCH.value
    model = resnet.PreActResNet18(10, conv=_CONV.value)
    variables = model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((b, *shape), np.float32))
    if _WORKLOAD.value == "hedge":
        from jaxpapers.methods.hedge_defense import defense

        def call(variables, x, key):
            return defense.hedge(
                lambda v: model.apply(variables, v, train=False),
                x,
                key,
                eps=0.031,
                step_size=0.007,
                num_steps=_ITERS.value,
                predict="final",
                unroll=True,
            )

        return call, (variables, x, jax.random.key(2)), False
    tx = optim.make(resnet_step.optimizer_config())
    st = state.TrainState.create(
        variables["params"], tx, jax.random.key(1), variables["batch_stats"]
    )
    y = jnp.asarray(rng.integers(0, 10, b), jnp.int32)
    pgd = _ITERS.value if _WORKLOAD.value == "pgd" else 0
    return resnet_step.make_step(model, tx, pgd, True), (st, x, y), True


def _hlo_index(text: str) -> dict[str, dict]:
    """instruction name -> opcode, shape and a category, for the ENTRY computation's ops."""
    index, fused_roots, comp, in_entry = {}, {}, None, False
    for line in text.splitlines():
        if line and not line.startswith(" ") and "{" in line:
            in_entry = line.startswith("ENTRY")
            comp = line.split()[1 if in_entry else 0].lstrip("%")
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name, shape, op = m.groups()
        if line.lstrip().startswith("ROOT") and not in_entry:
            fused_roots[comp] = op
        if in_entry:
            index[name] = {"op": op, "shape": shape, "line": line.strip()[:240]}
    for info in index.values():
        cat, line = info["op"], info["line"]
        if cat == "fusion":
            kind = re.search(r"kind=(\w+)", line)
            calls = re.search(r"calls=%?([\w.\-]+)", line)
            root = fused_roots.get(calls.group(1), "?") if calls else "?"
            tag = next((t for t in ("xnn", "onednn", "ynn") if t in line), "")
            cat = f"fusion:{kind.group(1) if kind else '?'}:{root}{':' + tag if tag else ''}"
        elif cat == "custom-call":
            target = re.search(r'custom_call_target="([^"]+)"', line)
            cat = f"custom-call:{target.group(1) if target else '?'}"
        info["category"] = cat
    return index


def _trace_events(trace_dir: str) -> list[dict]:
    paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise RuntimeError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(paths[0], "rt") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def _profile() -> dict:
    fn, args, carry = _workload()
    compiled, compile_s, call = _timing.compile_stepper(fn, args, carry)
    index = _hlo_index(compiled.as_text())
    for _ in range(_WARMUP.value):
        call()
    load_before = _timing.load_average()
    n = _STEPS.value
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            r0, c0, t0 = (
                resource.getrusage(resource.RUSAGE_SELF),
                time.process_time(),
                time.perf_counter(),
            )
            for _ in range(n):
                call()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
        events = _trace_events(trace_dir)
    per_op = collections.defaultdict(float)
    threads = collections.defaultdict(float)
    unmatched = collections.defaultdict(float)
    for e in events:
        s = e["dur"] / 1e6 / n
        if e["name"] in index:
            per_op[e["name"]] += s
            threads[str(e.get("tid"))] += s
        else:
            unmatched[e["name"]] += s
    cats = collections.defaultdict(lambda: [0.0, 0])
    for name, s in per_op.items():
        cats[index[name]["category"]][0] += s
        cats[index[name]["category"]][1] += 1
    ops = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {
        "workload": _WORKLOAD.value,
        "shape": [int(s) for s in _SHAPE.value],
        "batch": _BATCH.value,
        "conv": _CONV.value,
        "iters": _ITERS.value,
        "affinity_cores": len(os.sched_getaffinity(0)),
        "compile_seconds": round(compile_s, 2),
        "wall_s_per_step": round(wall / n, 4),
        "cpu_s_per_step": round(cpu / n, 4),
        "cores_busy": round(cpu / wall, 3),
        # Kernel time, mostly first-touch page faults of buffers XLA allocates afresh every call.
        "system_cpu_s_per_step": round((r1.ru_stime - r0.ru_stime) / n, 4),
        "minor_page_faults_per_step": (r1.ru_minflt - r0.ru_minflt) // n,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "op_s_per_step": round(sum(per_op.values()), 4),
        "op_s_per_thread": {k: round(v, 4) for k, v in threads.items()},
        "categories": {
            k: {"s": round(s, 4), "count": c}
            for k, (s, c) in sorted(cats.items(), key=lambda kv: -kv[1][0])
        },
        "ops": {
            name: {
                "s": round(s, 5),
                "category": index[name]["category"],
                "line": index[name]["line"],
            }
            for name, s in ops[:200]
        },
        "top": [name for name, _ in ops[: _TOP.value]],
        "unmatched_events_s": {
            k: round(v, 4) for k, v in sorted(unmatched.items(), key=lambda kv: -kv[1])[:15]
        },
        "load_average_before": load_before,
        "load_average_after": _timing.load_average(),
        **_timing.environment(),
    }


def _compare(one_path: str, two_path: str) -> dict:
    with open(one_path) as f:
        one = json.load(f)
    with open(two_path) as f:
        two = json.load(f)
    ratio = lambda a, b: round(a / max(b, 1e-9), 2)
    cats = {}
    for k, v in one["categories"].items():
        b = two["categories"].get(k, {}).get("s", 0.0)
        cats[k] = {"one_core_s": v["s"], "two_cores_s": b, "speedup": ratio(v["s"], b)}
    ops = {}
    for name in two["top"]:
        if name in one["ops"]:
            a, b = one["ops"][name]["s"], two["ops"][name]["s"]
            line = two["ops"][name]["line"][:160]
            ops[name] = {"one_core_s": a, "two_cores_s": b, "speedup": ratio(a, b), "line": line}
    walls = [one["wall_s_per_step"], two["wall_s_per_step"]]
    return {"wall_s_per_step": walls, "categories": cats, "ops": ops}


def main(argv) -> None:
    del argv
    if _COMPARE.value:
        if len(_COMPARE.value) != 2:
            raise app.UsageError("--compare takes two JSON paths: ONE_CORE.json,TWO_CORES.json")
        _timing.emit(_compare(*_COMPARE.value), _OUT.value)
        return
    _timing.emit(_profile(), _OUT.value)


if __name__ == "__main__":
    app.run(main)
