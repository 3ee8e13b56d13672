"""Method registry: every sub-package of ``jaxpapers.methods`` is a method (no hand-kept table)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

KINDS = ("train", "analysis")
TRAIN_NAMES = ("input_spec", "init_state", "train_step")


def names() -> list[str]:
    """All method names, found by scanning this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def get(name: str) -> ModuleType:
    """Imports a method and checks that it honours the contract of ARCHITECTURE.md §3."""
    available = names()
    if name not in available:
        raise ValueError(f"Unknown method {name!r}; available methods: {', '.join(available)}.")
    module = importlib.import_module(f"{__name__}.{name}")
    kind = getattr(module, "kind", None)
    if kind not in KINDS:
        raise TypeError(f"Method {name!r} must define kind in {KINDS}, found {kind!r}.")
    required = TRAIN_NAMES if kind == "train" else ("run",)
    missing = [n for n in required if not callable(getattr(module, n, None))]
    if missing:
        raise TypeError(f"Method {name!r} (kind {kind!r}) lacks {', '.join(missing)}.")
    return module
