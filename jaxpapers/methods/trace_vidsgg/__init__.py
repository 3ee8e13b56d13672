"""``trace_vidsgg``: TRACE — target-adaptive context aggregation for video scene graphs (ICCV 2021).

HRTree (hrtree.py), relation model (model.py), training/evaluation (steps.py), metrics
(metrics.py), VidVRD association (association.py), synthetic benchmark (synthetic.py), data
readers (formats.py). See README.md.
"""

from jaxpapers.methods.trace_vidsgg.steps import (  # noqa: F401
    evaluate,
    init_state,
    input_spec,
    make_source,
    train_step,
)

kind = "train"
