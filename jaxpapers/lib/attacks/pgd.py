"""FGSM, PGD (L∞ / L2, random start, targeted or not, optional path), CW-L∞ and the TRADES attack.

All attacks are pure functions of ``(logits_fn, x, y, key)`` on a batch of images in [0, 1]
(any layout; the first axis is the batch). ``logits_fn`` maps such a batch to logits (B, K); it
should put the model in eval mode and normalise inside, so the attack runs in pixel space (as in
locuslab/robust_overfitting train_cifar.py and yaodongyu/TRADES).
Iterations run in ``lax.scan``, so an attack jits into one XLA loop and can sit inside a train step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxpapers.lib.attacks import losses

LogitsFn = Callable[[jax.Array], jax.Array]
NORMS = ("linf", "l2")
LOSSES = ("ce", "cw", "kl")
INITS = ("uniform", "none", "trades_normal")


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    """Reshape a per-example vector (B,) so it broadcasts against x (B, ...)."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - 1))


def l2_norm(v: jax.Array) -> jax.Array:
    """Per-example L2 norm of a batch (B, ...) -> (B,)."""
    return jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1)), axis=-1))


def linf_norm(v: jax.Array) -> jax.Array:
    """Per-example L∞ norm of a batch (B, ...) -> (B,)."""
    return jnp.max(jnp.abs(v.reshape(v.shape[0], -1)), axis=-1)


def project(x_adv: jax.Array, x: jax.Array, eps: float, norm: str) -> jax.Array:
    """Project onto B_p(x, eps) ∩ [0, 1]^d (clipping after the ball keeps the ball: x ∈ [0,1])."""
    if norm == "linf":
        x_adv = jnp.clip(x_adv, x - eps, x + eps)
    elif norm == "l2":
        delta = x_adv - x
        scale = jnp.minimum(1.0, eps / (l2_norm(delta) + 1e-12))
        x_adv = x + delta * _bcast(scale, x)
    else:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return jnp.clip(x_adv, 0.0, 1.0)


def _check_inputs(x: jax.Array, y: jax.Array, eps: float, norm: str) -> None:
    if x.ndim < 2 or y.shape != x.shape[:1]:
        raise ValueError(f"x must be (B, ...) and y (B,), got {x.shape} and {y.shape}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")


