"""``classifier``: a plain supervised image classifier (the clean baseline of RAT, hedge, StRA)."""

from jaxpapers.methods.classifier.steps import (  # noqa: F401
    evaluate,
    init_state,
    input_spec,
    train_step,
)

kind = "train"
