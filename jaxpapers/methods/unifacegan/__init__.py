"""UniFaceGAN (Cao et al., IEEE TIP 2021, arXiv 2108.05650): method contract.

One generator for face swapping and reenactment, conditioned on the rendered 3D geometry of the
recombined face (source identity + target/driving expression and pose, from the suite's
FaceMesh-based 3D face core), with region-aware conditional normalization, a multi-scale patch
discriminator, dynamic training-sample selection and the barycentric 3D temporal loss.
See README.md, ``steps.py`` and ``losses.py``.
"""

from jaxpapers.methods.unifacegan.evaluate import evaluate, infer_fn
from jaxpapers.methods.unifacegan.inputs import input_spec, make_source
from jaxpapers.methods.unifacegan.steps import init_state, prepare, train_step

kind = "train"
