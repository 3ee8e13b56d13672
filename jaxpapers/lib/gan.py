"""StyleGAN2 losses, regularizers and the G EMA decay, shared by the StyleGAN2-based methods.

Official references: NVlabs/stylegan2 ``training/loss.py`` (``G_logistic_ns_pathreg``,
``D_logistic_r1``), NVlabs/stylegan2-ada-pytorch ``training/loss.py`` (same maths, phase
layout) and ``training/training_loop.py`` (``ema_kimg``, ``ema_rampup``):

* G (non-saturating logistic): E_z softplus(-D(G(z)))
* D: E softplus(D(G(z))) + E softplus(-D(x))
* R1: (gamma/2) * ||grad_x D(x)||^2 on reals (lazy, scaled by the interval).
* Path length: a = || J_w^T y ||, y ~ N(0, I)/sqrt(HW); penalty (a - a_bar)^2 with a running mean.
* G EMA: decay 0.5 ** (batch / ema_nimg), ema_nimg = ema_kimg * 1000 (optionally ramped up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax


def g_nonsaturating(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss, mean over the batch."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def d_logistic(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Logistic D loss, mean over the batch (the sum of the two official terms)."""
    return jnp.mean(jax.nn.softplus(fake_logits)) + jnp.mean(jax.nn.softplus(-real_logits))


def r1_penalty(d_fn: Callable[[jax.Array], jax.Array], reals: jax.Array) -> jax.Array:
    """Per-sample ||grad_x D(x)||^2 (the sum over the batch is differentiated, as officially)."""
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(reals)
    return jnp.sum(
        jnp.square(grads.astype(jnp.promote_types(grads.dtype, jnp.float32))), axis=(1, 2, 3)
    )


def path_lengths(
    synth_fn: Callable[[jax.Array], jax.Array], ws: jax.Array, key: jax.Array, img_shape
) -> jax.Array:
    """Per-sample ||J_w^T y||: sqrt(mean over layers of sum over w dims of g^2), y ~ N/sqrt(HW)."""
    n, h, w, c = img_shape
    y = jax.random.normal(key, (n, h, w, c)) / jnp.sqrt(float(h * w))
    g = jax.grad(lambda v: jnp.sum(synth_fn(v).astype(jnp.float32) * y))(ws)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(g), axis=2), axis=1))


def path_length_penalty(
    lengths: jax.Array, pl_mean: jax.Array, decay: float
) -> tuple[jax.Array, jax.Array]:
    """(per-sample penalty, new running mean). As officially, the penalty uses the updated mean
    and the gradient also flows through it."""
    new_mean = pl_mean + decay * (jnp.mean(lengths) - pl_mean)
    return jnp.square(lengths - new_mean), jax.lax.stop_gradient(new_mean)


def r1_update(
    d_apply: Callable[[Any, jax.Array], jax.Array],
    d_params: Any,
    d_opt: Any,
    tx_d: optax.GradientTransformation,
    reals: jax.Array,
    *,
    gamma: float,
    interval: int,
) -> tuple[Any, Any, jax.Array]:
    """One lazy-R1 D update: ``(gamma / 2) * E||grad_x D(x)||^2 * interval`` as its own Adam step
    (moments shared with the main D loss; the optimizer carries the official lr/beta correction).
    The caller decides on the host whether this step runs it (every ``interval`` D steps), so the
    convolutions stay at the top level of the program. Returns (D params, D opt state, penalty)."""

    def r1_loss(p):
        pen = r1_penalty(lambda x: d_apply(p, x), reals)
        return jnp.mean(pen) * (gamma / 2) * interval, jnp.mean(pen)

    (_, pen), grads = jax.value_and_grad(r1_loss, has_aux=True)(d_params)
    updates, d_opt = tx_d.update(grads, d_opt, d_params)
    return optax.apply_updates(d_params, updates), d_opt, pen


def d_update(
    d_real: Callable[[Any, jax.Array], jax.Array],
    d_fake: Callable[[Any, jax.Array], jax.Array],
    d_params: Any,
    d_opt: Any,
    tx_d: optax.GradientTransformation,
    reals: jax.Array,
    fakes: jax.Array,
    loss,
    *,
    do_r1: bool,
    r1_last: jax.Array,
) -> tuple[Any, Any, dict]:
    """The official D half-iteration: the logistic loss of reals vs ``fakes`` (already detached
    from G) as one optimizer update, then the lazy R1 update on reals when ``do_r1`` (static,
    chosen on the host) with ``loss.r1_gamma`` and ``loss.d_reg_interval``.
    ``d_real(params, images)`` / ``d_fake`` are D's logits with each side's conditioning.
    Returns (D params, D opt state, {d_loss, real_logits, fake_logits, r1})."""

    def loss_fn(p):
        real_logits, fake_logits = d_real(p, reals), d_fake(p, fakes)
        return d_logistic(real_logits, fake_logits), (real_logits, fake_logits)

    (d_loss, (real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        d_params
    )
    updates, d_opt = tx_d.update(grads, d_opt, d_params)
    d_params = optax.apply_updates(d_params, updates)
    r1 = r1_last
    if do_r1:
        d_params, d_opt, r1 = r1_update(
            d_real, d_params, d_opt, tx_d, reals, gamma=loss.r1_gamma, interval=loss.d_reg_interval
        )
    out = dict(d_loss=d_loss, real_logits=real_logits, fake_logits=fake_logits, r1=r1)
    return d_params, d_opt, out


def ema_beta(ema, batch_size: int, local_step: jax.Array) -> jax.Array:
    """G EMA decay from the half-life ``ema.kimg`` with the optional ``ema.rampup`` (ADA)."""
    batch = float(batch_size)
    ema_nimg = jnp.asarray(ema.kimg * 1000.0)
    if ema.rampup > 0:
        cur_nimg = local_step.astype(jnp.float32) * batch
        ema_nimg = jnp.minimum(ema_nimg, cur_nimg * ema.rampup)
    return jnp.power(0.5, batch / jnp.maximum(ema_nimg, 1e-8))
