"""The optimizer factory: the only module that builds optax optimizers.

Every method describes its optimizer(s) with ``optim.config(...)`` blocks in its config file and
builds them inside its step with ``optim.make(block)``. Multi-network methods keep one named block
per network (``config.optim.g``, ``config.optim.d``).

Gradient accumulation (``accum_steps=k``) lives here rather than in each method's step: the
trainer's steps become micro-steps, the optimizer averages k consecutive gradients and updates
the parameters on every k-th call (``optax.MultiSteps``), so any method gets the large-batch
update of k micro-batches without a loop inside its jitted step (a ``lax.scan`` of convolutions
is what XLA:CPU runs slowest). Learning-rate schedules count optimizer updates, i.e. micro-steps
divided by k. Batch statistics (BatchNorm) are per micro-batch, as in PyTorch accumulation loops
such as BigGAN-PyTorch's ``num_D_accumulations``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ml_collections

if TYPE_CHECKING:
    import optax

# jax and optax are imported inside the functions that build optimizers: every config file calls
# `config` at load time, and a config mistake must be reported in about a second, before the
# several seconds a JAX import takes.

NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "piecewise")


def config(**overrides: Any) -> ml_collections.ConfigDict:
    """An optimizer block with the suite's defaults; keyword arguments override them."""
    c = ml_collections.ConfigDict(
        dict(
            name="adam",
            lr=1e-3,
            schedule="constant",
            warmup_steps=0,
            total_steps=0,  # For 'cosine'; 0: config_lib.finalize sets num_train_steps.
            milestones=(),  # For 'piecewise': steps at which lr *= decay_factor.
            decay_factor=0.1,
            momentum=0.9,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            decay_mask="default",  # 'default': no decay on biases / norm scales; 'all'.
            clip_norm=0.0,  # Global-norm clipping; 0 switches it off.
            # ((regex over the '/'-joined param path, multiplier), ...). The first match wins.
            lr_multipliers=(),
            # Gradient accumulation: average the gradients of this many consecutive train steps
            # (micro-batches) and apply one update; parameters stay fixed in between.
            accum_steps=1,
        )
    )
    for k, v in overrides.items():
        if k not in c:
            raise KeyError(f"Unknown optimizer option {k!r}; known: {', '.join(sorted(c.keys()))}.")
        c[k] = v
    return c


def schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """The learning-rate schedule of a block, with optional linear warm-up from 0."""
    import optax

    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {cfg.schedule!r}; expected one of {SCHEDULES}.")
    lr, warm = float(cfg.lr), int(cfg.warmup_steps)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif cfg.schedule == "cosine":
        total = int(cfg.total_steps)
        if total <= warm:
            raise ValueError(
                f"Cosine schedule needs total_steps ({total}) > warmup_steps ({warm})."
            )
        main = optax.cosine_decay_schedule(lr, total - warm)
    else:
        bounds = {int(m) - warm: float(cfg.decay_factor) for m in cfg.milestones}
        main = optax.piecewise_constant_schedule(lr, bounds)
    if warm <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])


def param_path(path: Sequence[Any]) -> str:
    """'/'-joined names of a pytree key path, e.g. ``mapping/Dense_0/kernel``."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def decay_mask(params, mode: str = "default"):
    """True where weight decay applies: by default only to arrays with ndim > 1 (kernels)."""
    import jax
    import jax.numpy as jnp

    if mode == "all":
        return jax.tree.map(lambda _: True, params)
    if mode != "default":
        raise ValueError(f"Unknown decay_mask {mode!r}; expected 'default' or 'all'.")
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def multiplier_tree(params, rules: Sequence[tuple[str, float]]):
    """Per-leaf learning-rate multipliers from (regex, multiplier) rules; 1.0 where none match."""
    import jax

    compiled = [(re.compile(r), float(m)) for r, m in rules]

    def leaf(path, _):
        name = param_path(path)
        for rx, m in compiled:
            if rx.fullmatch(name) or rx.match(name):
                return m
        return 1.0

    return jax.tree_util.tree_map_with_path(leaf, params)


def _scale_by_multipliers(rules) -> optax.GradientTransformation:
    import jax
    import optax

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        mults = multiplier_tree(updates, rules)
        return jax.tree.map(lambda u, m: u * m, updates, mults), state

    return optax.GradientTransformation(init, update)


def make(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Builds the optax chain described by one optimizer block."""
    import optax

    if cfg.name not in NAMES:
        raise ValueError(f"Unknown optimizer {cfg.name!r}; expected one of {NAMES}.")
    lr = schedule(cfg)
    wd = float(cfg.weight_decay)
    mask = lambda p: decay_mask(p, cfg.decay_mask)
    chain = []
    if cfg.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(float(cfg.clip_norm)))
    if cfg.name == "adamw":
        chain.append(optax.adamw(lr, cfg.b1, cfg.b2, cfg.eps, weight_decay=wd, mask=mask))
    else:
        # SGD and Adam take weight decay as an L2 term added to the gradient (PyTorch semantics,
        # which is what the papers' recipes such as 'SGD 0.1, wd 5e-4' assume).
        if wd > 0:
            chain.append(optax.add_decayed_weights(wd, mask))
        if cfg.name == "adam":
            chain.append(optax.adam(lr, cfg.b1, cfg.b2, cfg.eps))
        else:
            momentum = None if cfg.name == "sgd" else float(cfg.momentum)
            chain.append(optax.sgd(lr, momentum=momentum, nesterov=cfg.name == "nesterov"))
    if cfg.lr_multipliers:
        chain.append(_scale_by_multipliers(tuple(tuple(r) for r in cfg.lr_multipliers)))
    tx = optax.chain(*chain)
    k = int(cfg.get("accum_steps", 1))
    if k < 1:
        raise ValueError(f"accum_steps must be >= 1, got {k}.")
    if k > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()
    return tx


def applied(opt_state):
    """Whether the ``update`` that returned ``opt_state`` changed the parameters: always True
    without accumulation; with ``accum_steps=k`` on every k-th call only (a boolean array). For
    what must happen once per optimizer update, e.g. an EMA of the weights."""
    import optax

    if isinstance(opt_state, optax.MultiStepsState):
        return opt_state.mini_step == 0
    return True


def ema_update(ema, new, decay):
    """``ema <- decay * ema + (1 - decay) * new`` leaf by leaf (decay may be a traced scalar)."""
    import jax

    return jax.tree.map(lambda e, n: decay * e + (1.0 - decay) * n, ema, new)
