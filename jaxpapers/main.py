"""Command line: ``python -m jaxpapers.main --config=<method>[:<preset>][,key=value...]``.

  --config=classifier:smoke            the method name means configs/<method>.py of this repo
  --config=path/to/classifier.py:smoke a config file path works too
  --config.key=value                   overrides (configs are locked: unknown keys fail)
  --workdir=DIR                        default runs/<method>_<preset>; re-running resumes
  --list                               the methods, what they are, and their presets

Any mistake in the config (unknown key, method or preset, wrong type, impossible value) is
reported as one line on stderr with exit status 2, before anything is built.
"""

from __future__ import annotations

import ast
import os
import sys
import time

from absl import app, flags, logging

from jaxpapers import config_lib

_CONFIG = flags.DEFINE_string(
    "config", None, "<method>[:preset][,key=value...] or configs/<method>.py[:preset]"
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (default runs/<method>_<preset>)."
)
_LIST = flags.DEFINE_bool("list", False, "List the methods with their presets and exit.")

# ``--config.key=value`` arguments, collected before absl parses the rest.
_OVERRIDES: dict[str, str] = {}
_HELP_ARGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")
USAGE_ERROR = 2


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


def _methods_dir() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "methods")


def method_summary(name: str) -> tuple[str, str]:
    """(kind, one-line description) of a method, read from its ``__init__.py`` without importing
    it (importing every method would take minutes of JAX/Flax start-up)."""
    path = os.path.join(_methods_dir(), name, "__init__.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    kind = ""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "kind" for t in node.targets
        ):
            kind = ast.literal_eval(node.value)
    doc = (ast.get_docstring(tree) or "").split("\n\n")[0]
    doc = " ".join(doc.split())
    for noise in (f"``{name}``: ", f"``{name}``, "):
        doc = doc.removeprefix(noise)
    for noise in (": method contract.", " Method contract.", ": method contract"):
        doc = doc.replace(noise, "")
    return kind, doc


def config_presets(name: str) -> tuple[str, ...]:
    """The ``PRESETS`` tuple of ``configs/<name>.py``, read without running the file."""
    path = os.path.join(config_lib.configs_dir(), f"{name}.py")
    if not os.path.isfile(path):
        return ()
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PRESETS" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    return ()


def method_names() -> list[str]:
    return sorted(
        d
        for d in os.listdir(_methods_dir())
        if os.path.isfile(os.path.join(_methods_dir(), d, "__init__.py"))
    )


def listing() -> str:
    lines = ["Methods (python -m jaxpapers.main --config=<method>[:<preset>]):", ""]
    for name in method_names():
        kind, doc = method_summary(name)
        lines.append(f"  {name:<20} [{kind}] {doc}")
        lines.append(f"  {'':<20} presets: {', '.join(config_presets(name)) or '(no config)'}")
    return "\n".join(lines)


def usage() -> str:
    return (
        f"{__doc__.strip()}\n\nExample: python -m jaxpapers.main --config=classifier:smoke "
        "--config.num_train_steps=20 --workdir=/tmp/classifier_smoke\n\n" + listing() + "\n"
    )


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, plus ``--config.key=value`` overrides and a ``--help`` that exits 0."""
    if any(a in _HELP_ARGS for a in argv[1:]):
        sys.stdout.write(usage())
        sys.exit(0)
    rest = argv[:1]
    for arg in argv[1:]:
        if arg.startswith("--config."):
            key, eq, value = arg[len("--config.") :].partition("=")
            if not eq or not key:
                _fail(f"Write overrides as --config.<key>=<value>, got {arg!r}.")
            _OVERRIDES[key] = value
        else:
            rest.append(arg)
    try:
        return flags.FLAGS(rest)
    except flags.Error as e:
        _fail(f"{str(e).splitlines()[0]} (see python -m jaxpapers.main --help)")


def _fail(message: str):
    """One line on stderr, exit status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)


