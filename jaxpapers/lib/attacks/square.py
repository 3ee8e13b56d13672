"""Square Attack, L∞ (Andriushchenko et al., ECCV 2020), as configured in AutoAttack.

Score-based (no gradients). Re-derived from the paper and checked against
`fra31/auto-attack:square.py` (read, not copied):
  * init: vertical stripes x + ε·s, s ∈ {−1, +1} drawn per column and channel, clipped to [0, 1];
  * at query i the window side is s = max(round(√(p·h·w)), 1) (≤ min(h, w)), with p = p_init
    halved after queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (AutoAttack passes
    resc_schedule=False, so the schedule is not rescaled to n_queries);
  * the window position (uniform in [0, h − s) × [0, w − s), the reference's `random_int`) and the
    per-channel sign ±2ε are shared by the whole batch at each query, as in the reference;
  * a candidate replaces the current point when the margin loss z_y − max_{j≠y} z_j decreases, or
    when it misclassifies; fooled points stop (masked here), the loop ends when all are fooled.
Inputs are NHWC (the reference is NCHW; only the layout differs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.lib.attacks import losses
from jaxpapers.lib.attacks.pgd import LogitsFn, _bcast

_P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(p_init: float, it: jax.Array) -> jax.Array:
    """Fraction of pixels changed at query `it` (reference `p_selection`, no rescaling)."""
    halvings = sum((it > b).astype(jnp.int32) for b in _P_SCHEDULE)
    return p_init / (2.0 ** halvings.astype(jnp.float32))


def square_linf(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    num_queries: int = 5000,
    p_init: float = 0.8,
    num_restarts: int = 1,
) -> jax.Array:
    """Untargeted L∞ Square attack on NHWC images; returns fooled points, else the clean x."""
    if x.ndim != 4 or y.shape != x.shape[:1]:
        raise ValueError(f"square_linf needs NHWC x and (B,) y, got {x.shape} and {y.shape}")
    if not eps > 0 or num_queries < 1 or not 0 < p_init <= 1:
        raise ValueError(f"bad eps/num_queries/p_init: {eps}, {num_queries}, {p_init}")
    x = jax.lax.stop_gradient(x)
    b, h, w, c = x.shape
    hi, wi = jnp.arange(h)[:, None], jnp.arange(w)[None, :]

    def margin(xa: jax.Array) -> jax.Array:
        # The reference returns (margin, loss) with loss = margin for the 'margin' loss; ours is
        # z_y − max_{j≠y} z_j = −losses.margin.
        return -losses.margin(logits_fn(xa), y)

    def single_run(rkey: jax.Array) -> jax.Array:
        k0, kloop = jax.random.split(rkey)
        stripes = jnp.sign(jax.random.uniform(k0, (b, 1, w, c), minval=-1.0, maxval=1.0))
        x_best = jnp.clip(x + eps * stripes, 0.0, 1.0)
        m0 = margin(x_best)

        def cond(state):
            i, _, m_min, _ = state
            return (i < num_queries) & jnp.any(m_min > 0.0)

        def body(state):
            i, x_best, m_min, l_min = state
            kpos_h, kpos_w, ksign = jax.random.split(jax.random.fold_in(kloop, i), 3)
            p = p_selection(p_init, i)
            s = jnp.maximum(jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32), 1)
            s = jnp.minimum(s, min(h, w))
            # random_int(0, n) = floor(n·U): uniform over {0, …, n−1}, and 0 when n = 0.
            vh = jnp.floor((h - s) * jax.random.uniform(kpos_h)).astype(jnp.int32)
            vw = jnp.floor((w - s) * jax.random.uniform(kpos_w)).astype(jnp.int32)
            sign = jnp.sign(jax.random.uniform(ksign, (c,), minval=-1.0, maxval=1.0))
            window = ((hi >= vh) & (hi < vh + s) & (wi >= vw) & (wi < vw + s))[None, :, :, None]
            x_new = x_best + jnp.where(window, 2.0 * eps * sign, 0.0)
            x_new = jnp.clip(jnp.clip(x_new, x - eps, x + eps), 0.0, 1.0)
            m = margin(x_new)
            active = m_min > 0.0  # the reference only queries points not yet fooled
            improved = (m < l_min) & active
            l_min = jnp.where(improved, m, l_min)
            take = (improved | (m <= 0.0)) & active
            m_min = jnp.where(take, m, m_min)
            x_best = jnp.where(_bcast(take, x), x_new, x_best)
            return i + 1, x_best, m_min, l_min

        state = (jnp.int32(0), x_best, m0, m0)
        return jax.lax.while_loop(cond, body, state)[1]

    acc0 = jnp.argmax(logits_fn(x), -1) == y

    def restart(r: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        adv, acc = carry
        adv_r = single_run(jax.random.fold_in(key, r))
        fooled = acc & (jnp.argmax(logits_fn(adv_r), -1) != y)
        return jnp.where(_bcast(fooled, x), adv_r, adv), acc & ~fooled

    return jax.lax.fori_loop(0, num_restarts, restart, (x, acc0))[0]
