"""Reusable checks for the tests of every method (the standard jit test, CONTRIBUTING.md)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import methods, parallel, trainer


def random_batch(spec: dict[str, jax.ShapeDtypeStruct], seed: int = 0, int_high: int = 2) -> dict:
    """A host batch matching ``input_spec``: uint8 images, small non-negative ints, normals."""
    r = np.random.default_rng(seed)
    out = {}
    for k, s in spec.items():
        if s.dtype == jnp.uint8:
            out[k] = r.integers(0, 256, s.shape, dtype=np.uint8)
        elif jnp.issubdtype(s.dtype, jnp.integer):
            out[k] = r.integers(0, int_high, s.shape).astype(s.dtype)
        elif s.dtype == jnp.bool_:
            out[k] = r.random(s.shape) < 0.5
        else:
            out[k] = r.normal(size=s.shape).astype(s.dtype)
    return out


def make_batches(method, config, steps: int):
    """Real batches from the method's source when it has one, else random ones of the spec."""
    spec = method.input_spec(config)
    make_source = methods.hook(method, "make_source")
    if make_source is not None:
        src = make_source(config, "train")
        n = len(next(iter(src.values())))
        return [
            {
                k: np.asarray(v[(np.arange(config.batch_size) + i * config.batch_size) % n])
                for k, v in src.items()
            }
            for i in range(steps)
        ]
    return [random_batch(spec, seed=i) for i in range(steps)]


def _run(method, config, batches, mesh, prepared):
    state, shardings = trainer.init(method, config, mesh, prepared)
    step_fn = trainer.compile_step(method, config, mesh, shardings)
    structure0 = jax.tree.structure(state)
    shapes0 = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    params0 = jax.device_get(state.params) if hasattr(state, "params") else jax.device_get(state)
    metrics = []
    for i, b in enumerate(batches):
        state, m = step_fn(state, parallel.global_batch(b, mesh), i)
        metrics.append(jax.device_get(m))
    return state, shardings, structure0, shapes0, params0, metrics, step_fn


def check_train_step_jit(method_name: str, config, steps: int = 2, batches=None):
    """Two (or ``steps``) jitted steps on all (fake) devices, with the suite's invariants.

    Asserts: finite loss; params change; state structure, shapes, dtypes and shardings unchanged;
    exactly one compilation per phase (no retrace); the same seed gives bit-identical metrics
    and state.
    Returns the final state and the metrics of every step.
    """
    method = methods.get(method_name)
    mesh = parallel.make_mesh()
    assert mesh.devices.size == jax.device_count()
    parallel.check_batch_size(config.batch_size, mesh)
    batches = batches if batches is not None else make_batches(method, config, steps)
    spec = method.input_spec(config)
    for b in batches:
        assert set(b) == set(spec), f"batch keys {set(b)} != input_spec keys {set(spec)}"
        for k, s in spec.items():
            assert b[k].shape == s.shape and b[k].dtype == s.dtype, (k, b[k].shape, s)
    prepared = trainer.prepare(method, config)  # Once on the host, shared by both runs.
    with jax.set_mesh(mesh):
        state, shardings, structure0, shapes0, params0, metrics, step_fn = _run(
            method, config, batches, mesh, prepared
        )
        for i, m in enumerate(metrics):
            assert "loss" in m, f"step {i}: metrics lack 'loss': {sorted(m)}"
            for k, v in m.items():
                assert np.all(np.isfinite(v)), f"step {i}: metric {k} is not finite: {v}"
        assert jax.tree.structure(state) == structure0, "state structure changed"
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == shapes0, (
            "state shapes/dtypes changed"
        )
        flat_sh = jax.tree.leaves(
            jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), state, shardings)
        )
        assert all(flat_sh), "state shardings changed"
        phases = step_fn.phases_seen()
        assert step_fn.num_compiles() == len(phases), (
            f"train_step compiled {step_fn.num_compiles()} times for phases {phases}"
        )
        params1 = (
            jax.device_get(state.params) if hasattr(state, "params") else jax.device_get(state)
        )
        changed = jax.tree.leaves(
            jax.tree.map(lambda a, b: not np.array_equal(a, b), params0, params1)
        )
        assert any(changed), "no parameter changed after the train steps"
        assert int(jax.device_get(state.step)) == len(batches), "state.step must count the steps"
        # Determinism: a second run from the same seed gives bit-identical results.
        state2, _, _, _, _, metrics2, _ = _run(method, config, batches, mesh, prepared)
        for m1, m2 in zip(metrics, metrics2, strict=False):
            for k in m1:
                np.testing.assert_array_equal(m1[k], m2[k], err_msg=f"metric {k} not deterministic")
        for a, b in zip(
            jax.tree.leaves(jax.device_get(state)),
            jax.tree.leaves(jax.device_get(state2)),
            strict=False,
        ):
            np.testing.assert_array_equal(a, b, err_msg="state not deterministic")
    return state, metrics


