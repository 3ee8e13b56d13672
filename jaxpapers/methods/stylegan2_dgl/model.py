"""The teacher and student StyleGAN2 networks of the DGL-GAN job, built from the config.

The networks themselves (``Generator``, ``Discriminator``, shared with ``synface``) live in
``jaxpapers.layers.stylegan2``; DGL-GAN's student divides every synthesis (and optionally D) conv
width by ``student.g_divisor`` / ``student.d_divisor`` (``G_synthesis_stylegan2_compress``).
``student.w_dim`` / ``student.mapping_layers`` (0 = the teacher's) also shrink the student's
mapping network and style width (our addition for small teachers, whose mapping is a large share
of G; see the README). z keeps the teacher's size: both generators are shown the same latents.
"""

from __future__ import annotations

from jaxpapers.layers.stylegan2 import Discriminator, Generator
from jaxpapers.lib import dgl


def w_dim(config, role: str) -> int:
    """The style width of ``role``'s generator (the length of its tracked ``w_avg``)."""
    dgl.check_role(role)
    s = int(config.student.get("w_dim", 0)) if role == "student" else 0
    return s or int(config.model.w_dim)


def mapping_layers(config, role: str) -> int:
    dgl.check_role(role)
    s = int(config.student.get("mapping_layers", 0)) if role == "student" else 0
    return s or int(config.model.mapping_layers)


def make_nets(config, role: str) -> tuple[Generator, Discriminator]:
    """Teacher or student networks from the config (student widths divided by its divisors)."""
    dgl.check_role(role)
    m = config.model
    gdiv = 1 if role == "teacher" else config.student.g_divisor
    ddiv = 1 if role == "teacher" else config.student.d_divisor
    f = tuple(m.resample_filter)
    g = Generator(
        m.resolution,
        m.img_channels,
        m.z_dim,
        w_dim(config, role),
        mapping_layers(config, role),
        m.fmap_base,
        m.fmap_max,
        gdiv,
        f,
    )
    d = Discriminator(
        m.resolution, m.fmap_base, m.fmap_max, ddiv, m.mbstd_group_size, m.mbstd_num_features, f
    )
    return g, d
