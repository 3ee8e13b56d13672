"""Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and APGD-T (targeted DLR).

Re-derived from the paper and checked line by line against `fra31/auto-attack:autopgd_base.py`
(read, not copied). Reference behaviour reproduced here, including its quirks:
  * step size η⁰ = 2ε per example; checkpoints every k iterations with k⁰ = max(⌊0.22N⌋, 1),
    then k ← max(k − max(⌊0.03N⌋, 1), max(⌊0.06N⌋, 1)) (floors, as `int()` in the reference);
  * at a checkpoint η is halved (and the iterate and gradient reset to the best point) where the
    loss increased in ≤ ρ·k of the last k steps, or where η was not halved last time and the best
    loss did not improve; the "increase" count compares loss_steps[i−c] > loss_steps[i−c−1] and
    index −1 wraps to the last (still zero) row, as torch indexing does in the reference;
  * momentum x_{k+1} = P(x_k + a(z_{k+1} − x_k) + (1 − a)(x_k − x_{k−1})), a = 1 at the first step
    and 0.75 after;
  * random start x + ε·t/‖t‖_p (t ~ U(−1, 1) for L∞, N(0, I) for L2), clipped to [0, 1];
  * restarts and target classes only matter for points not yet fooled; the returned point is the
    most recent misclassified iterate (else the clean x).
Differences: the whole batch is iterated (fooled points are frozen by masks instead of removed),
and the randomness comes from a JAX key, so draws differ from the reference's torch seed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxpapers.lib.attacks import losses
from jaxpapers.lib.attacks.pgd import NORMS, LogitsFn, _bcast, l2_norm, linf_norm, project


def schedule_constants(num_steps: int) -> tuple[int, int, int]:
    """(first checkpoint interval, minimum interval, interval decrement) of the reference."""
    return (
        max(int(0.22 * num_steps), 1),
        max(int(0.06 * num_steps), 1),
        max(int(0.03 * num_steps), 1),
    )


def checkpoints(num_steps: int) -> list[int]:
    """Iterations (0-based) at which the step-size check runs; for documentation and tests."""
    k, k_min, decr = schedule_constants(num_steps)
    out, i = [], k - 1
    while i < num_steps:
        out.append(i)
        k = max(k - decr, k_min)
        i += k
    return out


def _normalize(v: jax.Array, norm: str) -> jax.Array:
    n = linf_norm(v) if norm == "linf" else l2_norm(v)
    return v / _bcast(n + 1e-12, v)


def _loss_grad(logits_fn, loss_fn, xa: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example losses, logits and the gradient of the summed loss at ``xa``."""

    def f(v):
        z = logits_fn(v)
        li = loss_fn(z)
        return jnp.sum(li), (li, z)

    (_, (li, z)), g = jax.value_and_grad(f, has_aux=True)(xa)
    return li, z, g


def _checkpoint(i, c: dict, *, x, rho: float, size_decr: int, n_iter_min: int) -> dict:
    """APGD's step-size checkpoint after ``k`` iterations: halve the step of every example whose
    loss oscillated (``check_oscillation``) or did not improve, and restart it from its best."""
    num_steps = c["loss_steps"].shape[0]
    cs = jnp.arange(num_steps)
    # check_oscillation: #increases over the last k steps (index −1 wraps, as in torch).
    ia, ib = (i - cs) % num_steps, (i - cs - 1) % num_steps
    inc = (c["loss_steps"][ia] > c["loss_steps"][ib]) & (cs < c["k"])[:, None]
    osc = jnp.sum(inc, axis=0).astype(jnp.float32) <= c["k"].astype(jnp.float32) * rho
    no_impr = (~c["reduced_last"]) & (c["loss_best_last"] >= c["loss_best"])
    fl = osc | no_impr
    m = _bcast(fl, x)
    return dict(
        c,
        step=jnp.where(fl, c["step"] / 2.0, c["step"]),
        x_adv=jnp.where(m, c["x_best"], c["x_adv"]),
        grad=jnp.where(m, c["grad_best"], c["grad"]),
        reduced_last=fl,
        loss_best_last=c["loss_best"],
        k=jnp.maximum(c["k"] - size_decr, n_iter_min),
        counter=jnp.int32(0),
    )


