"""The one generic training loop: init/restore, one jitted step, log/eval/checkpoint cadence."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxpapers import checkpoint, config_lib, data, methods, metrics, parallel, stopping


class NonFiniteLossError(FloatingPointError):
    pass


write_config = metrics.write_config  # config.json (kept here for existing callers)


def state_shardings(state, mesh):
    """Every state leaf replicated over the mesh."""
    return jax.tree.map(lambda _: parallel.replicated(mesh), state)


NOT_PREPARED = object()  # The method has no prepare hook (prepare() may legitimately be None).


def prepare(method, config):
    """The method's ``prepare(config)`` result (host constants, computed once), or NOT_PREPARED."""
    fn = methods.hook(method, "prepare")
    return NOT_PREPARED if fn is None else fn(config)


def init_fn(method, config, prepared=None):
    """``(fn, args)`` with ``fn(*args)`` the initial state; jit it or ``jax.eval_shape`` it.

    ``prepared``: the result of ``prepare(method, config)``, computed here when not given. It
    enters ``init_state(rng, config, prepared=...)`` as a jit argument, not a closure constant,
    so data-fitted or pre-trained constants are not baked into the compiled program.
    """
    rng = jax.random.PRNGKey(config.seed)
    if prepared is None:
        prepared = prepare(method, config)
    if prepared is NOT_PREPARED:
        return functools.partial(method.init_state, config=config), (rng,)

    def fn(rng, prepared):
        return method.init_state(rng, config, prepared=prepared)

    return fn, (rng, prepared)


def init(method, config, mesh, prepared=None):
    """The initial state, created by one jitted call directly in its shardings (see init_fn)."""
    fn, args = init_fn(method, config, prepared)
    shardings = state_shardings(jax.eval_shape(fn, *args), mesh)
    return jax.jit(fn, out_shardings=shardings)(*args), shardings


class StepFunction:
    """The jitted train step: ``step_fn(state, batch, step)``, state donated, batch sharded.

    A method with several training phases (teacher → student stages, GAN → recognition) may
    define ``phase(config, step) -> hashable`` and take ``train_step(..., phase=...)``: the phase
    is then chosen on the host from the step count and each phase is compiled once (at most a
    handful of executables, no retrace within a phase, no device→host read). Why not ``lax.cond``
    on ``state.step``: XLA:CPU (jaxlib 0.10.2) runs convolutions inside conditional branches and
    loop bodies one to two orders of magnitude slower than at the top level (BigGAN default
    preset: one teacher iteration 1.35 s at top level, 56 s in a scan, > 100 s in a cond), and a
    static phase also drops the untaken branches' work from the program on every backend.
    """

    def __init__(self, method, config, mesh, shardings):
        self._method, self._config = method, config
        self._phase_fn = methods.hook(method, "phase")
        self._kwargs = dict(
            in_shardings=(shardings, parallel.data_sharding(mesh)),
            out_shardings=(shardings, parallel.replicated(mesh)),
            donate_argnums=0,
        )
        self._jits: dict = {}

    def phase(self, step: int):
        return None if self._phase_fn is None else self._phase_fn(self._config, int(step))

    def jitted(self, step: int):
        """The jitted function that runs global step ``step`` (created once per phase)."""
        p = self.phase(step)
        if p not in self._jits:
            extra = {} if p is None else {"phase": p}
            fn = functools.partial(self._method.train_step, config=self._config, **extra)
            self._jits[p] = jax.jit(fn, **self._kwargs)
        return self._jits[p]

    def __call__(self, state, batch, step: int):
        return self.jitted(step)(state, batch)

    def lower(self, state, batch, step: int = 0):
        return self.jitted(step).lower(state, batch)

    def num_compiles(self) -> int:
        return sum(f._cache_size() for f in self._jits.values())

    def phases_seen(self) -> list:
        return list(self._jits)


def compile_step(method, config, mesh, shardings) -> StepFunction:
    """The train step, jitted once per phase (see `StepFunction`)."""
    return StepFunction(method, config, mesh, shardings)


def restore_or_init(method, config, mesh, ckpt: checkpoint.Checkpointer):
    """Restore order: this workdir's latest, then ``resume_from``, then ``init_from`` (params)."""
    state, shardings = init(method, config, mesh)
    if ckpt.latest_step() is not None:
        print(f"Resuming from {ckpt.directory} step {ckpt.latest_step()}", flush=True)
        return ckpt.restore(state, fallback=bool(config.get("ckpt_fallback", False))), shardings
    if config.resume_from:
        print(f"Resuming from {config.resume_from}", flush=True)
        return checkpoint.restore_dir(config.resume_from, state), shardings
    if config.init_from:
        load_init = methods.hook(method, "load_init")
        if load_init is None:
            raise ValueError(
                f"Method {config.method!r} has no load_init hook; init_from is unsupported."
            )
        tree = checkpoint.restore_params(config.init_from)
        state = load_init(state, tree, config)
        state = jax.device_put(state, shardings)
        print(f"Initialised params from {config.init_from}", flush=True)
    return state, shardings


