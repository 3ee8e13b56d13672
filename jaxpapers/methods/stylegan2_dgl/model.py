"""The teacher and student StyleGAN2 networks of the DGL-GAN job, built from the config.

The networks themselves (``Generator``, ``Discriminator``, shared with ``synface``) live in
``jaxpapers.layers.stylegan2``; DGL-GAN's student divides every synthesis (and optionally D) conv
width by ``student.g_divisor`` / ``student.d_divisor`` (``G_synthesis_stylegan2_compress``).
"""

from __future__ import annotations

from jaxpapers.layers.stylegan2 import Discriminator, Generator
from jaxpapers.lib import dgl


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
        m.w_dim,
        m.mapping_layers,
        m.fmap_base,
        m.fmap_max,
        gdiv,
        f,
    )
    d = Discriminator(
        m.resolution, m.fmap_base, m.fmap_max, ddiv, m.mbstd_group_size, m.mbstd_num_features, f
    )
    return g, d
