"""FaceAnime generator-stage losses.

Official code: pingponglabs/FaceAnime main_paraltrain_withMask_300vw_idloss.py.

Critic (WGAN-GP, conditional on the target sparse render n_dst):
    x_hat = eps * x_dst + (1 - eps) * x_fake,          eps ~ U(0, 1) per example
    L_D = mean D([x_fake || n_dst]) - mean D([x_dst || n_dst])
          + lambda_gp * mean_b (|| d D([x_hat || n_dst]) / d [x_hat || n_dst] ||_2 - 1)^2
  (the official code differentiates w.r.t. the whole 6-channel critic input, so the norm also
  contains the n_dst part of the gradient; kept.)  lambda_gp = 10.
Generator:
    L_G = -mean D([x_fake || n_dst]) + w_l1 * L1(x_fake, x_dst) + w_w * |w|_1 + w_id * L_id
  with the official weights w_l1 = 1e4, w_w = 0.05, w_id = 1e4 (config values); L1 and |w|_1 are
  element means (common.utils.loss_l1 / loss_norm_l1 are not in the release [unverified: mean
  reduction assumed]); L_id is `lib/face_identity.identity_loss` (fake vs the real target frame).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
Critic = Callable[[Array], Array]  # [B, H, W, 6] -> [B] or [B, 1]


def critic_input(image: Array, cond: Array) -> Array:
    """[image || condition] on the channel axis (the official 6-channel critic input)."""
    if image.shape[:-1] != cond.shape[:-1]:
        raise ValueError(f"image {image.shape} and condition {cond.shape} differ in B, H, W.")
    return jnp.concatenate([image, cond], axis=-1)


def gradient_penalty(critic: Critic, real: Array, fake: Array, cond: Array, eps: Array) -> Array:
    """mean_b (|| grad_{[x_hat||cond]} D ||_2 - 1)^2 with x_hat = eps*real + (1-eps)*fake.

    Args:
      critic: maps the 6-channel input [B, H, W, 2C] to scores [B] (or [B, 1]).
      real, fake: [B, H, W, C]; fake is treated as a constant (official: .detach()).
      cond: [B, H, W, C] condition (n_dst).
      eps: [B] interpolation weights.
    """
    e = eps.reshape(-1, *([1] * (real.ndim - 1)))
    x_hat = e * real + (1.0 - e) * jax.lax.stop_gradient(fake)
    inp = critic_input(x_hat, cond)
    # grad_outputs = ones: the gradient of the SUM of the scores gives each example's gradient.
    grads = jax.grad(lambda z: jnp.sum(critic(z)))(inp)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))
    return jnp.mean(jnp.square(norms - 1.0))


def critic_loss(
    critic: Critic, real: Array, fake: Array, cond: Array, eps: Array, gp_weight: float = 10.0
) -> tuple[Array, dict[str, Array]]:
    """WGAN-GP critic loss and its parts (fake is detached)."""
    fake = jax.lax.stop_gradient(fake)
    d_real = jnp.mean(critic(critic_input(real, cond)))
    d_fake = jnp.mean(critic(critic_input(fake, cond)))
    gp = gradient_penalty(critic, real, fake, cond, eps)
    loss = d_fake - d_real + gp_weight * gp
    return loss, {"d_real": d_real, "d_fake": d_fake, "gp": gp, "w_dist": d_real - d_fake}


def l1(a: Array, b: Array) -> Array:
    """Mean absolute error."""
    return jnp.mean(jnp.abs(a - b))


def generator_loss(
    critic: Critic,
    fake: Array,
    real: Array,
    cond: Array,
    w: Array,
    id_term: Array,
    *,
    w_l1: float,
    w_w: float,
    w_id: float,
) -> tuple[Array, dict[str, Array]]:
    """L_G = -mean D([fake||cond]) + w_l1 * L1 + w_w * mean|w| + w_id * L_id (module docstring)."""
    adv = -jnp.mean(critic(critic_input(fake, cond)))
    rec = l1(fake, real)
    reg_w = jnp.mean(jnp.abs(w))
    loss = adv + w_l1 * rec + w_w * reg_w + w_id * id_term
    return loss, {"g_adv": adv, "l1": rec, "w_l1": reg_w, "id": id_term}