def _check_finite(step: int, scalars: dict) -> None:
    bad = {k: v for k, v in scalars.items() if not math.isfinite(float(v))}
    if bad:
        raise NonFiniteLossError(
            f"Non-finite metrics at step {step}: {bad}. The run stops here; the last good "
            "checkpoint is kept. Lower the learning rate or check the input data."
        )


@jax.jit
def _state_is_finite(state) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(state)
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _save_if_finite(ckpt, step: int, state, scalars, force: bool = False) -> None:
    """Saves ``state`` only if it and this step's metrics are finite, whatever the cadences.

    Finiteness is otherwise checked only at log steps, so a NaN state could become the newest
    checkpoint (ckpt_every not a multiple of log_every, or a SIGTERM save) and every re-run would
    resume it. Raising here keeps the last good checkpoint the newest one.
    """
    if scalars is not None:
        _check_finite(step, {k: float(v) for k, v in jax.device_get(scalars).items()})
    if not bool(jax.device_get(_state_is_finite(state))):
        raise NonFiniteLossError(
            f"Non-finite values in the train state at step {step}; it was not checkpointed and "
            "the last good checkpoint is kept. Lower the learning rate or check the input data."
        )
    ckpt.save(step, state, force=force)


def train_source(method, config, split="train"):
    make_source = methods.hook(method, "make_source")
    if make_source is not None:
        return make_source(config, split)
    return data.load(config.data, split)


def train(config, workdir: str) -> dict:
    """Trains ``config.method`` in ``workdir``; re-running the same call resumes.

    Returns (and writes to ``final_metrics.json``) ``train/<k>``: the last logged training
    scalars and ``train/seconds``, and ``eval/<k>``: the final evaluation.
    """
    parallel.maybe_initialize_distributed()
    method = methods.get(config.method)
    mesh = parallel.make_mesh()
    write_config(config, workdir)
    metrics.write_run_info(workdir)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.keep_ckpts)
    writer = None
    # SIGTERM (preemption) and SIGINT (Ctrl-C, a notebook's interrupt) stop after the current
    # step with a checkpoint; a second Ctrl-C interrupts at once (`jaxpapers.stopping`).
    restore_signals = stopping.install(signal.SIGTERM, signal.SIGINT)
    loader = None
    profiler = None
    finished = False
    try:
        # The data first: a missing data set fails in seconds, not after the model's compile.
        source = train_source(method, config)
        with jax.set_mesh(mesh):
            state, shardings = restore_or_init(method, config, mesh, ckpt)
            start = int(jax.device_get(state.step))
            # Rows a killed run wrote after its last checkpoint are re-written by this run.
            metrics.truncate_after(os.path.join(workdir, "metrics.jsonl"), start)
            writer = metrics.MetricWriter(workdir, start_step=start)
            writer.write_config(config)
            step_fn = compile_step(method, config, mesh, shardings)
            # data.pipeline: 'memory' (a thread reads the source) or 'stream' (grain workers
            # decode and augment); both give the batches of order.py, so resuming is exact.
            loader = data.make_loader(source, config, mesh, start_step=start)
            progress = metrics.Progress(
                config.num_train_steps,
                config.batch_size,
                start,
                eval_every=config.eval_every,
                final_eval=methods.hook(method, "evaluate") is not None,
            )
            last: dict = {}
            t_start = time.time()
            profiler = Profiler(config.profile_steps, workdir)
            for step in range(start, config.num_train_steps):
                profiler.before(step)
                batch = next(loader)
                compiling = _compile_begins(step_fn, step, progress)
                state, scalars = step_fn(state, batch, step)
                done = step + 1
                profiler.after(done, scalars)
                if compiling:
                    _compile_ends(step_fn, step, scalars, progress)
                # The first step of a launch is logged at once (the line right after the
                # compilation), then every log_every steps.
                if done % config.log_every == 0 or done == config.num_train_steps or step == start:
                    last = {k: float(v) for k, v in jax.device_get(scalars).items()}
                    _check_finite(done, last)
                    writer.write(done, last, "train/")
                    progress.print(done, last)
                if config.ckpt_every and done % config.ckpt_every == 0:
                    _save_if_finite(ckpt, done, state, scalars)
                if (
                    config.eval_every
                    and done % config.eval_every == 0
                    and done < config.num_train_steps
                ):
                    _evaluate(method, state, config, workdir, writer, done, progress)
                signum = _stop_agreed(stopping.requested(), done, config)
                if signum is not None:
                    return _stop(ckpt, done, state, scalars, last, signum)
            result = _finish(method, state, config, workdir, ckpt, writer, progress, last)
            result["train/seconds"] = time.time() - t_start
            metrics.write_final(workdir, result)
            finished = True
            return result
    finally:
        restore_signals()
        if profiler is not None:
            profiler.close()
        if loader is not None:
            loader.close()
        ckpt.close()
        if writer is not None:
            writer.close(success=finished)


