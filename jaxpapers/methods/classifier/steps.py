"""Cross-entropy training (optional label smoothing) with on-device crop/flip augmentation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxpapers import optim, rng, state
from jaxpapers.layers import precision, resnet
from jaxpapers.lib import augment


def init_state(key, config) -> state.TrainState:
    model = resnet.build(config.model)
    k_init, k_state = jax.random.split(key)
    dummy = jnp.zeros((1, *config.data.image_shape), jnp.float32)
    variables = model.init(k_init, dummy, train=False)
    return state.TrainState.create(
        variables["params"], optim.make(config.optim), k_state, variables.get("batch_stats", {})
    )


def cross_entropy(logits, labels, num_classes: int, smoothing: float = 0.0):
    """Mean CE against one-hot labels smoothed as (1 - s) * onehot + s / K."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def train_step(st: state.TrainState, batch, *, config):
    model = resnet.build(config.model)
    x = augment.crop_flip(
        rng.step_key(st), augment.to_float(batch["image"]), config.data.crop_pad, config.data.flip
    )

    def loss_fn(params):
        logits, updates = precision.apply(
            model,
            {"params": params, "batch_stats": st.batch_stats},
            x,
            dtype=precision.compute_dtype(config.model),
            keep=resnet.F32_PARAMS,
            train=True,
            mutable=["batch_stats"],
        )
        loss = cross_entropy(
            logits, batch["label"], config.model.num_classes, config.label_smoothing
        )
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    st = st.apply_gradients(grads, optim.make(config.optim), batch_stats=stats)
    acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return st, {"loss": loss, "accuracy": acc, "grad_norm": optax.tree.norm(grads)}
