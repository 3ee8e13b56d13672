"""The teacher and student StyleGAN2 networks of the DGL-GAN job, built from the config.

The networks themselves (``Generator``, ``Discriminator``, shared with ``synface``) live in
``jaxpapers.layers.stylegan2``; DGL-GAN's student divides every synthesis (and optionally D) conv
width by ``student.g_divisor`` / ``student.d_divisor`` (``G_synthesis_stylegan2_compress``).
``student.w_dim`` / ``student.mapping_layers`` (0 = the teacher's) also shrink the student's
mapping network and style width (our addition for small teachers, whose mapping is a large share
of G; see the README). z keeps the teacher's size: both generators are shown the same latents.

Mixed precision (``model.dtype``, ``layers.precision``) follows stylegan2-ada-pytorch's layout
(``num_fp16_res``): only the blocks of the ``model.bf16_res`` highest resolutions (4 by default,
the official value; never below 8x8) compute in bfloat16; the mapping network, the style affines,
the 4x4 synthesis block, D's 4x4 epilogue and the lower-resolution blocks keep float32 parameters
(`f32_params`), so they compute in float32 (every StyleGAN2 layer computes in its weight's dtype).
"""

from __future__ import annotations

from jaxpapers.layers.stylegan2 import Discriminator, Generator, log2_res
from jaxpapers.lib import dgl

# The official ``num_fp16_res`` of every stylegan2-ada-pytorch configuration. A key read with a
# default: runs written before it existed still load.
BF16_RES = 4


def w_dim(config, role: str) -> int:
    """The style width of ``role``'s generator (the length of its tracked ``w_avg``)."""
    dgl.check_role(role)
    s = int(config.student.get("w_dim", 0)) if role == "student" else 0
    return s or int(config.model.w_dim)


def mapping_layers(config, role: str) -> int:
    dgl.check_role(role)
    s = int(config.student.get("mapping_layers", 0)) if role == "student" else 0
    return s or int(config.model.mapping_layers)


def conv_clamp(config) -> float | None:
    """``model.conv_clamp`` (0 = off, the default) as the layers' clip value."""
    c = float(config.model.get("conv_clamp", 0.0))
    if c < 0:
        raise ValueError(f"model.conv_clamp must be >= 0 (0 = off), got {c}.")
    return c or None


def bf16_resolution(config) -> int:
    """The lowest resolution whose blocks compute in bfloat16 (official ``fp16_resolution``:
    the ``model.bf16_res`` highest resolutions, never the 4x4 block)."""
    n = int(config.model.get("bf16_res", BF16_RES))
    if n < 0:
        raise ValueError(f"model.bf16_res must be >= 0 (0 = no block in bfloat16), got {n}.")
    return max(2 ** (log2_res(config.model.resolution) + 1 - n), 8)


def f32_params(config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(G, D) parameter patterns that stay float32 under ``model.dtype=bfloat16`` (the ``keep``
    of ``precision.apply``); the same for teacher and student (same names, other widths).

    G: the mapping network, the style affines (``mod_weight``/``mod_bias``: styles and the
    demodulation coefficients from float32 ws, as officially), the constant and the blocks below
    `bf16_resolution`. D: the blocks below it, the 4x4 epilogue (logits in float32) and the class
    table of a conditional D."""
    low = "|".join(str(2**k) for k in range(2, log2_res(bf16_resolution(config))))
    g = (r"^mapping/", r"^synthesis/const$", rf"^synthesis/b({low})_", r"/mod_(weight|bias)$")
    d = (rf"^b({low})_", r"^cmap$")
    return g, d


def make_nets(config, role: str) -> tuple[Generator, Discriminator]:
    """Teacher or student networks from the config (student widths divided by its divisors)."""
    dgl.check_role(role)
    m = config.model
    gdiv = 1 if role == "teacher" else config.student.g_divisor
    ddiv = 1 if role == "teacher" else config.student.d_divisor
    f = tuple(m.resample_filter)
    clamp = conv_clamp(config)
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
        conv_clamp=clamp,
    )
    d = Discriminator(
        m.resolution,
        m.fmap_base,
        m.fmap_max,
        ddiv,
        m.mbstd_group_size,
        m.mbstd_num_features,
        f,
        conv_clamp=clamp,
    )
    return g, d