def initial_run(config, workdir: str):
    """A run directory as the trainer writes it (config.json + a step-0 checkpoint), without
    training: what the tools that read a finished run (``generate``, ``gan_metrics``) need when
    a test checks the tool and not the training. Returns the state saved."""
    from jaxpapers import checkpoint

    method = methods.get(config.method)
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, _ = trainer.init(method, config, mesh)
    state = jax.device_get(state)
    trainer.write_config(config, workdir)
    ck = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, async_save=False)
    ck.save(0, state, force=True)
    ck.close()
    return state


def launch_processes(
    cmd: list[str], *, cwd: str, num: int = 2, devices: int = 2, env: dict | None = None
) -> list:
    """Starts ``num`` copies of ``cmd`` as one ``jax.distributed`` job on loopback (the
    ``JAXPAPERS_DISTRIBUTED`` variables `jaxpapers.parallel` reads), ``devices`` CPU devices
    each; stdout and stderr merged, as text. ``env``: the base environment (default: this
    process's). Collect them with `finish_processes`."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for pid in range(num):
        penv = dict(os.environ if env is None else env)
        penv.update(
            JAXPAPERS_DISTRIBUTED="1",
            JAXPAPERS_COORDINATOR=f"127.0.0.1:{port}",
            JAXPAPERS_NUM_PROCESSES=str(num),
            JAXPAPERS_PROCESS_ID=str(pid),
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        )
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=cwd,
                env=penv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def finish_processes(procs, timeout: float = 400) -> list[str]:
    """The outputs of `launch_processes`' processes once they end (killed after ``timeout``
    seconds each); asserts that each exited 0, showing its output's tail otherwise."""
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        finally:
            p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outs


def write_orl_faces(root: str, n_ids: int = 40, per_id: int = 10, seed: int = 0) -> str:
    """An ORL-layout folder ``root/s<k>/<j>.pgm`` of generated 28x23 grey faces (each identity a
    random base image plus noise): what the face methods' presets read from
    ``$JAXPAPERS_DATA_DIR/att_faces`` in tests, so no test downloads the AT&T faces."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(1, n_ids + 1):
        os.makedirs(os.path.join(root, f"s{k}"), exist_ok=True)
        base = rng.integers(0, 256, (28, 23))
        for j in range(1, per_id + 1):
            img = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(root, f"s{k}", f"{j}.pgm"))
    return root


def checkout_files(root: str) -> list[str]:
    """The files git tracks (or would track: untracked, not ignored) under ``root``, as paths
    relative to it: the repository's own files, without venvs, runs or caches."""
    import subprocess

    return subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def copy_checkout(root: str, dst: str) -> None:
    """Copies ``checkout_files(root)`` to ``dst``: a clean source tree for install tests."""
    import shutil

    for f in checkout_files(root):
        src = os.path.join(root, f)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
            shutil.copy2(src, os.path.join(dst, f))


