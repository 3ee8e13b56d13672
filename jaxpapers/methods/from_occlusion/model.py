"""FROM network: LResNet50E-IR + FPN mask decoder + occlusion-pattern predictor.

haibo-qiu/FROM lib/models/fpn.py: LResNet_Occ (variant '3d', the paper's model), LResNet_Occ_2D
('2d': one spatial mask channel repeated over C5's channels) and LResNet_Occ_FC ('fc': a 512-d mask
multiplied onto the embedding).

  C2..C5 = backbone(x);  P3 = FPN(C3, C4, C5)
  M      = sigmoid(conv3x3 s2 -> PReLU -> BN -> conv3x3 s2)(P3)      (same shape as C5)
  emb_m  = head(C5 * M)            emb = head(C5)      (the same head weights, as in the code)
  logits = OPP(M) = BN1d(Linear(Dropout(BN1d(flatten(M)))))         (1 + C(K+1,2)^2 patterns)

Only P3 feeds the decoder; the official FPN also computes P4/P5 smoothing convs and P6/P7, whose
outputs are unused, so they are left out here (a converter drops those weights).

Mixed precision (``model.dtype``, ``layers.precision``): the train step casts the whole network's
parameters, so backbone, FPN, mask decoder and OPP convs/matmuls run in bfloat16; BatchNorm
statistics, the embeddings, the mask and the OPP logits come out float32, and the margin head
(cosine logits, CosFace/ArcFace margins, softmax) is applied to them in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers.face_backbones import (
    EmbeddingHead,
    FaceBackbone,
    PReLU,
    batch_norm,
    kernel_initializer,
)
from jaxpapers.lib import margin_heads as mh
from jaxpapers.lib import occlusion as oc

Array = jax.Array
VARIANTS = ("3d", "2d", "fc")


def upsample2_to(x: Array, hw: tuple[int, int]) -> Array:
    """Nearest x2 upsampling (torch nn.Upsample(scale_factor=2)), cropped to `hw` for odd sizes."""
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return x[:, : hw[0], : hw[1]]


def _conv(features: int, k: int, stride: int, bias: bool, name: str) -> nn.Conv:
    pad = (k - 1) // 2
    return nn.Conv(
        features,
        (k, k),
        (stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=bias,
        kernel_init=kernel_initializer("xavier_uniform"),
        name=name,
    )


class PyramidP3(nn.Module):
    """RetinaNet-style FPN (PyramidFeatures) reduced to the P3 output that FROM uses."""

    features: int = 256

    @nn.compact
    def __call__(self, c3: Array, c4: Array, c5: Array) -> Array:
        p5 = _conv(self.features, 1, 1, True, "P5_1")(c5)
        p4 = _conv(self.features, 1, 1, True, "P4_1")(c4) + upsample2_to(p5, c4.shape[1:3])
        p3 = _conv(self.features, 1, 1, True, "P3_1")(c3) + upsample2_to(p4, c3.shape[1:3])
        return _conv(self.features, 3, 1, True, "P3_2")(p3)


class MaskDecoder(nn.Module):
    """P3 -> mask.  '3d': (N,h5,w5,C5) in (0,1); '2d': one channel repeated; 'fc': (N, embed)."""

    out_channels: int
    variant: str = "3d"
    embed_dim: int = 512

    @nn.compact
    def __call__(self, p3: Array, train: bool) -> Array:
        f = p3.shape[-1]
        x = _conv(f, 3, 2, False, "conv1")(p3)
        x = PReLU(name="prelu1")(x)
        x = batch_norm(train, "bn1")(x)
        if self.variant == "3d":
            return nn.sigmoid(_conv(self.out_channels, 3, 2, False, "conv2")(x))
        if self.variant == "2d":
            x = _conv(self.out_channels, 3, 2, False, "conv2")(x)
            x = batch_norm(train, "bn2")(PReLU(name="prelu2")(x))
            m = nn.sigmoid(_conv(1, 3, 1, False, "conv3")(x))
            return jnp.repeat(m, self.out_channels, axis=-1)
        if self.variant == "fc":  # "reduces" to 64 channels, then BN1d -> Linear -> BN1d -> sigmoid
            x = _conv(64, 3, 2, False, "conv2")(x)
            x = batch_norm(train, "bn2")(PReLU(name="prelu2")(x))
            x = batch_norm(train, "bn3")(x.reshape(x.shape[0], -1))
            x = nn.Dense(
                self.embed_dim, kernel_init=kernel_initializer("xavier_uniform"), name="fc"
            )(x)
            return nn.sigmoid(batch_norm(train, "bn4")(x))
        raise ValueError(f"Unknown FROM variant {self.variant!r}; expected one of {VARIANTS}.")


class PatternPredictor(nn.Module):
    """OPP ('regress'): BN1d -> Dropout(0.5) -> Linear(no bias) -> BN1d over the flattened mask."""

    num_patterns: int
    dropout: float = 0.5

    @nn.compact
    def __call__(self, mask: Array, train: bool) -> Array:
        x = batch_norm(train, "bn_in")(mask.reshape(mask.shape[0], -1))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(
            self.num_patterns,
            use_bias=False,
            kernel_init=kernel_initializer("xavier_uniform"),
            name="fc",
        )(x)
        return batch_norm(train, "bn_out")(x)


class FROMNet(nn.Module):
    """Returns dict(emb_masked, mask, pattern_logits, emb) like the official forward."""

    widths: Sequence[int] = (64, 64, 128, 256, 512)
    depths: Sequence[int] = (3, 4, 14, 3)
    embed_dim: int = 512
    dropout: float = 0.5
    fpn_features: int = 256
    num_patterns: int = 226
    variant: str = "3d"
    dtype: Any = None

    def setup(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown FROM variant {self.variant!r}; expected one of {VARIANTS}.")
        self.backbone = FaceBackbone(self.widths, self.depths, "xavier_uniform", self.dtype)
        self.head = EmbeddingHead(self.embed_dim, self.dropout, flat_bn=True, dtype=self.dtype)
        self.fpn = PyramidP3(self.fpn_features)
        self.mask_decoder = MaskDecoder(self.widths[-1], self.variant, self.embed_dim)
        self.opp = PatternPredictor(self.num_patterns, self.dropout)

    def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
        c2, c3, c4, c5 = self.backbone(x, train)
        del c2
        mask = self.mask_decoder(self.fpn(c3, c4, c5), train)
        if self.variant != "fc" and mask.shape != c5.shape:
            raise ValueError(
                f"Mask shape {mask.shape} != C5 shape {c5.shape}; the image size "
                "must give C3 = 4x C5 after the two stride-2 decoder convs."
            )
        if self.variant == "fc":
            emb = self.head(c5, train)
            emb_masked = emb * mask
        else:
            # Masked path first, then the clean path, as the official forward (the shared head's
            # BN running statistics are updated by both calls in this order).
            emb_masked = self.head(c5 * mask.astype(c5.dtype), train)
            emb = self.head(c5, train)
        logits = self.opp(mask, train)
        return dict(
            emb_masked=emb_masked,
            mask=mask.astype(jnp.float32),
            pattern_logits=logits.astype(jnp.float32),
            emb=emb,
        )


def build_net(config) -> FROMNet:
    m = config.model
    return FROMNet(
        widths=tuple(m.widths),
        depths=tuple(m.depths),
        embed_dim=m.embed_dim,
        dropout=m.dropout,
        fpn_features=m.fpn_features,
        num_patterns=oc.num_patterns(config.occlusion.grid),
        variant=m.variant,
    )


def build_head(config) -> mh.MarginHead:
    m = config.model
    margin = mh.make_margin(m.margin, m.scale, m.margin_m)
    return mh.MarginHead(m.num_classes, margin)
