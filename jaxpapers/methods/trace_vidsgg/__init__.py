"""``trace_vidsgg``: TRACE — target-adaptive context aggregation for video scene graphs (ICCV 2021).

HRTree (hrtree.py), relation model (model.py), training (steps.py), evaluation (evaluate.py),
metrics (metrics.py), VidVRD association (association.py), synthetic benchmark (synthetic.py),
data readers (formats.py), batch spec and source (inputs.py). See README.md.
"""

from jaxpapers.methods.trace_vidsgg.evaluate import evaluate, infer_fn
from jaxpapers.methods.trace_vidsgg.inputs import input_spec, make_source
from jaxpapers.methods.trace_vidsgg.steps import init_state, prepare, train_step

kind = "train"