def check_mixed_precision_step(
    method_name: str,
    config,
    *,
    phase=None,
    state=None,
    batch=None,
    metric_keys=("loss",),
    rtol_metrics: float = 2e-2,
    rtol_update: float = 5e-2,
    rtol_leaf: float = 0.25,
):
    """One train step with ``model.dtype`` float32 and one with bfloat16, from the same state and
    batch (``layers.precision`` policy).

    Asserts: the bfloat16 step's new state has the f32 step's tree, shapes and dtypes (float32
    params, optimizer state, statistics); each metric in ``metric_keys`` agrees within
    ``rtol_metrics`` (relative to max(|f32 value|, 1)); the state change of the step (new - old,
    over every floating leaf: params, optimizer moments, running statistics) agrees within
    ``rtol_update`` in relative L2 norm, and that of every single leaf within ``rtol_leaf``
    (relative to the larger of its f32 update and 1 % of the step's);
    the two steps differ (the switch took effect); the step
    runs some convolutions/matmuls in bfloat16.
    Returns ``(relative update error, {metric: (f32, bf16)}, matmul dtype counts of the bf16
    step, {leaf: relative update error})``.
    """
    import copy
    import functools

    from jaxpapers import config_lib
    from jaxpapers.layers import precision

    method = methods.get(method_name)
    assert precision.compute_dtype(config.model) == jnp.float32, "pass the float32 config"
    config16 = copy.deepcopy(config)
    config_lib.set_dotted(config16, "model.dtype", "bfloat16")
    if state is None:
        fn, args = trainer.init_fn(method, config)
        state = jax.jit(fn)(*args)
    if batch is None:
        batch = make_batches(method, config, 1)[0]
    extra = {} if phase is None else {"phase": phase}
    steps = {
        name: functools.partial(method.train_step, config=c, **extra)
        for name, c in (("f32", config), ("bf16", config16))
    }
    new32, m32 = jax.device_get(jax.jit(steps["f32"])(state, batch))
    new16, m16 = jax.device_get(jax.jit(steps["bf16"])(state, batch))
    sig = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])
    assert sig(new16) == sig(new32) == sig(state), "bf16 step changed the state's tree or dtypes"
    metrics = {k: (float(np.mean(m32[k])), float(np.mean(m16[k]))) for k in metric_keys}
    for k, (a, b) in metrics.items():
        assert abs(a - b) <= rtol_metrics * max(abs(a), 1.0), f"metric {k}: f32 {a} vs bf16 {b}"
    old = jax.device_get(state)
    d32, d16, names = [], [], []
    for (path, o), a, b in zip(
        jax.tree_util.tree_leaves_with_path(old),
        jax.tree.leaves(new32),
        jax.tree.leaves(new16),
        strict=True,
    ):
        if jnp.issubdtype(o.dtype, jnp.floating):
            d32.append((np.asarray(a, np.float64) - o).ravel())
            d16.append((np.asarray(b, np.float64) - o).ravel())
            names.append(jax.tree_util.keystr(path))
    total = np.linalg.norm(np.concatenate(d32))
    rel = float(np.linalg.norm(np.concatenate(d16) - np.concatenate(d32)) / max(total, 1e-30))
    assert 0.0 < rel <= rtol_update, f"bf16 update relative error {rel:.3g} (limit {rtol_update})"
    # Per leaf too (a bias or a gain can be badly off inside a good total), relative to the leaf's
    # f32 update but at least 1 % of the whole step's: a leaf that (nearly) does not move in f32
    # (e.g. a BN bias whose gradient cancels) is judged on its absolute error.
    leaf_err = {
        n: float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-2 * total))
        for n, a, b in zip(names, d32, d16, strict=True)
    }
    worst = max(leaf_err, key=leaf_err.get)
    assert leaf_err[worst] <= rtol_leaf, f"bf16 update of {worst}: error {leaf_err[worst]:.3g}"
    counts = precision.matmul_dtypes(steps["bf16"], state, batch)
    assert sum(n for (_, dt), n in counts.items() if dt == "bfloat16") > 0, counts
    return rel, metrics, counts, leaf_err