def apgd_single_run(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    loss_fn,
    *,
    eps: float,
    num_steps: int,
    norm: str = "linf",
    rho: float = 0.75,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One APGD run (`attack_single_run`). `loss_fn(logits) -> (B,)` is maximised.

    Returns (x_best, still_robust, best_loss, x_best_adv) like the reference.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    n_iter_2, n_iter_min, size_decr = schedule_constants(num_steps)
    b = x.shape[0]
    t = (
        jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0)
        if norm == "linf"
        else jax.random.normal(key, x.shape, x.dtype)
    )
    x_adv = jnp.clip(x + eps * _normalize(t, norm), 0.0, 1.0)

    loss_grad = functools.partial(_loss_grad, logits_fn, loss_fn)
    loss0, z0, grad0 = loss_grad(x_adv)
    carry = dict(
        x_adv=x_adv,
        x_old=x_adv,
        grad=grad0,
        x_best=x_adv,
        grad_best=grad0,
        loss_best=loss0,
        x_best_adv=x_adv,
        acc=jnp.argmax(z0, -1) == y,
        step=jnp.full((b,), 2.0 * eps, x.dtype),
        loss_steps=jnp.zeros((num_steps, b), jnp.float32),
        counter=jnp.int32(0),
        k=jnp.int32(n_iter_2),
        loss_best_last=loss0,
        reduced_last=jnp.ones((b,), bool),
    )
    checkpoint = functools.partial(
        _checkpoint, x=x, rho=rho, size_decr=size_decr, n_iter_min=n_iter_min
    )

    def body(i: jax.Array, c: dict) -> dict:
        xa, grad2 = c["x_adv"], c["x_adv"] - c["x_old"]
        a = jnp.where(i > 0, 0.75, 1.0)
        st = _bcast(c["step"], x)
        direction = jnp.sign(c["grad"]) if norm == "linf" else _normalize(c["grad"], "l2")
        z1 = project(xa + st * direction, x, eps, norm)
        x_new = project(xa + (z1 - xa) * a + grad2 * (1.0 - a), x, eps, norm)
        li, z, g = loss_grad(x_new)
        pred = jnp.argmax(z, -1) == y
        improved = li > c["loss_best"]
        mi = _bcast(improved, x)
        c = dict(
            c,
            x_old=xa,
            x_adv=x_new,
            grad=g,
            acc=c["acc"] & pred,
            x_best_adv=jnp.where(_bcast(~pred, x), x_new, c["x_best_adv"]),
            loss_steps=c["loss_steps"].at[i].set(li),
            x_best=jnp.where(mi, x_new, c["x_best"]),
            grad_best=jnp.where(mi, g, c["grad_best"]),
            loss_best=jnp.where(improved, li, c["loss_best"]),
            counter=c["counter"] + 1,
        )
        return jax.lax.cond(c["counter"] == c["k"], lambda cc: checkpoint(i, cc), lambda cc: cc, c)

    c = jax.lax.fori_loop(0, num_steps, body, carry)
    return c["x_best"], c["acc"], c["loss_best"], c["x_best_adv"]


def _validate(x: jax.Array, y: jax.Array, eps: float, num_steps: int) -> None:
    if x.ndim < 2 or y.shape != x.shape[:1]:
        raise ValueError(f"x must be (B, ...) and y (B,), got {x.shape} and {y.shape}")
    if not eps > 0 or num_steps < 1:
        raise ValueError(f"need eps > 0 and num_steps >= 1, got {eps}, {num_steps}")


def _runs(logits_fn, x, y, key, acc0, num_runs, loss_of_run, eps, num_steps, norm, rho):
    """``num_runs`` APGD runs (run j: key ``fold_in(key, j)``, loss ``loss_of_run(j)``); per
    example the point of the first run that fools it, else x. ``acc0``: clean-correct mask."""

    def body(j: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        adv, acc = carry
        _, acc_r, _, adv_r = apgd_single_run(
            logits_fn,
            x,
            y,
            jax.random.fold_in(key, j),
            loss_of_run(j),
            eps=eps,
            num_steps=num_steps,
            norm=norm,
            rho=rho,
        )
        fooled = acc & ~acc_r
        return jnp.where(_bcast(fooled, x), adv_r, adv), acc & ~fooled

    return jax.lax.fori_loop(0, num_runs, body, (x, acc0))[0]


def apgd(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    num_steps: int = 100,
    norm: str = "linf",
    loss: str = "ce",
    num_restarts: int = 1,
    rho: float = 0.75,
) -> jax.Array:
    """Untargeted APGD with loss 'ce' (APGD-CE) or 'dlr' (APGD-DLR); AutoAttack `perturb`.

    Returns per example the most recent misclassified iterate over the restarts, else x.
    """
    _validate(x, y, eps, num_steps)
    if loss == "ce":
        loss_fn = lambda z: losses.cross_entropy(z, y)  # noqa: E731
    elif loss == "dlr":
        loss_fn = lambda z: losses.dlr(z, y)  # noqa: E731
    else:
        raise ValueError(f"apgd loss must be 'ce' or 'dlr', got {loss!r}")
    x = jax.lax.stop_gradient(x)
    acc0 = jnp.argmax(logits_fn(x), -1) == y
    return _runs(
        logits_fn, x, y, key, acc0, num_restarts, lambda r: loss_fn, eps, num_steps, norm, rho
    )


def apgd_targeted(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    num_steps: int = 100,
    norm: str = "linf",
    num_target_classes: int = 9,
    num_restarts: int = 1,
    rho: float = 0.75,
) -> jax.Array:
    """APGD-T: targeted DLR towards the 2nd … (n+1)-th highest clean logits in turn (AA #52)."""
    _validate(x, y, eps, num_steps)
    x = jax.lax.stop_gradient(x)
    z_clean = logits_fn(x)
    k = z_clean.shape[-1]
    if not 1 <= num_target_classes <= k - 1:
        raise ValueError(f"num_target_classes must be in [1, {k - 1}], got {num_target_classes}")
    order = jnp.argsort(z_clean, axis=-1)  # ascending, as torch sort
    acc0 = jnp.argmax(z_clean, -1) == y

    def loss_of_run(j: jax.Array):
        target_class = 2 + j // num_restarts  # reference loops target 2..n+1, restarts inside
        y_t = jnp.take(order, k - target_class, axis=-1)
        return lambda z: losses.dlr_targeted(z, y, y_t)

    num_runs = num_target_classes * num_restarts
    return _runs(logits_fn, x, y, key, acc0, num_runs, loss_of_run, eps, num_steps, norm, rho)
