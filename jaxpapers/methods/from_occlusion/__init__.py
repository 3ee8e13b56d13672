"""FROM: End2End Occluded Face Recognition by Masking Corrupted Features (Qiu et al., TPAMI 2021).

See README.md in this folder.
"""

from jaxpapers.methods.from_occlusion.evaluate import embed_fn, evaluate
from jaxpapers.methods.from_occlusion.inputs import input_spec, make_source
from jaxpapers.methods.from_occlusion.steps import init_state, load_init, train_step

kind = "train"
