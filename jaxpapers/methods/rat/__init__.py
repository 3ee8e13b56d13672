"""``rat``: Regional Adversarial Training (Song et al., arXiv 2109.00678) with the SAT (PGD-AT)
and TRADES baselines as ``config.method_variant`` switches. See README.md for the reconstruction."""

from jaxpapers.methods.rat.evaluate import evaluate, logits_fn
from jaxpapers.methods.rat.inputs import input_spec
from jaxpapers.methods.rat.steps import init_state, train_step

kind = "train"
