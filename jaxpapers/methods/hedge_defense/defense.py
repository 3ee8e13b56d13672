"""The hedge defense (Wu et al. 2021, "Attacking Adversarial Attacks as A Defense").

At test time every class is attacked at once: maximise Σ_c CE(f(x'), c) (= K·KL(u ‖ softmax f(x'))
+ const) by sign-gradient steps, projected onto the L∞ ball of radius ε around the *input* x̃ and
onto [0, 1]. Defaults are the official code's (`burcywu/hedge_defense:hedge_defense.py`, read):
20 steps, step 0.007, ε 0.031, uniform random start that is NOT clipped before the first forward.

Prediction modes:
  * ``path_logit_sum`` (official): logits are summed over the iterates x¹ … x^{T−1} — the logits of
    x⁰ are dropped and the final x^T is never evaluated — and the argmax of the sum is predicted.
  * ``final`` (Croce et al. 2022 re-implementation): the logits of the final point x^T.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LogitsFn = Callable[[jax.Array], jax.Array]
PREDICT_MODES = ("path_logit_sum", "final")
UNROLL_MODES = ("auto", "yes", "no")


def unroll_for(mode: str) -> bool | int:
    """The ``lax.scan`` unroll of ``hedge`` for ``config.hedge.unroll``.

    'auto' unrolls on CPU only: XLA:CPU runs convolutions inside loop bodies several times slower
    than at the top level (``benchmarks/control_flow.py``), while on GPU/TPU a rolled loop compiles
    faster at the same speed. Both give the same iterates.
    """
    if mode not in UNROLL_MODES:
        raise ValueError(f"hedge.unroll must be one of {UNROLL_MODES}, got {mode!r}.")
    if mode == "auto":
        return True if jax.default_backend() == "cpu" else 1
    return True if mode == "yes" else 1


def hedge_kwargs(hcfg) -> dict:
    """``hedge`` keyword arguments from a ``config.hedge`` section."""
    return dict(
        eps=hcfg.eps,
        step_size=hcfg.step_size,
        num_steps=hcfg.num_steps,
        random_init=hcfg.random_init,
        predict=hcfg.predict,
        unroll=unroll_for(hcfg.get("unroll", "auto")),  # configs saved before the key existed
    )


def all_class_objective(logits: jax.Array) -> jax.Array:
    """Σ_c CE(logits, c) per example: K·logsumexp(z) − Σ_c z_c."""
    k = logits.shape[-1]
    return k * jax.nn.logsumexp(logits, axis=-1) - jnp.sum(logits, axis=-1)


def hedge(
    logits_fn: LogitsFn,
    x: jax.Array,
    key: jax.Array,
    *,
    eps: float = 0.031,
    step_size: float = 0.007,
    num_steps: int = 20,
    random_init: bool = True,
    predict: str = "path_logit_sum",
    unroll: int | bool = 1,
) -> tuple[jax.Array, jax.Array]:
    """Runs the defense on a batch in [0, 1]; returns ``(logits used to predict, final point)``.

    One ``lax.scan`` over the steps, so the whole defense jits into one program; ``unroll`` is its
    unroll factor (True: fully unrolled, see ``unroll_for``), which leaves the result unchanged.
    """
    if predict not in PREDICT_MODES:
        raise ValueError(
            f"Unknown hedge predict mode {predict!r}; expected one of {PREDICT_MODES}."
        )
    if num_steps < 2 and predict == "path_logit_sum":
        raise ValueError("path_logit_sum needs num_steps >= 2 (it sums the iterates 1..T-1).")
    x = jax.lax.stop_gradient(x)
    x0 = x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps) if random_init else x

    def objective(xa):
        logits = logits_fn(xa)
        return jnp.sum(all_class_objective(logits)), logits

    def step(carry, k):
        xa, acc = carry
        g, logits = jax.grad(objective, has_aux=True)(xa)
        acc = acc + jnp.where(k > 0, 1.0, 0.0) * logits  # official: accumulator reset at k = 0
        xa = xa + step_size * jnp.sign(g)
        xa = jnp.clip(x + jnp.clip(xa - x, -eps, eps), 0.0, 1.0)
        return (xa, acc), None

    n_cls = jax.eval_shape(logits_fn, x).shape[-1]
    acc0 = jnp.zeros((x.shape[0], n_cls), jnp.float32)
    (x_t, acc), _ = jax.lax.scan(step, (x0, acc0), jnp.arange(num_steps), unroll=unroll)
    if predict == "final":
        return logits_fn(x_t), x_t
    return acc, x_t


def random_noise(x: jax.Array, key: jax.Array, eps: float = 0.031) -> jax.Array:
    """The paper's control: one uniform draw in [−ε, ε] on the input, clipped to [0, 1]."""
    return jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), 0.0, 1.0)


def bpda_defended_logits(
    logits_fn: LogitsFn, key: jax.Array, *, eot: int = 3, **hedge_options
) -> LogitsFn:
    """The defended classifier as an attack sees it (Croce et al. 2022, arXiv 2202.13711).

    The defense's displacement δ = x_T − x is computed without gradient and the attack
    differentiates through x → x + δ (BPDA with the identity), averaging the logits of ``eot``
    random-start draws (EOT). The classification is that of the final point.
    """
    kwargs = dict(hedge_options, predict="final")

    def fn(x):
        def one(k):
            _, x_t = hedge(logits_fn, jax.lax.stop_gradient(x), k, **kwargs)
            delta = jax.lax.stop_gradient(x_t - x)
            return logits_fn(x + delta)

        return jnp.mean(jax.vmap(one)(jax.random.split(key, eot)), axis=0)

    return fn


def local_gradient_norms(logits_fn: LogitsFn, x: jax.Array) -> jax.Array:
    """‖∇_x CE(f(x), c)‖₁ for every class c: (B, K). The paper's local-Lipschitzness proxy."""
    n_cls = jax.eval_shape(logits_fn, x).shape[-1]

    def per_class(c):
        def ce(xa):
            return -jnp.sum(jax.nn.log_softmax(logits_fn(xa))[:, c])

        g = jax.grad(ce)(x)
        return jnp.sum(jnp.abs(g).reshape(g.shape[0], -1), axis=-1)

    return jax.vmap(per_class)(jnp.arange(n_cls)).T
