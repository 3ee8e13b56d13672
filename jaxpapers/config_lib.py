"""Config presets and overrides shared by every `configs/<method>.py`.

A config is selected as ``configs/<method>.py:<preset>,key=value,...`` (the part after the colon
is what ml_collections passes to ``get_config(arg)``) and further overridden on the command line
with ``--config.key=value``. Configs are locked so that a typo in a key fails loudly.

Every mistake a user can make in a config (unknown key, wrong type, unknown preset or method,
missing file, impossible values) raises `ConfigError` with a one-line, actionable message;
``python -m jaxpapers.main`` prints it and exits with status 2 before building any model.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
    """A user error in a config or its overrides (one line, says what to do)."""


class ConfigKeyError(ConfigError, KeyError):
    """An unknown config key (also a KeyError, which is what a dict lookup would raise)."""

    def __str__(self) -> str:  # KeyError would quote the message.
        return str(self.args[0])


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
    # "a:b" writes a jax.profiler trace of global steps [a, b) to <workdir>/profile (TensorBoard's
    # profile plugin or Perfetto read it); "" switches profiling off.
    c.profile_steps = ""
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
            raise ConfigError(
                f"Config argument {arg!r} names two presets ({preset!r}, {part!r}); "
                "write <preset>,key=value,..."
            )
        else:
            preset = part
    return preset, overrides


def unknown_preset(name: str, presets: tuple[str, ...]) -> ConfigError:
    return ConfigError(f"Unknown preset {name!r}; this config defines: {', '.join(presets)}.")


def _parse_value(text: str, current: Any) -> Any:
    if isinstance(current, str) or current is None:
        return text
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"Expected a boolean (true/false), got {text!r}.")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ConfigError(f"Cannot parse {text!r} as type {type(current).__name__}.") from e
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    return value


def set_dotted(config: ConfigDict, key: str, value: Any) -> None:
    """Sets ``a.b.c`` on a (locked) config, failing clearly on unknown keys."""
    node = config
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        if not isinstance(node, ConfigDict) or p not in node:
            raise ConfigKeyError(
                f"Unknown config key {'.'.join(parts[: i + 1])!r} (in override {key!r})."
            )
        node = node[p]
    leaf = parts[-1]
    if not isinstance(node, ConfigDict):
        parent = ".".join(parts[:-1])
        raise ConfigKeyError(f"Unknown config key {key!r}: {parent!r} is a value, not a block.")
    if leaf not in node:
        known = ", ".join(sorted(node.keys()))
        raise ConfigKeyError(f"Unknown config key {key!r}; keys at this level: {known}.")
    current = node[leaf]
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = _parse_value(value, current)
        except ConfigError as e:
            raise ConfigError(f"Config key {key!r}: {e}") from None
    if isinstance(current, ConfigDict) and not isinstance(value, (dict, ConfigDict)):
        raise ConfigError(f"Config key {key!r} is a block; set one of its keys ({key}.<name>=...).")
    try:
        with node.unlocked():
            node[leaf] = value
    except TypeError:
        raise ConfigError(
            f"Config key {key!r} expects type {type(current).__name__} (now {current!r}), "
            f"got {value!r}."
        ) from None


def apply_overrides(config: ConfigDict, overrides: dict[str, Any]) -> ConfigDict:
    """Command-line overrides on a finalized config (``--config.key=value``).

    Schedules that `finalize` set to the run length keep following it when the command changes
    ``num_train_steps`` or ``accum_steps`` (unless it sets their ``total_steps`` explicitly), so
    ``--config.num_train_steps=N`` decays over N steps as ``:preset,num_train_steps=N`` does.
    """
    following = list(_run_length_blocks(config, "", int(config.get("num_train_steps", 0))))
    for key, value in overrides.items():
        set_dotted(config, key, value)
    steps = int(config.get("num_train_steps", 0))
    for path, node in following:
        if f"{path}total_steps" not in overrides:
            with node.unlocked():
                node.total_steps = steps // max(1, int(node.get("accum_steps", 1)))
    return config


def _run_length_blocks(node: ConfigDict, path: str, num_steps: int):
    """(path, block) of the schedules whose length is the run's (see `_fill_schedule_lengths`)."""
    k = max(1, int(node.get("accum_steps", 1)))  # schedules count optimizer updates
    if "schedule" in node and node.get("total_steps") == num_steps // k:
        yield path, node
    for key, value in node.items():
        if isinstance(value, ConfigDict):
            yield from _run_length_blocks(value, f"{path}{key}.", num_steps)


