"""Trains the FD-FMNIST feature network (FmnistCNN) on Fashion-MNIST train and saves it.

Command line: ``python -m jaxpapers.tools.train_fmnist_net --out jaxpapers/evals/gan/weights``
writes ``fmnist_cnn.npz`` (the variables) and ``fmnist_cnn.json`` (the command, the settings
and the test accuracy). Deterministic for a given seed on a given machine.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxpapers import data, optim
from jaxpapers.evals.gan import fmnist_net


def _load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = data.load(ml_collections.ConfigDict(dict(name="fashion_mnist")), split)
    return arrays["image"], arrays["label"]


def train(epochs: int, batch_size: int, lr: float, seed: int) -> tuple[dict, dict]:
    """Returns (variables, report) after ``epochs`` of Adam on the train split."""
    x_train, y_train = _load_split("train")
    x_test, y_test = _load_split("test")
    model = fmnist_net.FmnistCNN()
    key = jax.random.key(seed)
    params = model.init(key, jnp.zeros((1, 28, 28, 1)))["params"]
    steps_per_epoch = len(x_train) // batch_size
    opt_cfg = optim.config(
        name="adam", lr=lr, schedule="cosine", total_steps=epochs * steps_per_epoch
    )
    tx = optim.make(opt_cfg)
    opt_state = tx.init(params)

    def to_input(images):
        return fmnist_net.preprocess(images.astype(jnp.float32) / 255.0)

    @jax.jit
    def step(params, opt_state, images, labels):
        def loss_fn(p):
            logits = model.apply({"params": p}, to_input(images))["logits"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def predict(params, images):
        return jnp.argmax(model.apply({"params": params}, to_input(images))["logits"], -1)

    rng = np.random.default_rng(seed)
    start = time.time()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            params, opt_state, loss = step(params, opt_state, x_train[idx], y_train[idx])
            losses.append(loss)
        print(
            f"epoch {epoch + 1}/{epochs} loss {float(np.mean(jax.device_get(losses))):.4f} "
            f"({time.time() - start:.0f}s)",
            flush=True,
        )

    def accuracy(x, y):
        preds = [np.asarray(predict(params, x[i : i + 1000])) for i in range(0, len(x), 1000)]
        return float(np.mean(np.concatenate(preds) == y))

    report = dict(
        test_accuracy=accuracy(x_test, y_test),
        train_accuracy=accuracy(x_train, y_train),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule="cosine",
        optimizer="adam",
        seed=seed,
        train_seconds=round(time.time() - start, 1),
        jax=jax.__version__,
        backend=jax.default_backend(),
    )
    return {"params": params}, report
