"""FaceAnime: Image-to-Video Generation via 3D Facial Dynamics (Tu et al., TCSVT 2022).

Method contract: batch spec and source (inputs.py), state, prepare, init and step (steps.py),
evaluation (evaluate.py). See README.md in this folder.
"""

from jaxpapers.methods.faceanime.evaluate import evaluate, infer_fn
from jaxpapers.methods.faceanime.inputs import input_spec, make_source
from jaxpapers.methods.faceanime.steps import init_state, prepare, train_step

kind = "train"