def load_config(spec: str, overrides: dict[str, str] | None = None):
    """The validated config for ``--config=<spec>`` and its overrides; `ConfigError` if bad.

    Devices are only counted (which starts JAX, after ``jax.distributed`` when configured) for
    train methods, whose global batch is split over them.
    """
    config = config_lib.load(spec, overrides)
    config_lib.validate(config)
    if config.method not in method_names():
        raise config_lib.ConfigError(
            f"Config names method {config.method!r}, which does not exist; available: "
            f"{', '.join(method_names())}."
        )
    kind, _ = method_summary(config.method)
    if kind == "train":
        import jax

        from jaxpapers import parallel

        parallel.maybe_initialize_distributed()
        config_lib.validate(config, jax.device_count())
    return config


def default_workdir(config) -> str:
    return os.path.join("runs", f"{config.method}_{config.get('preset', 'default')}")


def run(config, workdir: str | None = None) -> dict:
    """Dispatches on ``config.method``: train methods go through the trainer, analyses run.

    Both kinds leave the same workdir files (see `jaxpapers.metrics`); an analysis's numbers
    are recorded as ``eval/<key>`` and returned with those keys.
    """
    from jaxpapers import methods, trainer

    method = methods.get(config.method)
    workdir = workdir or default_workdir(config)
    print(
        f"method={config.method} preset={config.get('preset', '')} "
        f"workdir={os.path.abspath(workdir)}",
        flush=True,
    )
    if method.kind == "analysis":
        return run_analysis(method, config, workdir)
    return trainer.train(config, workdir)


def _analysis_kwargs(method) -> dict:
    """An analysis of another run's model takes ``finished_run=`` (``runs.finished_run``): the
    application trains and restores that run, so the method imports nothing above methods/."""
    import inspect

    from jaxpapers import runs

    if "finished_run" in inspect.signature(method.run).parameters:
        return {"finished_run": runs.finished_run}
    return {}


def run_analysis(method, config, workdir: str) -> dict:
    """``method.run(config, workdir)`` with the workdir record a training run has: config.json,
    run_info.json, metrics.jsonl, final_metrics.json and TensorBoard (scalars, pictures).

    An analysis that can resume takes SIGTERM/SIGINT as stop requests (`jaxpapers.stopping`,
    as the trainer does), saves at its next consistent point and raises `stopping.Stopped`;
    then one line says how to resume and ``{"stopped_by": signum}`` is returned (no final
    metrics).
    """
    from jaxpapers import metrics, stopping

    metrics.write_config(config, workdir)
    metrics.write_run_info(workdir)
    # An analysis records its numbers as one row at step 0; a re-run (after a stop, a kill or
    # to completion again) replaces that row instead of adding a second one.
    metrics.truncate_after(os.path.join(workdir, "metrics.jsonl"), -1)
    writer = metrics.MetricWriter(workdir)
    ok = False
    try:
        writer.write_config(config)
        t0 = time.time()
        try:
            raw = method.run(config, workdir, **_analysis_kwargs(method)) or {}
        except stopping.Stopped as e:
            print(
                f"Stopped by {stopping.name(e.signum)}: {e}. Re-run the same command to resume.",
                flush=True,
            )
            return {"stopped_by": e.signum}
        seconds = time.time() - t0
        result = metrics.scalar_items(raw, "eval/")
        writer.write(0, {k.removeprefix("eval/"): v for k, v in result.items()}, "eval/")
        writer.write_new_pictures(0)
        result["eval/seconds"] = seconds
        metrics.write_final(workdir, result)
        ok = True
        return result
    finally:
        writer.close(success=ok)


def main(argv):
    if len(argv) > 1:
        _fail(f"Unexpected arguments {argv[1:]}; flags are --config, --config.<key>, --workdir.")
    if _LIST.value:
        print(listing())
        return 0
    if not _CONFIG.value:
        _fail(
            "--config=<method>[:<preset>] is required; python -m jaxpapers.main --list shows them."
        )
    try:
        config = load_config(_CONFIG.value, _OVERRIDES)
    except config_lib.ConfigError as e:
        _fail(str(e))
    logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines drown the progress line.
    try:
        result = run(config, _WORKDIR.value)
    except FileNotFoundError as e:  # Missing data or checkpoint: the message says where to look.
        _fail(str(e))
    from jaxpapers import stopping

    return stopping.exit_status(result.get("stopped_by"))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
