"""Top-1 test accuracy, and the eval-mode logits on [0, 1] pixels that attacks differentiate."""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxpapers import data, state
from jaxpapers.evals import classification
from jaxpapers.layers import resnet


def evaluate(st: state.TrainState, config, workdir: str) -> dict[str, float]:
    """Top-1 accuracy on the test split (``config.data.eval_split``)."""
    test = data.load(config.data, config.data.eval_split)
    model = resnet.build(config.model)
    fn = classification.jit_logits(model, {"params": st.params, "batch_stats": st.batch_stats})
    acc = classification.accuracy(fn, test["image"], test["label"], config.eval_batch_size)
    return {"test_accuracy": acc, "test_examples": float(len(test["label"]))}


def logits_fn(st: state.TrainState, config) -> Callable[[jax.Array], jax.Array]:
    """Eval-mode logits of images in [0, 1] (the training input scale: ``augment.to_float``)."""
    model = resnet.build(config.model)
    variables = {"params": st.params, "batch_stats": st.batch_stats}
    return lambda x: model.apply(variables, x, train=False)
