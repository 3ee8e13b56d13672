"""Compile-and-memory report: XLA's memory and cost analysis of each paper preset's train step.

    python -m jaxpapers.tools.memory_report --out=memory_report.json --md=memory_report.md
    python -m jaxpapers.tools.memory_report --presets=stylegan2_dgl:ffhq1024 --per_device_batch=2

For every preset (default: all of ``PAPER_PRESETS``) the train step is lowered and compiled for
ONE device at the per-device batch (the paper batch split over the devices the paper or its
official code assumes, or ``--per_device_batch``) from abstract inputs only: the batch from the
method's ``input_spec`` and the state from ``jax.eval_shape`` of its ``init_state``, so no data,
parameter or pre-trained file is read or allocated. What one device holds in data parallelism
(the state replicated, the batch split; ``jaxpapers.parallel``) is this one-device program plus
the gradient all-reduce buffers.

Per preset the report gives ``compiled.memory_analysis()`` (argument, output, alias, temp and
generated-code bytes and XLA's peak estimate) and ``compiled.cost_analysis()`` FLOPs of one step
(XLA counts a ``while``/``scan`` body once, not once per iteration). These are XLA:CPU's figures:
GPU and TPU compilers fuse, lay out and rematerialise differently, so their peak differs; treat the
numbers as the size of the state plus the live activations of one step, not as a measured device
peak. A preset that fails to compile, or takes longer than ``--timeout_s``, is reported as not
measured, with the reason.

Writes ``--out`` (JSON: one record per preset) and ``--md`` (a Markdown table); prints the table.
Each preset is compiled in its own child process (a slow compile can be stopped, and the memory of
one compile is returned before the next one starts).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue
import time
import traceback

from absl import flags

from jaxpapers.tools import cli

GB = 1e9


@dataclasses.dataclass(frozen=True)
class Preset:
    """A paper preset and the data-parallel layout its batch is reported for.

    ``devices``: the devices the paper batch is split over (the official code's GPU count where it
    says so, else 1: the whole paper batch on one device). ``stage``: for the DGL methods, which
    training stage to compile (``2``: the student with the teacher term, the heaviest).
    """

    arg: str  # "<method>:<preset>[,overrides]"
    devices: int
    why: str
    stage: int | None = None

    @property
    def method(self) -> str:
        return self.arg.split(":", 1)[0]


PAPER_PRESETS = (
    Preset("stylegan2_dgl:ffhq1024", 8, "official StyleGAN2 config-f: 8 GPUs x 4", stage=2),
    Preset("stylegan2_dgl:ffhq256", 8, "batch 32 over 8 GPUs, as config-f", stage=2),
    Preset("biggan_dgl:imagenet128", 8, "BigGAN-PyTorch 256x8 on 8 GPUs; here one step", stage=2),
    Preset("biggan_dgl:cifar10", 1, "whole batch on one device", stage=2),
    Preset("trace_vidsgg:action_genome", 8, "official TRACE: 1 key frame per GPU x 8"),
    Preset("trace_vidsgg:vidvrd", 8, "official TRACE: 1 key frame per GPU x 8"),
    Preset("classifier:cifar10", 1, "whole batch on one device"),
    Preset("rat:cifar10_preact18", 1, "whole batch on one device"),
    Preset("rat:cifar10_wrn34", 1, "whole batch on one device"),
    Preset("stra:market1501", 1, "whole batch on one device"),
    Preset("stra:imagenet", 1, "whole batch on one device"),
    Preset("from_occlusion:casia_webface", 1, "whole batch on one device"),
    Preset("synface:casia_webface", 1, "whole batch on one device"),
    Preset("unifacegan:paper", 1, "whole batch on one device"),
    Preset("faceanime:paper", 1, "whole batch on one device"),
)
SMOKE_PRESETS = (
    Preset("classifier:smoke", 1, "test"),
    Preset("trace_vidsgg:smoke", 1, "test"),
)

MEMORY_FIELDS = (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "alias_size_in_bytes",
    "temp_size_in_bytes",
    "generated_code_size_in_bytes",
    "peak_memory_in_bytes",
)


def find_preset(arg: str, devices: int = 0, per_device_batch: int = 0) -> Preset:
    """The PAPER/SMOKE entry for ``arg`` (its layout), or a one-device entry for another preset."""
    for p in PAPER_PRESETS + SMOKE_PRESETS:
        if p.arg == arg:
            return dataclasses.replace(p, devices=devices) if devices else p
    return Preset(arg, devices or 1, "given on the command line")


# ---------------------------------------------------------------------- abstract prepare()


def _identity_net_abstract(cfg):
    """Shapes of a trained `face_identity.IdentityModel` (its weights do not change its shape)."""
    import jax
    import jax.numpy as jnp

    from jaxpapers.lib import face_identity as fi

    def build():
        v = fi.build_net(cfg).init(jax.random.key(0), jnp.zeros((1, *cfg.size, 1)), train=False)
        return fi.IdentityModel(params=v["params"], batch_stats=v["batch_stats"], config=cfg)

    return jax.eval_shape(build)


def _faceanime_prepared(config):
    import jax
    import numpy as np

    from jaxpapers.data import face_video
    from jaxpapers.lib import face_identity as fi
    from jaxpapers.methods.faceanime import dynamics

    c, k, v = config.identity, int(config.model.expr_k), face_video.V
    cfg = fi.IdentityConfig(
        size=tuple(c.size), widths=tuple(c.widths), depths=tuple(c.depths), embed_dim=c.embed_dim
    )
    f32 = lambda *s: jax.ShapeDtypeStruct(s, np.float32)  # noqa: E731
    geom = dynamics.Geometry(
        reference=f32(v, 3),
        basis_mean=f32(v, 3),
        basis=f32(k, v, 3),
        basis_std=f32(k),
        p_std=f32(dynamics.POSE_DIM + k),
        size=f32(),
    )
    return {"geom": geom, "id_model": _identity_net_abstract(cfg)}


def _unifacegan_prepared(config):
    from jaxpapers.lib import face_identity as fi
    from jaxpapers.methods.unifacegan import identity

    if not identity.enabled(config):
        return {"identity": None}
    size = (int(config.identity.size),) * 2
    return {"identity": _identity_net_abstract(fi.IdentityConfig(size=size))}


def _trace_prepared(config):
    # Every prepared value (data frequencies, converted backbones, GloVe vectors) replaces a
    # parameter of the same shape and dtype (steps.init_state checks it): none changes the state.
    del config
    return {}


# Methods whose prepare() reads data or pre-trained files at paper scale: a stand-in of its result
# as shapes, from which init_state builds a state of the same shapes as from the real one
# (tests/test_memory_report.py checks it on smoke presets). stylegan2_dgl's prepare needs only
# `teacher.weights`, empty in the paper presets.
ABSTRACT_PREPARE = {
    "faceanime": _faceanime_prepared,
    "unifacegan": _unifacegan_prepared,
    "trace_vidsgg": _trace_prepared,
}


def abstract_prepared(method_name: str, method, config):
    """``prepare(config)``'s result as shapes (or the real result when it needs no files)."""
    from jaxpapers import trainer

    if method_name in ABSTRACT_PREPARE:
        return ABSTRACT_PREPARE[method_name](config)
    return trainer.prepare(method, config)


