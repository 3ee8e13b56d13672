"""DGL-GAN (Tian et al., arXiv 2112.06502) on a faithful Flax StyleGAN2: method contract.

One job trains the teacher StyleGAN2 (unless ``init_from`` provides it), then the narrow
student in two stages: stage 1 plain GAN training, stage 2 with the frozen teacher
discriminator's term ``alpha * softplus(-D_T(G_S(z)))`` in the student's G loss.
See README.md and ``steps.py``.
"""

from jaxpapers.methods.stylegan2_dgl.evaluate import evaluate, gan_sampler
from jaxpapers.methods.stylegan2_dgl.inputs import input_spec, make_source
from jaxpapers.methods.stylegan2_dgl.steps import (
    init_state,
    load_init,
    phase,
    prepare,
    train_step,
)

kind = "train"
