"""``stra``: Structure-Regularized Attention (Zhang et al., arXiv 2106.06672), see README.md."""

from jaxpapers.methods.stra.evaluate import embed_fn, evaluate, logits_fn
from jaxpapers.methods.stra.inputs import input_spec, make_source
from jaxpapers.methods.stra.steps import init_state, train_step

kind = "train"
