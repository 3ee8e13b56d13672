"""``rat``: Regional Adversarial Training (Song et al., arXiv 2109.00678) with the SAT (PGD-AT)
and TRADES baselines as ``config.method_variant`` switches. See README.md for the reconstruction."""

from jaxpapers.methods.rat.evaluation import evaluate  # noqa: F401
from jaxpapers.methods.rat.steps import (  # noqa: F401
    init_state,
    input_spec,
    logits_fn,
    train_step,
)

kind = "train"