# ----------------------------------------------------------------------------- measuring


def _phase_step(config, stage: int | None) -> int:
    """The global step whose phase is compiled: the first step of DGL ``stage``, else 0."""
    if stage is None:
        return 0
    from jaxpapers.lib import dgl

    bounds = (0,) + tuple(dgl.phase_bounds(config))
    return int(bounds[stage])


def measure(preset: Preset, per_device_batch: int = 0) -> dict:
    """Lowers and compiles ``preset``'s train step for one device from abstract inputs."""
    import jax

    from jaxpapers import config_lib, methods, parallel, trainer

    paper_batch = int(config_lib.load(preset.arg).batch_size)
    b = per_device_batch or paper_batch // preset.devices
    if b < 1 or (not per_device_batch and paper_batch % preset.devices):
        raise ValueError(
            f"{preset.arg}: batch {paper_batch} does not split over {preset.devices} devices; "
            "pass --per_device_batch."
        )
    config = config_lib.load(preset.arg, {"batch_size": b})  # as --config.batch_size=b
    method = methods.get(config.method)
    if method.kind != "train":
        raise ValueError(f"{config.method} is an analysis method: it has no train step.")
    step = _phase_step(config, preset.stage)
    mesh = parallel.make_mesh(jax.devices()[:1])
    with jax.set_mesh(mesh):
        prepared = abstract_prepared(config.method, method, config)
        fn, args = trainer.init_fn(method, config, prepared)
        abstract = jax.eval_shape(fn, *args)
        shardings = trainer.state_shardings(abstract, mesh)
        step_fn = trainer.compile_step(method, config, mesh, shardings)
        data = parallel.data_sharding(mesh)
        batch = {
            k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=data)
            for k, v in method.input_spec(config).items()
        }
        state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
        )
        t0 = time.perf_counter()
        lowered = step_fn.lower(state, batch, step)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    memory = {f: int(getattr(mem, f)) for f in MEMORY_FIELDS}
    # What one device must hold at once: inputs, outputs not written in place of a donated input,
    # temporaries and the program (XLA's own peak estimate is kept next to it).
    peak = (
        memory["argument_size_in_bytes"]
        + memory["output_size_in_bytes"]
        - memory["alias_size_in_bytes"]
        + memory["temp_size_in_bytes"]
        + memory["generated_code_size_in_bytes"]
    )
    state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(abstract))
    return {
        "preset": preset.arg,
        "status": "measured",
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "paper_batch": paper_batch,
        "devices_assumed": preset.devices,
        "devices_why": preset.why,
        "per_device_batch": b,
        "step": step,
        "phase": repr(step_fn.phase(step)),
        "state_bytes": int(state_bytes),
        "memory": memory,
        "peak_bytes_per_device": int(peak),
        "flops_per_step": _flops(compiled),
        "lower_seconds": round(t1 - t0, 2),
        "compile_seconds": round(t2 - t1, 2),
    }


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def _child(preset: Preset, per_device_batch: int, out: multiprocessing.Queue) -> None:
    try:
        out.put(measure(preset, per_device_batch))
    except Exception as e:  # Reported as "not measured" with its reason, the next preset runs.
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        out.put({"status": "failed", "reason": reason, "traceback": traceback.format_exc()})


