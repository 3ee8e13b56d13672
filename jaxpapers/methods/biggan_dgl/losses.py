"""BigGAN hinge losses and BigGAN's modified orthogonal regulariser (the DGL term: ``lib.dgl``).

References (read, not copied): ajbrock/BigGAN-PyTorch ``losses.py`` (``loss_hinge_dis``,
``loss_hinge_gen``), ``utils.py`` (``ortho``); yuesongtian/DGL-GAN
``BigGAN-PyTorch-code/losses.py`` (``loss_hinge_genDual``: L_G = -E D_S(G(z)) - 0.1 E D_T(G(z))).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers import optim


def hinge_d(real_logits: jax.Array, fake_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(E relu(1 - D(x)), E relu(1 + D(G(z)))); the D loss is their sum."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)), jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_g(fake_logits: jax.Array) -> jax.Array:
    """-E D(G(z))."""
    return -jnp.mean(fake_logits)


def ortho_penalty(params, strength: float, exclude: tuple[str, ...] = ("shared",)) -> jax.Array:
    """BigGAN's modified orthogonal regularisation as a loss whose gradient is ``utils.ortho``.

    BigGAN-PyTorch adds ``strength * 2 (W W^T * (1 - I)) W`` to the gradient of every parameter
    with ndim >= 2 (``W = param.view(out, -1)``), skipping the shared embedding. That is the
    gradient of ``strength / 2 * ||W W^T * (1 - I)||_F^2``. Flax kernels are ``[..., out]``, so
    ``W^T = kernel.reshape(-1, out)``; embedding tables ``[num, dim]`` keep ``W = table``.
    """
    total = jnp.zeros((), jnp.float32)
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        name = optim.param_path(path)
        if p.ndim < 2 or any(part in exclude for part in name.split("/")):
            continue
        w = p if name.endswith("embedding") else p.reshape(-1, p.shape[-1]).T
        gram = w @ w.T
        off = gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))
        total = total + 0.5 * jnp.sum(jnp.square(off))
    return strength * total
