"""Identity-conditioned StyleGAN2 (the suite's stand-in for DiscoFaceGAN) and its discriminator.

Generator: an identity code c (a learned row of an embedding table for each training identity,
or a *new* code drawn from the learned code distribution, see `new_identity_codes`) enters a
conditional mapping network together with z, as conditional StyleGAN2 (stylegan2-ada-pytorch
``MappingNetwork`` with c_dim > 0) does: w = MLP([norm2(z), norm2(c)]).  Synthesis is the suite's
StyleGAN2 skip synthesis network (`jaxpapers.layers.stylegan2.SynthesisNetwork`), unchanged.

In DiscoFaceGAN the latent is split into identity / expression / lighting / pose factors that
are decoded into 3DMM-like coefficients; here the identity code is the only disentangled factor
and z (+ per-layer noise) carries "everything else".  Identity mixup interpolates identity codes
(as SynFace interpolates identity coefficients after the z -> coefficient decoder).

Discriminator: the residual StyleGAN2 D of the suite's layers with a projection head
(stylegan2-ada-pytorch ``DiscriminatorEpilogue`` with cmap_dim): logit = <phi(x), e_y>/sqrt(d).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers import stylegan2 as sg2
from jaxpapers.layers import stylegan2_ops as ops


def norm2(x: jax.Array) -> jax.Array:
    """StyleGAN's 2nd-moment normalisation over the feature axis (zero vectors stay zero)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-8)


class ConditionalMapping(nn.Module):
    """(z, identity code) -> w: FC layers on [norm2(z), norm2(c)] (conditional StyleGAN2)."""

    w_dim: int = 128
    num_layers: int = 4

    @nn.compact
    def __call__(self, z: jax.Array, code: jax.Array) -> jax.Array:
        if z.ndim != 2 or code.ndim != 2 or z.shape[0] != code.shape[0]:
            raise ValueError(
                f"z [N, z_dim] and code [N, code_dim] expected, got {z.shape}, {code.shape}."
            )
        x = jnp.concatenate([norm2(z), norm2(code)], axis=1)
        for i in range(self.num_layers):
            x = ops.EqualDense(self.w_dim, act="lrelu", name=f"fc{i}")(x)
        return x


class IdentityGenerator(nn.Module):
    """Identity-conditioned StyleGAN2 G.

    Methods: ``codes()`` the training-identity code table [num_ids, code_dim]; ``mapping(z, code)``
    -> ws [N, num_ws, w_dim]; ``synthesis(ws)`` -> images in [-1, 1]; ``__call__(z, labels)``.
    """

    num_ids: int
    resolution: int = 32
    img_channels: int = 1
    z_dim: int = 64
    code_dim: int = 32
    w_dim: int = 128
    mapping_layers: int = 4
    fmap_base: int = 256
    fmap_max: int = 32

    def setup(self):
        self.id_codes = self.param(
            "id_codes", nn.initializers.normal(1.0), (self.num_ids, self.code_dim)
        )
        self.mapping_net = ConditionalMapping(self.w_dim, self.mapping_layers, name="mapping")
        self.synthesis_net = sg2.SynthesisNetwork(
            self.resolution, self.img_channels, self.fmap_base, self.fmap_max, name="synthesis"
        )

    def codes(self) -> jax.Array:
        return self.id_codes

    def mapping(self, z: jax.Array, code: jax.Array) -> jax.Array:
        w = self.mapping_net(z, code)
        return jnp.repeat(w[:, None], sg2.num_ws(self.resolution), axis=1)

    def synthesis(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
        return self.synthesis_net(ws, noise_mode)

    def __call__(self, z: jax.Array, labels: jax.Array, noise_mode: str = "random"):
        return self.synthesis(self.mapping(z, self.id_codes[labels]), noise_mode)


def build_generator(config) -> IdentityGenerator:
    g = config.gen
    return IdentityGenerator(
        num_ids=int(config.data.n_train_ids),
        resolution=g.resolution,
        img_channels=g.img_channels,
        z_dim=g.z_dim,
        code_dim=g.code_dim,
        w_dim=g.w_dim,
        mapping_layers=g.mapping_layers,
        fmap_base=g.fmap_base,
        fmap_max=g.fmap_max,
    )


def build_discriminator(config) -> sg2.Discriminator:
    """The suite's residual StyleGAN2 D in its conditional (projection) form."""
    g = config.gen
    return sg2.Discriminator(
        resolution=g.resolution,
        fmap_base=g.fmap_base,
        fmap_max=g.fmap_max,
        mbstd_group_size=g.mbstd_group_size,
        num_classes=int(config.data.n_train_ids),
        cmap_dim=g.code_dim,
    )
