"""Randomness conventions: a step's key is derived from the state, never from host state."""

import jax


def step_key(state) -> jax.Array:
    """The key of this train step: ``fold_in(state.rng, state.step)``.

    Because it depends only on the state, a resumed run draws the same randomness as an
    uninterrupted one.
    """
    return jax.random.fold_in(state.rng, state.step)
