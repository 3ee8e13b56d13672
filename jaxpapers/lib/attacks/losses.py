"""Per-example attack losses (all are *maximised* by the attacks in this package).

Every function maps logits of shape (B, K) and integer labels (B,) to a loss of shape (B,).
Conventions follow the references named in each docstring; `fra31/auto-attack` is the
reference for DLR and the margin used by Square, `yaodongyu/TRADES` for the KL objective.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Masks the true class out of a max over "other" logits. Never multiply by 0 instead (as
# burcywu/hedge_defense attacks.py cw_loss does): that is wrong when every other logit is negative.
_MASK = 1e8


def _check(logits: jax.Array, labels: jax.Array, min_classes: int, name: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{name}: logits must be (batch, classes), got shape {logits.shape}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"{name}: labels must be ({logits.shape[0]},), got {labels.shape}")
    if logits.shape[1] < min_classes:
        raise ValueError(
            f"{name} needs at least {min_classes} classes, got {logits.shape[1]}; "
            "use the 'ce' or 'cw' loss for fewer classes."
        )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy CE(f(x), y) per example."""
    _check(logits, labels, 2, "cross_entropy")
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """CW-L∞ margin max_{j≠y} z_j − z_y (positive iff misclassified), true class masked properly."""
    _check(logits, labels, 2, "margin")
    logits = logits.astype(jnp.float32)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    z_y = jnp.sum(onehot * logits, axis=-1)
    z_other = jnp.max(logits - _MASK * onehot, axis=-1)
    return z_other - z_y


def dlr(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Untargeted DLR −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12) (Croce & Hein 2020)."""
    _check(logits, labels, 3, "dlr")
    logits = logits.astype(jnp.float32)
    z_sorted = jnp.sort(logits, axis=-1)  # ascending, as the reference
    z_y = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    top_is_y = (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)
    # max over i≠y: second largest if y is the arg-max, else the largest.
    z_other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1.0 - top_is_y)
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def dlr_targeted(logits: jax.Array, labels: jax.Array, targets: jax.Array) -> jax.Array:
    """Targeted DLR −(z_y − z_t) / (z_π1 − ½(z_π3 + z_π4) + 1e-12) (Croce & Hein 2020)."""
    _check(logits, labels, 4, "dlr_targeted")
    logits = logits.astype(jnp.float32)
    z_sorted = jnp.sort(logits, axis=-1)
    z_y = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    z_t = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def kl_to_reference(logits: jax.Array, ref_logits: jax.Array) -> jax.Array:
    """KL(softmax(ref) ‖ softmax(logits)) per example, the TRADES inner objective (TRADES eq. 5).

    Matches PyTorch `KLDivLoss(log_softmax(adv), softmax(nat))` summed over classes.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(f"kl_to_reference: shapes differ {logits.shape} vs {ref_logits.shape}")
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    logq = jax.nn.log_softmax(ref_logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(logq) * (logq - logp), axis=-1)


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """−Σ_k q_k log softmax(z)_k per example, for soft targets q of shape (B, K)."""
    if logits.shape != targets.shape:
        raise ValueError(f"soft_cross_entropy: shapes differ {logits.shape} vs {targets.shape}")
    return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
