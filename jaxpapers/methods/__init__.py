"""Method registry and the method contract.

Every sub-package of ``jaxpapers.methods`` is a method (found by scanning; no hand-kept table).
Its ``__init__.py`` exports exactly the names of the contract below, nothing else: ``get()``
checks the kind, the required callables and refuses unknown public names, so a method's public
surface is the contract and every caller finds hooks the same way, through ``hook()``.

The tables ``REQUIRED`` and ``OPTIONAL`` are the contract; CONTRIBUTING.md shows them as a table
(``tests/test_methods.py`` checks that the two agree).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from types import ModuleType

KINDS = ("train", "analysis")

# name -> signature, per kind. ``kind`` is a string, every other name a callable.
REQUIRED: dict[str, dict[str, str]] = {
    "train": {
        "kind": 'kind = "train"',
        "input_spec": "input_spec(config) -> dict[str, jax.ShapeDtypeStruct]",
        "init_state": "init_state(rng, config[, *, prepared]) -> state",
        "train_step": "train_step(state, batch, *, config[, phase]) -> (state, metrics)",
    },
    "analysis": {
        "kind": 'kind = "analysis"',
        "run": "run(config, workdir) -> dict",
    },
}

OPTIONAL: dict[str, dict[str, str]] = {
    "train": {
        "make_source": "make_source(config, split) -> dict[str, np.ndarray]",
        "evaluate": "evaluate(state, config, workdir) -> dict[str, float]",
        "load_init": "load_init(state, tree, config) -> state",
        "phase": "phase(config, step) -> hashable",
        "prepare": "prepare(config) -> pytree",
        "logits_fn": "logits_fn(state, config) -> Callable[[images], logits]",
        "gan_sampler": "gan_sampler(state, config, role=...) -> sample_fn",
        "embed_fn": "embed_fn(state, config) -> Callable[[uint8 images], embeddings]",
        "infer_fn": "infer_fn(state, config) -> Callable",
    },
    "analysis": {},
}

# What each hook is for (the documentation column of CONTRIBUTING.md's table).
PURPOSE: dict[str, str] = {
    "kind": "which contract the method follows",
    "input_spec": "shapes/dtypes of one global batch",
    "init_state": "the initial state; with `prepare`, takes its result as `prepared=`",
    "train_step": "one pure step; `metrics['loss']` required; `phase=` if `phase` is defined",
    "run": "the whole analysis; writes into workdir, returns flat numbers",
    "make_source": "host arrays to train on (default: `data.load(config.data, split)`)",
    "evaluate": "numbers after training (and every `eval_every` steps)",
    "load_init": "puts `init_from` weights into a fresh state (`checkpoint.graft`)",
    "phase": "the host-side phase of a step; one executable per phase",
    "prepare": "data-fitted or pre-trained constants computed once on the host",
    "logits_fn": "a classifier's `images -> logits` (robust evaluation, `jaxpapers.load`)",
    "gan_sampler": "a GAN's sample function (GAN scores, `jaxpapers.load`)",
    "embed_fn": "a recogniser's unit-norm embeddings (`jaxpapers.load`: embed, verify, identify)",
    "infer_fn": "the method's documented inference entry on the state (`jaxpapers.load`: infer)",
}


def names() -> list[str]:
    """All method names, found by scanning this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def hook_names(kind: str) -> tuple[str, ...]:
    """The optional hooks a method of ``kind`` may define."""
    return tuple(OPTIONAL[kind])


def _public_names(module: ModuleType) -> list[str]:
    """Public module-level names, less submodules/imported modules and ``from __future__``."""
    out = []
    for key, value in vars(module).items():
        if key.startswith("_") or isinstance(value, ModuleType):
            continue
        if key == "annotations" and type(value).__module__ == "__future__":
            continue
        out.append(key)
    return out


def _accepts_keyword(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # Builtins/C callables: nothing to check.
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def check(name: str, module: ModuleType) -> None:
    """Raises TypeError when ``module`` does not honour the contract of its kind."""
    kind = getattr(module, "kind", None)
    if kind not in KINDS:
        raise TypeError(f"Method {name!r} must define kind in {KINDS}, found {kind!r}.")
    required = [n for n in REQUIRED[kind] if n != "kind"]
    missing = [n for n in required if not callable(getattr(module, n, None))]
    if missing:
        raise TypeError(f"Method {name!r} (kind {kind!r}) lacks callable {', '.join(missing)}.")
    allowed = set(REQUIRED[kind]) | set(OPTIONAL[kind])
    unknown = sorted(n for n in _public_names(module) if n not in allowed)
    if unknown:
        raise TypeError(
            f"Method {name!r} exports {', '.join(unknown)}, which the {kind!r} contract does not "
            f"know; make them private or move them into a submodule (allowed: {sorted(allowed)})."
        )
    not_callable = [
        n for n in OPTIONAL[kind] if n in vars(module) and not callable(module.__dict__[n])
    ]
    if not_callable:
        raise TypeError(f"Method {name!r}: hooks {', '.join(not_callable)} must be callable.")
    if kind == "train":
        if "prepare" in vars(module) and not _accepts_keyword(module.init_state, "prepared"):
            raise TypeError(f"Method {name!r} defines prepare, so init_state must take prepared=.")
        if "phase" in vars(module) and not _accepts_keyword(module.train_step, "phase"):
            raise TypeError(f"Method {name!r} defines phase, so train_step must take phase=.")


def get(name: str) -> ModuleType:
    """Imports the method ``name`` and checks that it honours the contract (``check``)."""
    available = names()
    if name not in available:
        raise ValueError(f"Unknown method {name!r}; available methods: {', '.join(available)}.")
    module = importlib.import_module(f"{__name__}.{name}")
    check(name, module)
    return module


def hook(method: ModuleType, name: str) -> Callable | None:
    """The optional hook ``name`` of ``method`` (from ``get``), or None when it has none."""
    known = {h for k in KINDS for h in OPTIONAL[k]}
    if name not in known:  # A typo would otherwise read as "no hook" silently.
        raise ValueError(f"{name!r} is not a method hook; hooks: {sorted(known)}.")
    if name not in OPTIONAL.get(getattr(method, "kind", None), {}):
        return None
    return vars(method).get(name)


def contract_markdown() -> str:
    """The contract as the Markdown table of CONTRIBUTING.md (a test keeps the two equal)."""
    rows = ["| kind | name | required | signature | purpose |", "| --- | --- | --- | --- | --- |"]
    for kind in KINDS:
        for table, required in ((REQUIRED[kind], "yes"), (OPTIONAL[kind], "no")):
            for name, signature in table.items():
                rows.append(f"| {kind} | `{name}` | {required} | `{signature}` | {PURPOSE[name]} |")
    return "\n".join(rows)
