"""SynFace training losses: identity mixup (IM) soft labels and domain mixup (DM).

Official code (haibo-qiu/SynFace lib/core/functions.py ``train``): with A(f, y) the ArcFace
logits of embedding f with the margin on class y, a synthetic image with labels (y_a, phi),
(y_b, 1 - phi) mixed in pixel space with a real image (label y_real, offset after the synthetic
classes) at weight psi gets

    o = psi * (phi * A(f, y_a) + (1 - phi) * A(f, y_b)) + (1 - psi) * A(f, y_real)   (logits)
    L = psi * [phi * CE(o, y_a) + (1 - phi) * CE(o, y_b)] + (1 - psi) * CE(o, y_real)   (loss)

The margin is applied per target *before* mixing.  `mixed_logits` computes o literally (three
margin heads and their convex combination); `soft_targets` gives the equivalent target matrix
t = psi*(phi*e_a + (1-phi)*e_b) + (1-psi)*e_real, for which ``margin_heads.margin_logits(cos, t)``
is the same o and the loss is the soft-label CE (used by the train step, one head evaluation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.lib import margin_heads as mh

Array = jax.Array


def mixup_grid(step: float = 0.05) -> np.ndarray:
    """The official phi/psi grid {0, 0.05, ..., 1.0} (21 values)."""
    n = int(round(1.0 / step))
    if n < 1 or abs(n * step - 1.0) > 1e-9:
        raise ValueError(f"Grid step {step} must divide 1 (e.g. 0.05).")
    return np.round(np.arange(n + 1) * step, 10).astype(np.float32)


def sample_from_grid(key: Array, shape: tuple[int, ...], step: float = 0.05) -> Array:
    """Uniform draws from `mixup_grid(step)` (python random.choice over the list, officially)."""
    grid = jnp.asarray(mixup_grid(step))
    return grid[jax.random.randint(key, shape, 0, len(grid))]


def two_hot(y_a: Array, y_b: Array, phi: Array, num_classes: int) -> Array:
    """IM label phi*e_a + (1-phi)*e_b, (N, C) (``Img_Folder_Mix.get_label``)."""
    phi = phi.astype(jnp.float32)[:, None]
    return phi * jax.nn.one_hot(y_a, num_classes) + (1.0 - phi) * jax.nn.one_hot(y_b, num_classes)


def soft_targets(
    y_a: Array, y_b: Array, phi: Array, y_real: Array | None, psi: Array | float, num_classes: int
) -> Array:
    """psi*two_hot + (1-psi)*e_real; y_real=None means no DM (psi is then ignored, = 1)."""
    t = two_hot(y_a, y_b, phi, num_classes)
    if y_real is None:
        return t
    psi = jnp.asarray(psi, jnp.float32)
    return psi * t + (1.0 - psi) * jax.nn.one_hot(y_real, num_classes)


def mixed_logits(
    cos: Array,
    y_a: Array,
    y_b: Array,
    phi: Array,
    y_real: Array | None,
    psi: Array | float,
    margin: mh.Margin,
) -> Array:
    """The official margin-then-mix logits o (module doc), computed literally per target."""
    phi = phi.astype(jnp.float32)[:, None]
    a = mh.margin_logits(cos, y_a, margin)
    b = mh.margin_logits(cos, y_b, margin)
    o = phi * a + (1.0 - phi) * b
    if y_real is None:
        return o
    psi = jnp.asarray(psi, jnp.float32)
    return psi * o + (1.0 - psi) * mh.margin_logits(cos, y_real, margin)


def ce(logits: Array, labels: Array) -> Array:
    """Per-sample softmax CE with integer labels (N,)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def synface_loss(
    logits: Array, y_a: Array, y_b: Array, phi: Array, y_real: Array | None, psi: Array | float
) -> Array:
    """psi*[phi*CE(o,y_a) + (1-phi)*CE(o,y_b)] + (1-psi)*CE(o,y_real), batch mean (official)."""
    phi = phi.astype(jnp.float32)
    per = phi * ce(logits, y_a) + (1.0 - phi) * ce(logits, y_b)
    if y_real is not None:
        psi = jnp.asarray(psi, jnp.float32)
        per = psi * per + (1.0 - psi) * ce(logits, y_real)
    return jnp.mean(per)


def mix_pixels(x_syn: Array, x_real: Array, psi: Array | float) -> Array:
    """DM input psi*X_syn + (1-psi)*X_real (after normalisation, one psi per batch)."""
    if x_syn.shape != x_real.shape:
        raise ValueError(f"Synthetic {x_syn.shape} and real {x_real.shape} batches differ.")
    return psi * x_syn + (1.0 - psi) * x_real
