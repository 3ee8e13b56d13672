"""``stra``: Structure-Regularized Attention (Zhang et al., arXiv 2106.06672), see README.md."""

from jaxpapers.methods.stra.evaluate import evaluate  # noqa: F401
from jaxpapers.methods.stra.steps import (  # noqa: F401
    init_state,
    input_spec,
    make_source,
    train_step,
)

kind = "train"
