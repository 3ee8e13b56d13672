"""DGL-GAN (Tian et al., arXiv 2112.06502) on a faithful Flax BigGAN: method contract.

One job trains the class-conditional teacher BigGAN (unless ``init_from`` provides it), then the
narrow student in two stages: stage 1 plain BigGAN training, stage 2 with the frozen teacher
discriminator's hinge term ``-lam * D_T(G_S(z, y), y)`` in the student's G loss.
See README.md and ``steps.py``.
"""

from jaxpapers.methods.biggan_dgl.evaluate import evaluate, gan_sampler
from jaxpapers.methods.biggan_dgl.inputs import input_spec, make_source
from jaxpapers.methods.biggan_dgl.steps import init_state, load_init, phase, train_step

kind = "train"
