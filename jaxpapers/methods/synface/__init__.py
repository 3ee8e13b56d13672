"""SynFace: Face Recognition with Synthetic Data (Qiu et al., ICCV 2021). Method contract.

One job: train the identity-conditioned generator (the suite's DiscoFaceGAN stand-in) on real
identities, then train LResNet-E-IR + ArcFace on its new synthetic identities with identity
mixup and (optionally) domain mixup; evaluate on held-out real identities.  See README.md.
"""

from jaxpapers.methods.synface.evaluate import embed_fn, evaluate
from jaxpapers.methods.synface.inputs import input_spec, make_source
from jaxpapers.methods.synface.steps import init_state, load_init, phase, train_step

kind = "train"
