"""RAT's adversarial region, its samples and the distance-aware label smoothing.

Song et al., "Regional Adversarial Training for Better Robust Generalization", arXiv 2109.00678.

Only the abstract could be read and there is no official code, so every geometric and smoothing
choice below is a RECONSTRUCTION behind a config switch; the README lists the doubts. Notation:
benign x, PGD iterates x_0 (random start) … x_T, L∞ budget ε, K classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.lib.attacks import l2_norm, linf_norm, project

REGIONS = ("segments", "hull", "tube")
DISTANCES = ("linf_eps", "l2_path")
DIRECTIONS = ("far_more", "near_more")


def path_nodes(x: jax.Array, path: jax.Array, include_clean: bool) -> jax.Array:
    """The node set P: (x, x_0, …, x_T) if include_clean else (x_0, …, x_T); shape (N, B, ...)."""
    if path.ndim != x.ndim + 1 or path.shape[1:] != x.shape:
        raise ValueError(f"path must be (T+1, *x.shape) = (T+1, {x.shape}), got {path.shape}")
    return jnp.concatenate([x[None], path], axis=0) if include_clean else path


def _combine(weights: jax.Array, nodes: jax.Array) -> jax.Array:
    """Per example convex combination Σ_n w[b, n] nodes[n, b] -> (B, ...)."""
    return jnp.einsum("bn,nb...->b...", weights, nodes)


def sample_region(
    key: jax.Array,
    x: jax.Array,
    path: jax.Array,
    *,
    eps: float,
    region: str = "segments",
    num_samples: int = 1,
    include_clean: bool = True,
    include_endpoint: bool = False,
    tube_radius: float = 0.25,
) -> jax.Array:
    """Draws `num_samples` points per benign example from the region built on the PGD path.

    Args:
      key: PRNG key. x: benign batch (B, ...). path: PGD iterates (T+1, B, ...) from `pgd(...,
        return_path=True)`. eps: the L∞ budget (for the tube and the final projection).
      region: 'segments' — (a) a uniform segment t and λ ~ U[0, 1] on the polyline through the
        nodes, x' = p_t + λ(p_{t+1} − p_t); 'hull' — (b) w ~ Dirichlet(1, …, 1), x' = Σ w_i p_i;
        'tube' — (c) a 'segments' point plus U(−rε, rε) noise, projected back.
      num_samples: m points per benign example.
      include_clean: put x itself in the node set P (the notes define P = {x, x_0, …, x_T}).
      include_endpoint: the first of the m samples is the PGD endpoint x_T (SAT's point).
      tube_radius: r of the tube, relative to ε.

    Returns:
      (m, B, ...) samples, all inside B_∞(x, ε) ∩ [0, 1] (the ball and the box are convex, so
      (a) and (b) stay inside without projection; (c) is projected).
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    nodes = path_nodes(x, path, include_clean)
    n, b = nodes.shape[0], x.shape[0]
    if n < 2:
        raise ValueError("the region needs at least two path nodes (num_steps >= 1)")

    def one(k: jax.Array) -> jax.Array:
        kt, kl, kn = jax.random.split(k, 3)
        if region == "hull":
            w = jax.random.dirichlet(kt, jnp.ones((n,)), (b,))
        else:
            t = jax.random.randint(kt, (b,), 0, n - 1)
            lam = jax.random.uniform(kl, (b, 1))
            w = jax.nn.one_hot(t, n) * (1.0 - lam) + jax.nn.one_hot(t + 1, n) * lam
        xs = _combine(w.astype(x.dtype), nodes)
        if region == "tube":
            r = tube_radius * eps
            xs = xs + jax.random.uniform(kn, x.shape, x.dtype, -r, r)
        # Exact in (a)/(b) up to rounding; the projection removes float drift and bounds (c).
        return project(xs, x, eps, "linf")

    samples = jax.vmap(one)(jax.random.split(key, num_samples))
    if include_endpoint:
        samples = samples.at[0].set(path[-1])
    return samples


def normalized_distance(
    x: jax.Array, samples: jax.Array, path: jax.Array, *, eps: float, distance: str
) -> jax.Array:
    """d(x') ∈ [0, 1] for samples (m, B, ...): ‖x' − x‖_∞/ε, or ‖x' − x‖₂ / max_t ‖x_t − x‖₂."""
    m = samples.shape[0]
    flat = samples.reshape((m * x.shape[0],) + x.shape[1:])
    x_rep = jnp.tile(x, (m,) + (1,) * (x.ndim - 1))
    if distance == "linf_eps":
        d = linf_norm(flat - x_rep) / eps
    elif distance == "l2_path":
        scale = jnp.max(jax.vmap(lambda p: l2_norm(p - x))(path), axis=0)  # (B,)
        d = l2_norm(flat - x_rep) / (jnp.tile(scale, m) + 1e-12)
    else:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    return jnp.clip(d, 0.0, 1.0).reshape(m, x.shape[0])


def smoothing_amount(
    d: jax.Array, *, s_max: float, power: float = 1.0, direction: str = "far_more"
) -> jax.Array:
    """s(d) = s_max·d^p ('far_more': farther points are trusted less) or s_max·(1 − d)^p."""
    if direction == "far_more":
        return s_max * d**power
    if direction == "near_more":
        return s_max * (1.0 - d) ** power
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def smoothed_targets(labels: jax.Array, s: jax.Array, num_classes: int) -> jax.Array:
    """q = (1 − s)·e_y + s·(1 − e_y)/(K − 1), for labels (...,) and amounts s (...,) -> (..., K)."""
    e = jax.nn.one_hot(labels, num_classes)
    s = s[..., None]
    return (1.0 - s) * e + s * (1.0 - e) / (num_classes - 1)
