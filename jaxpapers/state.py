"""The single-network train state; multi-network methods define their own dataclass."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Arrays only (no functions), so it can be donated, sharded and checkpointed as is.

    The optimizer is rebuilt from the config inside the step (``optim.make``): optax
    transformations are cheap to build at trace time and keeping them out of the state keeps the
    state a plain pytree.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    batch_stats: Any
    rng: jax.Array

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, rng, batch_stats=None):
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            batch_stats=batch_stats if batch_stats is not None else {},
            rng=rng,
        )

    def apply_gradients(self, grads, tx: optax.GradientTransformation, **changes):
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)