# (key, minimum, what the minimum means): the cadences and sizes the trainer divides by or loops
# over. eval_every and ckpt_every of 0 are meaningful ("only at the end").
_MINIMA = (
    ("batch_size", 1, "a positive number of examples per step"),
    ("num_train_steps", 0, "0 or more steps"),
    ("log_every", 1, "log every N >= 1 steps"),
    ("eval_every", 0, "0 = evaluate only at the end, N = every N steps"),
    ("ckpt_every", 0, "0 = checkpoint only at the end, N = every N steps"),
    ("keep_ckpts", 1, "keep at least one checkpoint"),
)


def profile_range(spec: str) -> tuple[int, int] | None:
    """``"a:b"`` -> (a, b) with 0 <= a < b; ``""`` -> None; anything else is a `ConfigError`."""
    if not spec:
        return None
    parts = str(spec).split(":")
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        a, b = -1, -1
    if len(parts) != 2 or not 0 <= a < b:
        raise ConfigError(
            f"profile_steps={spec!r} is invalid: use 'a:b' with 0 <= a < b (global steps), "
            "e.g. --config.profile_steps=10:15."
        )
    return a, b


def validate(config: ConfigDict, num_devices: int | None = None) -> None:
    """Checks the values the trainer relies on; raises `ConfigError` (one line) on the first bad
    one. With ``num_devices`` also checks that the global batch splits evenly over the devices."""
    for key, minimum, meaning in _MINIMA:
        if key not in config:
            continue
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(
                f"{key}={value!r} is invalid: must be an integer >= {minimum} ({meaning}); "
                f"set --config.{key}=..."
            )
    if config.get("profile_steps"):
        profile_range(config.profile_steps)
    if num_devices and "batch_size" in config and config.batch_size % num_devices:
        n = num_devices
        good = -(-config.batch_size // n) * n
        raise ConfigError(
            f"batch_size={config.batch_size} is not divisible by the {n} devices; use a multiple "
            f"of {n}, e.g. --config.batch_size={good}."
        )


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


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A config path that does not exist."""


def load_config_file(path: str, arg: str | None = None) -> ConfigDict:
    """Loads ``configs/<method>.py`` and calls its ``get_config(arg)`` (tests, notebooks)."""
    import importlib.util
    import os

    if not os.path.isfile(path):
        raise ConfigFileNotFoundError(
            f"Config file {path!r} does not exist; give configs/<method>.py or just the method "
            "name (python -m jaxpapers.main --list shows them)."
        )
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
        raise ConfigError(
            f"Unknown method {method!r}; available methods: {', '.join(names)} "
            "(python -m jaxpapers.main --list)."
        )
    return path


def resolve_path(spec: str) -> tuple[str, str]:
    """``"<method>[:arg]"`` or ``"path/to/<method>.py[:arg]"`` -> (config file path, arg).

    A bare name (no ``/`` and no ``.py``) means ``configs/<name>.py`` of this repository, so
    ``--config=classifier:smoke`` works from any directory.
    """
    import os

    target, _, arg = spec.partition(":")
    target = target.strip()
    if not target:
        raise ConfigError("--config is empty; give a method name or configs/<method>.py.")
    if target.endswith(".py") or os.sep in target or "/" in target:
        return target, arg
    return config_path(target), arg


def load(spec: str, overrides: dict[str, Any] | None = None) -> ConfigDict:
    """The locked config for ``--config=<spec>`` plus ``--config.key=value`` overrides."""
    path, arg = resolve_path(spec)
    config = load_config_file(path, arg or None)
    if not isinstance(config, ConfigDict):
        raise ConfigError(f"{path}: get_config() must return a ConfigDict.")
    return apply_overrides(config, overrides or {})