def _stop(ckpt, done: int, state, scalars, last: dict, signum: int) -> dict:
    """Saves step ``done`` after a stop by ``signum`` and says how to resume."""
    # The cadence may just have saved this very step (orbax refuses a second save of one step,
    # which lost the stop message and crashed).
    if ckpt.latest_step() != done:
        _save_if_finite(ckpt, done, state, scalars, force=True)
    ckpt.wait()
    print(
        f"Stopped by {stopping.name(signum)} at step {done}; checkpoint saved. "
        "Re-run the same command to resume.",
        flush=True,
    )
    return {"stopped_at": done, "stopped_by": signum, **_prefixed(last, "train/")}


def _finish(method, state, config, workdir, ckpt, writer, progress, last: dict) -> dict:
    """The final checkpoint and evaluation: ``train/<k>`` (last logged) and ``eval/<k>``."""
    final_step = int(jax.device_get(state.step))
    if jax.process_count() > 1:  # Lets a multi-host user (and the test) compare hosts.
        print(
            f"process {jax.process_index()}/{jax.process_count()}: final state "
            f"checksum {state_checksum(state)}",
            flush=True,
        )
    if ckpt.latest_step() != final_step:
        _save_if_finite(ckpt, final_step, state, None, force=True)
    ckpt.wait()
    result = _prefixed(last, "train/")
    result.update(_evaluate(method, state, config, workdir, writer, final_step, progress))
    return result


class Profiler:
    """``config.profile_steps="a:b"``: a ``jax.profiler`` trace of global steps [a, b).

    The trace starts before step a's batch is fetched and stops after step b-1's results are
    ready (``block_until_ready``), so it holds whole steps: input, dispatch and device work. A
    resumed run past ``b`` records nothing; one that stops inside the range closes the trace.
    """

    def __init__(self, spec: str, workdir: str):
        self._range = config_lib.profile_range(spec)
        self._dir = os.path.join(workdir, "profile")
        self._on = False

    def before(self, step: int) -> None:
        if self._range and step == self._range[0] and not self._on:
            jax.profiler.start_trace(self._dir)
            self._on = True
            print(f"Profiling steps {self._range[0]}:{self._range[1]} -> {self._dir}", flush=True)

    def after(self, done: int, scalars) -> None:
        if self._on and done >= self._range[1]:
            jax.block_until_ready(scalars)
            self.close()

    def close(self) -> None:
        if self._on:
            jax.profiler.stop_trace()
            self._on = False
            print(f"Profile written to {self._dir}", flush=True)


def _prefixed(scalars: dict, prefix: str) -> dict:
    return {f"{prefix}{k}": v for k, v in scalars.items()}


def _compile_begins(step_fn: StepFunction, step: int, progress: metrics.Progress) -> bool:
    """Announces the compilation when ``step`` is the first of its phase in this launch."""
    phase = step_fn.phase(step)
    if phase in step_fn.phases_seen():
        return False
    progress.compile_started(step, phase)
    return True


def _compile_ends(step_fn: StepFunction, step: int, scalars, progress: metrics.Progress):
    """Reports the compilation (the jitted call returns once compiled and dispatched), then
    waits for that first step so the steady-state clock starts after it."""
    progress.compile_finished(step + 1, step_fn.phase(step))
    jax.block_until_ready(scalars)
    progress.restart(step + 1)


def _stop_agreed(local: int | None, done: int, config) -> int | None:
    """The signal to stop by after step ``done`` (SIGTERM: preemption; SIGINT: Ctrl-C), or None.

    With several processes the signal may reach them at different steps, and a host that stops
    alone would leave the others waiting in the next collective (or in the checkpoint save).
    So the hosts agree: at every ``log_every``-th step (the same steps on every host) they
    all-gather their signals and all stop by the first host's, so they also exit alike.
    """
    if jax.process_count() == 1:
        return local
    if done % config.log_every:
        return None
    signums = np.ravel(multihost_utils.process_allgather(np.int32(local or 0)))
    received = [int(s) for s in signums if s]
    return received[0] if received else None


def state_checksum(state) -> str:
    """sha256 of this process's first addressable copy of every state leaf (replicated leaves
    must give the same digest on every host)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf
        h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
    return h.hexdigest()[:16]


def _evaluate(method, state, config, workdir, writer, step, progress=None) -> dict:
    """Runs the method's evaluation; logs its scalars and the pictures it wrote at ``step``."""
    evaluate = methods.hook(method, "evaluate")
    if evaluate is None:
        return {}
    t0 = time.time()
    result = {k: float(v) for k, v in evaluate(state, config, workdir).items()}
    writer.write(step, result, "eval/")
    writer.write_new_pictures(step)
    seconds = time.time() - t0
    if progress is not None:
        progress.eval_finished(step, result, seconds)
    elif jax.process_index() == 0:
        vals = " ".join(f"{k}={v:.4g}" for k, v in result.items())
        print(f"eval step {step} ({seconds:.1f} s): {vals}", flush=True)
    return {f"eval/{k}": v for k, v in result.items()}