def objective(
    name: str, targeted: bool, ref_logits: jax.Array | None = None
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Per-example objective to MAXIMISE for loss `name`; `labels` are targets when targeted."""
    if name == "ce":
        return (lambda z, t: -losses.cross_entropy(z, t)) if targeted else losses.cross_entropy
    if name == "cw":
        # Targeted CW: push z_t above every other logit, i.e. maximise −margin(z, t).
        return (lambda z, t: -losses.margin(z, t)) if targeted else losses.margin
    if name == "kl":
        if ref_logits is None or targeted:
            raise ValueError("loss 'kl' (TRADES) needs ref_logits and is untargeted")
        return lambda z, t: losses.kl_to_reference(z, ref_logits)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def random_start(key: jax.Array, x: jax.Array, eps: float, norm: str, init: str) -> jax.Array:
    """Starting point x_0 of PGD.

    'uniform': L∞ δ ~ U(−ε, ε)^d (Madry; Rice `attack_pgd`), L2 δ = r·ε·n/‖n‖ with n ~ N(0, I),
    r ~ U(0, 1) (Rice); both clipped to [0, 1]. 'trades_normal': x + 0.001·N(0, I), NOT clipped,
    exactly as `yaodongyu/TRADES:trades.py` (only the first gradient sees it). 'none': x.
    """
    if init == "none":
        return x
    if init == "trades_normal":
        return x + 0.001 * jax.random.normal(key, x.shape, x.dtype)
    if init != "uniform":
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if norm == "linf":
        delta = jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
    else:
        k1, k2 = jax.random.split(key)
        n = jax.random.normal(k1, x.shape, x.dtype)
        r = jax.random.uniform(k2, x.shape[:1], x.dtype)
        delta = n / _bcast(l2_norm(n) + 1e-12, x) * _bcast(r * eps, x)
    return jnp.clip(x + delta, 0.0, 1.0)


def pgd(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    step_size: float,
    num_steps: int,
    norm: str = "linf",
    loss: str = "ce",
    targeted: bool = False,
    init: str = "uniform",
    ref_logits: jax.Array | None = None,
    return_path: bool = False,
    unroll: int | bool = 1,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Projected gradient ascent x_{t+1} = Π(x_t + α·sign ∇) (L∞) or Π(x_t + α·∇/‖∇‖₂) (L2).

    Args:
      logits_fn: batch in [0, 1] -> logits (B, K).
      x: clean batch (B, ...) in [0, 1]. y: labels (B,), or target classes when `targeted`.
      key: PRNG key for the random start.
      eps, step_size, num_steps: budget ε, step α, iterations T (≥ 1).
      norm: 'linf' or 'l2'. loss: 'ce', 'cw' (CW-L∞ margin) or 'kl' (TRADES, needs ref_logits).
      targeted: minimise the loss towards class y instead of maximising it away from y.
      init: 'uniform' (random start), 'none' or 'trades_normal'; see `random_start`.
      return_path: also return the iterates x_0 … x_T stacked as (T + 1, B, ...).
      unroll: `lax.scan` unroll factor (True: fully unrolled). Same result; on XLA:CPU a fully
        unrolled attack runs several times faster (`benchmarks/control_flow.py`), on GPU/TPU a
        rolled one compiles faster.

    Returns:
      x_T (B, ...) in B(x, ε) ∩ [0, 1], and the path when `return_path`.
    """
    _check_inputs(x, y, eps, norm)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    x = jax.lax.stop_gradient(x)
    obj = objective(loss, targeted, ref_logits)

    def total(xa: jax.Array) -> jax.Array:
        return jnp.sum(obj(logits_fn(xa), y))

    def step(xa: jax.Array, _: None) -> tuple[jax.Array, jax.Array | None]:
        g = jax.grad(total)(xa)
        if norm == "linf":
            xa = xa + step_size * jnp.sign(g)
        else:
            xa = xa + step_size * g / _bcast(l2_norm(g) + 1e-12, g)
        xa = project(xa, x, eps, norm)
        return xa, (xa if return_path else None)

    x0 = random_start(key, x, eps, norm, init)
    x_t, path = jax.lax.scan(step, x0, None, length=num_steps, unroll=unroll)
    x_t = jax.lax.stop_gradient(x_t)
    if return_path:
        return x_t, jax.lax.stop_gradient(jnp.concatenate([x0[None], path], axis=0))
    return x_t


def fgsm(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    *,
    eps: float,
    loss: str = "ce",
    targeted: bool = False,
) -> jax.Array:
    """FGSM (Goodfellow et al. 2015): x + ε·sign ∇_x L, clipped to [0, 1]. No randomness."""
    key = jax.random.key(0)  # unused: init='none'
    return pgd(
        logits_fn,
        x,
        y,
        key,
        eps=eps,
        step_size=eps,
        num_steps=1,
        loss=loss,
        targeted=targeted,
        init="none",
    )


def cw_linf(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    step_size: float,
    num_steps: int,
) -> jax.Array:
    """CW-L∞ as used in robustness papers: L∞ PGD on the margin max_{j≠y} z_j − z_y."""
    return pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, num_steps=num_steps, loss="cw")


def trades_attack(
    logits_fn: LogitsFn,
    x: jax.Array,
    key: jax.Array,
    *,
    eps: float = 0.031,
    step_size: float = 0.007,
    num_steps: int = 10,
    unroll: int | bool = 1,
) -> jax.Array:
    """TRADES inner maximisation of KL(f(x) ‖ f(x')) from x + 0.001·N(0, I) (TRADES trades.py)."""
    ref = jax.lax.stop_gradient(logits_fn(x))
    y = jnp.zeros(x.shape[:1], jnp.int32)  # unused by the KL objective
    return pgd(
        logits_fn,
        x,
        y,
        key,
        eps=eps,
        step_size=step_size,
        num_steps=num_steps,
        loss="kl",
        init="trades_normal",
        ref_logits=ref,
        unroll=unroll,
    )


def pgd_restarts(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    num_restarts: int,
    **pgd_kwargs,
) -> jax.Array:
    """PGD with restarts; per example keeps a misclassified point if any, else the max-loss one.

    (Rice et al. keep the max-CE δ; preferring a misclassified point first makes the robust
    accuracy the worst case over restarts, which is what evaluation needs.)
    """
    if pgd_kwargs.get("return_path") or pgd_kwargs.get("targeted"):
        raise ValueError("pgd_restarts supports untargeted attacks without a path")
    obj = objective(pgd_kwargs.get("loss", "ce"), False, pgd_kwargs.get("ref_logits"))

    def score(xa: jax.Array) -> jax.Array:
        z = logits_fn(xa)
        wrong = (jnp.argmax(z, axis=-1) != y).astype(jnp.float32)
        return obj(z, y) + 1e9 * wrong

    def body(r: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        best, best_score = carry
        cand = pgd(logits_fn, x, y, jax.random.fold_in(key, r), **pgd_kwargs)
        s = score(cand)
        better = s > best_score
        return jnp.where(_bcast(better, x), cand, best), jnp.where(better, s, best_score)

    init = (x, jnp.full(x.shape[:1], -jnp.inf, jnp.float32))
    return jax.lax.fori_loop(0, num_restarts, body, init)[0]