def measure_in_child(preset: Preset, per_device_batch: int = 0, timeout_s: float = 0) -> dict:
    """`measure` in a fresh process; ``timeout_s`` > 0 stops a compile that takes longer."""
    ctx = multiprocessing.get_context("spawn")  # A fresh JAX: no fork of an initialised runtime.
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(preset, per_device_batch, q), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    try:
        result = q.get(timeout=timeout_s or None)
    except queue.Empty:
        result = {"status": "timeout", "reason": f"compile did not finish within {timeout_s:g} s"}
    finally:
        proc.join(timeout=60)  # A finished child exits by itself; a timed-out one is stopped.
        if proc.is_alive():
            proc.terminate()
            proc.join()
    if "preset" not in result:
        result = {"preset": preset.arg, "devices_assumed": preset.devices, **result}
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return result


# -------------------------------------------------------------------------------- output


def verdict(peak_bytes: float, per_device_batch: int, paper_batch: int) -> str:
    """Which common accelerator memory holds the step at this per-device batch (10 % of each
    device's memory is left to the runtime and fragmentation)."""
    b, need = per_device_batch, -(-paper_batch // per_device_batch)
    layout = f"at batch {b}/device ({need} device(s) for batch {paper_batch})"
    fits = lambda gb: peak_bytes <= 0.9 * gb * GB  # noqa: E731
    if fits(16):
        return f"fits a 16 GB TPU v4 core {layout}"
    if fits(40):
        return f"fits a 40 GB GPU {layout}; not a 16 GB TPU v4 core"
    if fits(80):
        return f"fits an 80 GB GPU {layout}; not a 40 GB GPU"
    h200 = "fits a 141 GB H200" if fits(141) else "over 141 GB too"
    return f"over 80 GB {layout} ({h200}): more devices or gradient accumulation"


def _gb(x: float) -> str:
    return f"{x / GB:.3g}"


def markdown(results: list[dict]) -> str:
    head = (
        "| preset | batch (paper) | devices assumed | per-device batch | phase | peak GB/device "
        "| state GB | temp GB | GFLOP/step | compile s | conclusion |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    rows = []
    for r in results:
        if r["status"] != "measured":
            rows.append(
                f"| `{r['preset']}` | | {r.get('devices_assumed', '')} | | | not measured "
                f"| | | | | {r['status']}: {r.get('reason', '')} |"
            )
            continue
        m = r["memory"]
        rows.append(
            f"| `{r['preset']}` | {r['paper_batch']} | {r['devices_assumed']} "
            f"| {r['per_device_batch']} | `{r['phase']}` | {_gb(r['peak_bytes_per_device'])} "
            f"| {_gb(r['state_bytes'])} | {_gb(m['temp_size_in_bytes'])} "
            f"| {r['flops_per_step'] / 1e9:.4g} | {r['compile_seconds']:.0f} "
            f"| {verdict(r['peak_bytes_per_device'], r['per_device_batch'], r['paper_batch'])} |"
        )
    return head + "\n".join(rows) + "\n"


def report(presets, per_device_batch: int = 0, timeout_s: float = 0, out: str = "", md: str = ""):
    """Measures ``presets`` one at a time; writes ``out``/``md`` after each (a partial report
    survives an interrupted run). Returns the list of records."""
    results = []
    for p in presets:
        results.append(measure_in_child(p, per_device_batch, timeout_s))
        if out:
            with open(out, "w") as f:
                json.dump(results, f, indent=2)
                f.write("\n")
        if md:
            with open(md, "w") as f:
                f.write(markdown(results))
    return results


def define_flags() -> None:
    flags.DEFINE_list("presets", [], "method:preset[,overrides] entries (default: PAPER_PRESETS)")
    flags.DEFINE_integer("per_device_batch", 0, "per-device batch (0: paper batch / devices)")
    flags.DEFINE_integer("devices", 0, "devices the paper batch is split over (0: the table's)")
    flags.DEFINE_float("timeout_s", 1800, "per-preset compile limit in seconds (0: none)")
    flags.DEFINE_string("out", "", "JSON output path")
    flags.DEFINE_string("md", "", "Markdown table output path")


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    if F.per_device_batch < 0 or F.devices < 0:
        raise cli.BadInput("--per_device_batch and --devices must be >= 0.")
    if F.per_device_batch and F.devices:
        raise cli.BadInput("give --per_device_batch or --devices, not both.")
    for path in (F.out, F.md):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise cli.BadInput(f"the folder of {path!r} does not exist.")
    presets = [find_preset(a, F.devices) for a in F.presets] if F.presets else PAPER_PRESETS
    results = report(presets, F.per_device_batch, F.timeout_s, F.out, F.md)
    print(markdown(results))


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
