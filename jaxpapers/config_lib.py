"""Config presets and overrides shared by every `configs/<method>.py`.

A config is selected as ``configs/<method>.py:<preset>,key=value,...`` (the part after the colon
is what ml_collections passes to ``get_config(arg)``) and further overridden on the command line
with ``--config.key=value``. Configs are locked so that a typo in a key fails loudly.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict


def base_config(method: str) -> ConfigDict:
    """Fields every method has; a method's config file fills and extends them."""
    c = ConfigDict()
    c.method = method
    c.preset = "default"
    c.seed = 0
    c.batch_size = 128
    c.num_train_steps = 1000
    c.log_every = 50
    c.eval_every = 0  # 0: evaluate only at the end of training.
    c.ckpt_every = 500
    c.keep_ckpts = 3
    # On a corrupt newest checkpoint, resume from the newest intact earlier one (moving the
    # corrupt ones to checkpoints_corrupt/) instead of stopping with an error.
    c.ckpt_fallback = False
    c.resume_from = ""  # A checkpoint directory to resume from when the workdir has none.
    c.init_from = ""  # A checkpoint directory whose params initialise the model (method hook).
    c.prefetch = 2
    c.optim = ConfigDict()
    c.data = ConfigDict({"name": "", "path": ""})
    c.model = ConfigDict()
    return c


def parse_arg(arg: str | None) -> tuple[str, dict[str, str]]:
    """Splits ``"preset,key=value,..."`` into the preset name and the overrides."""
    if not arg:
        return "", {}
    preset, overrides = "", {}
    for part in arg.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            overrides[key.strip()] = value.strip()
        elif preset:
            raise ValueError(f"Config argument {arg!r} names two presets ({preset!r}, {part!r}).")
        else:
            preset = part
    return preset, overrides


def unknown_preset(name: str, presets: tuple[str, ...]) -> ValueError:
    return ValueError(f"Unknown preset {name!r}; this config defines: {', '.join(presets)}.")


def _parse_value(text: str, current: Any) -> Any:
    if isinstance(current, str) or current is None:
        return text
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"Expected a boolean, got {text!r}.")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"Cannot parse {text!r} as a {type(current).__name__}.") from e
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    return value


def set_dotted(config: ConfigDict, key: str, value: Any) -> None:
    """Sets ``a.b.c`` on a (locked) config, failing clearly on unknown keys."""
    node = config
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        if p not in node:
            raise KeyError(
                f"Unknown config key {'.'.join(parts[: i + 1])!r} (in override {key!r})."
            )
        node = node[p]
    leaf = parts[-1]
    if leaf not in node:
        known = ", ".join(sorted(node.keys()))
        raise KeyError(f"Unknown config key {key!r}; keys at this level: {known}.")
    current = node[leaf]
    if isinstance(value, str) and not isinstance(current, str):
        value = _parse_value(value, current)
    with node.unlocked():
        node[leaf] = value


def finalize(config: ConfigDict, overrides: dict[str, str] | None = None) -> ConfigDict:
    """Applies the overrides and locks the config (unknown keys then raise)."""
    config.lock()
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    _fill_schedule_lengths(config, int(config.get("num_train_steps", 0)))
    return config


def _fill_schedule_lengths(node: ConfigDict, num_steps: int) -> None:
    """Optimizer blocks with ``total_steps == 0`` decay over the whole run (counted in optimizer
    updates: micro-steps divided by ``accum_steps``)."""
    if "schedule" in node and "total_steps" in node and node.total_steps == 0:
        with node.unlocked():
            node.total_steps = num_steps // max(1, int(node.get("accum_steps", 1)))
    for value in node.values():
        if isinstance(value, ConfigDict):
            _fill_schedule_lengths(value, num_steps)


def load_config_file(path: str, arg: str | None = None) -> ConfigDict:
    """Loads ``configs/<method>.py`` and calls its ``get_config(arg)`` (tests, notebooks)."""
    import importlib.util
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file {path!r} does not exist.")
    spec = importlib.util.spec_from_file_location(f"_jaxpapers_config_{os.getpid()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# ----------------------------------------------------------------------- configs by method name


def configs_dir() -> str:
    """The folder of the method configs: the repository's ``configs/`` in a source checkout or an
    editable install, the installed ``jaxpapers.configs`` package (the same files) otherwise."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("jaxpapers.configs")
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    if os.path.isdir(here):
        return here
    raise FileNotFoundError("No jaxpapers configs found: reinstall the package (pip install .).")


def config_path(method: str) -> str:
    """Path of ``configs/<method>.py`` that works from any directory, installed or not."""
    import os

    d = configs_dir()
    path = os.path.join(d, f"{method}.py")
    if not os.path.isfile(path):
        names = sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and f[0] != "_")
        raise ValueError(f"Unknown method {method!r}; configs exist for: {', '.join(names)}.")
    return path
