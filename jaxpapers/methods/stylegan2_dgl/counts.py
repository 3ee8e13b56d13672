"""Parameter and multiply-accumulate counts of teacher and student StyleGAN2 networks.

Params are counted from the real Flax param trees (``jax.eval_shape``, no compute). MACs are
analytic per image: synthesis convs + ToRGB (an upsampling conv counted at its input resolution,
as a transposed conv performs k*k*Cin*Cout MACs per input pixel), style affines and mapping FCs;
D convs at their output resolution. FIR blurs and bias/activation ops are not counted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.methods.stylegan2_dgl import model as M


def num_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def generator_macs(g: M.Generator) -> dict[str, int]:
    """{'mapping', 'synthesis'} MACs of one image (synthesis includes the style affines)."""
    mapping = g.mapping_layers * g.z_dim * g.w_dim
    syn = M.SynthesisNetwork(
        g.resolution, g.img_channels, g.fmap_base, g.fmap_max, g.channel_divisor
    )
    cin = M.nf(1, g.fmap_base, g.fmap_max)  # The constant keeps full width.
    macs = 0

    def layer(k: int, ci: int, co: int, hw: int) -> int:
        return k * k * ci * co * hw + g.w_dim * ci  # conv + style affine

    c = syn.width(1)
    macs += layer(3, cin, c, 16) + layer(1, c, g.img_channels, 16)
    for res in range(3, M.log2_res(g.resolution) + 1):
        r = 2**res
        co = syn.width(res - 1)
        macs += layer(3, c, co, (r // 2) ** 2) + layer(3, co, co, r * r)
        macs += layer(1, co, g.img_channels, r * r)
        c = co
    return {"mapping": mapping, "synthesis": macs}


def discriminator_macs(d: M.Discriminator, img_channels: int) -> int:
    lr = M.log2_res(d.resolution)
    c = d.width(lr - 1)
    macs = img_channels * c * d.resolution**2
    for res in range(lr, 2, -1):
        r = 2**res
        c0, c1 = d.width(res - 1), d.width(res - 2)
        macs += 9 * c * c0 * r * r + 9 * c0 * c1 * (r // 2) ** 2 + c * c1 * (r // 2) ** 2
        c = c1
    extra = 1 if d.mbstd_group_size > 1 else 0
    macs += 9 * (c + extra) * d.width(1) * 16 + d.width(1) * 16 * d.width(0) + d.width(0)
    return macs


def report(config) -> dict[str, float]:
    """Params and MACs of teacher and student G/D for this config (flat dict of numbers)."""
    from jaxpapers.methods.stylegan2_dgl import steps

    out: dict[str, float] = {}
    m = config.model
    for role in ("teacher", "student"):
        g, d = steps.make_nets(config, role)
        gp = jax.eval_shape(
            lambda g=g: g.init(
                {"params": jax.random.key(0), "noise": jax.random.key(1)}, jnp.zeros((1, m.z_dim))
            )["params"]
        )
        img = jnp.zeros((max(1, m.mbstd_group_size), m.resolution, m.resolution, m.img_channels))
        dp = jax.eval_shape(lambda d=d, img=img: d.init(jax.random.key(0), img)["params"])
        gm = generator_macs(g)
        out[f"{role}_g_params"] = num_params(gp)
        out[f"{role}_g_synthesis_params"] = num_params(gp["synthesis"])
        out[f"{role}_g_mapping_params"] = num_params(gp["mapping"])
        out[f"{role}_d_params"] = num_params(dp)
        out[f"{role}_g_macs"] = gm["mapping"] + gm["synthesis"]
        out[f"{role}_g_synthesis_macs"] = gm["synthesis"]
        out[f"{role}_d_macs"] = discriminator_macs(d, m.img_channels)
    out["g_param_ratio"] = out["student_g_params"] / out["teacher_g_params"]
    out["g_mac_ratio"] = out["student_g_macs"] / out["teacher_g_macs"]
    return out
