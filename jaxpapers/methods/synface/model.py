"""Identity-conditioned StyleGAN2 (the suite's stand-in for DiscoFaceGAN) and its discriminator.

Generator: an identity code c (a learned row of an embedding table for each training identity,
or a *new* code drawn from the learned code distribution, see `new_identity_codes`) enters a
conditional mapping network together with z, as conditional StyleGAN2 (stylegan2-ada-pytorch
``MappingNetwork`` with c_dim > 0) does: w = MLP([norm2(z), norm2(c)]), the suite's
`jaxpapers.layers.stylegan2.MappingNetwork` given a code.  Synthesis is the suite's StyleGAN2 skip
synthesis network (`jaxpapers.layers.stylegan2.SynthesisNetwork`), unchanged.

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

from jaxpapers.layers import stylegan2 as sg2


class IdentityGenerator(sg2.Generator, kw_only=True):
    """Identity-conditioned StyleGAN2 G: the suite's `sg2.Generator` (conditional mapping, skip
    synthesis, same parameter names) plus the learned table of training-identity codes.

    Methods: ``codes()`` the training-identity code table [num_ids, code_dim]; ``mapping(z, code)``
    -> ws [N, num_ws, w_dim]; ``synthesis(ws)`` -> images in [-1, 1]; ``__call__(z, labels)``.
    """

    # The sizes come from config.gen (`build_generator`); the inherited defaults are StyleGAN2's.
    num_ids: int
    code_dim: int

    def setup(self):
        self.id_codes = self.param(
            "id_codes", nn.initializers.normal(1.0), (self.num_ids, self.code_dim)
        )
        super().setup()

    def codes(self) -> jax.Array:
        return self.id_codes

    def mapping(self, z: jax.Array, code: jax.Array) -> jax.Array:
        return super().mapping(z, code=code)

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
