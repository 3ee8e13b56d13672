"""``classifier``: a plain supervised image classifier (the clean baseline of RAT, hedge, StRA)."""

from jaxpapers.methods.classifier.evaluate import evaluate, logits_fn
from jaxpapers.methods.classifier.inputs import input_spec
from jaxpapers.methods.classifier.steps import init_state, train_step

kind = "train"
