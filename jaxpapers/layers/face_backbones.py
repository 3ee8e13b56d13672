"""Face-recognition backbones: LResNet50E-IR (112x96) and IResNet-50/100 (112x112), with PReLU.

Shared by FROM (`methods/from_occlusion`) and SynFace. Layout is NHWC (Flax); PyTorch checkpoints
are NCHW, so a converter must transpose conv kernels (O,I,kh,kw -> kh,kw,I,O) and permute the rows
of the first embedding Linear from (C,H,W) to (H,W,C) flattening order.

Architecture (official code: haibo-qiu/FROM lib/models/fpn.py BlockIR,
deepinsight/insightface arcface_torch/backbones/iresnet.py IBasicBlock):
  stem: conv3x3 s1 (no bias) -> BN -> PReLU
  4 stages of BlockIR units; the first unit of every stage has stride 2 (on its *second* conv)
  and a conv1x1(stride)+BN shortcut.  Unit: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN,
  plus shortcut, with no activation after the addition.
  head: LResNet  = flatten -> BN1d(C*H*W) -> Dropout(0.5) -> Linear -> BN1d(512)
        IResNet  = BN2d(C) -> flatten -> Dropout(0) -> Linear -> BN1d(512, scale fixed at 1)
        SynFace  = BN2d(C) -> Dropout(0.5) -> flatten -> Linear -> BN1d(512)

Convolutions use explicit (1, 1) padding so output sizes and pixel alignment equal PyTorch's
(`padding=1`), which matters for odd sizes (7x6 -> 4x3) and for checkpoint conversion.

Public API:
  PReLU, BlockIR, FaceBackbone (returns [C2, C3, C4, C5]), EmbeddingHead,
  FaceRecognitionNet (backbone + head -> embedding), and the factories lresnet50e_ir(),
  iresnet(depth), iresnet50(), iresnet100().  All widths/depths are fields, so tests build tiny
  variants, e.g. ``lresnet50e_ir(widths=(8, 8, 16, 16, 32), depths=(1, 1, 1, 1), embed_dim=16)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers.norm import TorchBatchNorm

Array = jax.Array

# BN momentum 0.9 in Flax == PyTorch momentum 0.1 (the default in both official codes); eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5

IRESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


def kernel_initializer(name: str) -> Any:
    """Returns a kernel initializer by name.

    Args:
      name: 'xavier_uniform' (FROM/SynFace: nn.init.xavier_uniform_) or 'normal_0.1'
        (insightface iresnet: N(0, 0.1)).

    Returns:
      A Flax initializer.
    """
    if name == "xavier_uniform":
        return nn.initializers.xavier_uniform()
    if name == "normal_0.1":
        return nn.initializers.normal(stddev=0.1)
    raise ValueError(f"Unknown kernel_init {name!r}; expected 'xavier_uniform' or 'normal_0.1'.")


def batch_norm(
    train: bool, name: str | None = None, use_scale: bool = True, dtype=None
) -> nn.Module:
    """BatchNorm with PyTorch's default statistics (momentum 0.1, eps 1e-5, unbiased running
    variance: `TorchBatchNorm`)."""
    return TorchBatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPS,
        use_scale=use_scale,
        dtype=dtype,
        name=name,
    )


class PReLU(nn.Module):
    """Parametric ReLU with one learnable slope per channel (last axis); PyTorch init 0.25."""

    init_slope: float = 0.25

    @nn.compact
    def __call__(self, x: Array) -> Array:
        slope = self.param(
            "slope", nn.initializers.constant(self.init_slope), (x.shape[-1],), jnp.float32
        )
        # The negative branch in float32 (no-op casts in float32): the slope's gradient sums over
        # batch and positions, which a bfloat16 sum would round away (layers.precision).
        neg = (slope.astype(jnp.float32) * x.astype(jnp.float32)).astype(x.dtype)
        return jnp.where(x >= 0, x, neg)


def _conv(features: int, k: int, stride: int, init: Any, dtype, name: str) -> nn.Conv:
    pad = (k - 1) // 2  # PyTorch padding=1 for 3x3, 0 for 1x1
    return nn.Conv(
        features,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=init,
        dtype=dtype,
        name=name,
    )


class BlockIR(nn.Module):
    """Improved residual unit (LResNet-E-IR / IResNet IBasicBlock)."""

    features: int
    stride: int = 1
    kernel_init: str = "xavier_uniform"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        init = kernel_initializer(self.kernel_init)
        y = batch_norm(train, "bn1", dtype=self.dtype)(x)
        y = _conv(self.features, 3, 1, init, self.dtype, "conv1")(y)
        y = batch_norm(train, "bn2", dtype=self.dtype)(y)
        y = PReLU(name="prelu")(y)
        y = _conv(self.features, 3, self.stride, init, self.dtype, "conv2")(y)
        y = batch_norm(train, "bn3", dtype=self.dtype)(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _conv(self.features, 1, self.stride, init, self.dtype, "down_conv")(x)
            x = batch_norm(train, "down_bn", dtype=self.dtype)(x)
        return x + y  # no activation after the addition (IR design)


class FaceBackbone(nn.Module):
    """Stem + 4 stages of BlockIR.  Returns the stage outputs [C2, C3, C4, C5].

    Attributes:
      widths: (stem, stage1, stage2, stage3, stage4) channels; paper (64, 64, 128, 256, 512).
      depths: units per stage; LResNet50E-IR / IResNet-50 (3, 4, 14, 3), IResNet-100 (3, 13, 30, 3).
      kernel_init: see `kernel_initializer`.
      dtype: compute dtype (params stay float32).
    """

    widths: Sequence[int] = (64, 64, 128, 256, 512)
    depths: Sequence[int] = (3, 4, 14, 3)
    kernel_init: str = "xavier_uniform"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> list[Array]:
        if x.ndim != 4:
            raise ValueError(f"FaceBackbone expects NHWC images, got shape {x.shape}.")
        if len(self.widths) != 5 or len(self.depths) != 4:
            raise ValueError(
                f"widths must have 5 entries (stem + 4 stages) and depths 4; got {self.widths}, "
                f"{self.depths}."
            )
        init = kernel_initializer(self.kernel_init)
        x = x.astype(self.dtype or x.dtype)
        x = _conv(self.widths[0], 3, 1, init, self.dtype, "stem_conv")(x)
        x = batch_norm(train, "stem_bn", dtype=self.dtype)(x)
        x = PReLU(name="stem_prelu")(x)
        outs = []
        for s, (width, depth) in enumerate(zip(self.widths[1:], self.depths, strict=True)):
            for u in range(depth):
                x = BlockIR(
                    width,
                    stride=2 if u == 0 else 1,
                    kernel_init=self.kernel_init,
                    dtype=self.dtype,
                    name=f"stage{s + 1}_unit{u}",
                )(x, train)
            outs.append(x)
        return outs


class EmbeddingHead(nn.Module):
    """Feature map (N,H,W,C) -> embedding (N, embed_dim).

    Attributes:
      embed_dim: output size (512 in all papers).
      dropout: dropout rate (FROM/SynFace 0.5, insightface 0).
      flat_bn: True = BN1d over the flattened C*H*W vector (FROM); False = BN2d per channel before
        flattening (IResNet, SynFace).
      fix_final_scale: True = final BN1d has no learnable scale (insightface `features.weight`
        fixed at 1.0); False = learnable (FROM/SynFace).
    """

    embed_dim: int = 512
    dropout: float = 0.5
    flat_bn: bool = True
    fix_final_scale: bool = False
    kernel_init: str = "xavier_uniform"
    dtype: Any = None

    @nn.compact
    def __call__(self, fmap: Array, train: bool) -> Array:
        n = fmap.shape[0]
        if self.flat_bn:
            x = fmap.reshape(n, -1)
            x = batch_norm(train, "bn_in", dtype=self.dtype)(x)
        else:
            x = batch_norm(train, "bn_in", dtype=self.dtype)(fmap).reshape(n, -1)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(
            self.embed_dim,
            kernel_init=kernel_initializer(self.kernel_init),
            dtype=self.dtype,
            name="fc",
        )(x)
        x = batch_norm(train, "bn_out", use_scale=not self.fix_final_scale, dtype=self.dtype)(x)
        return x.astype(jnp.float32)


class FaceRecognitionNet(nn.Module):
    """Backbone + embedding head.

    `__call__(x, train)` returns the embedding (N, embed_dim); with `return_features=True` it
    returns `(embedding, [C2, C3, C4, C5])` (FROM builds its mask branch on C3..C5).
    """

    widths: Sequence[int] = (64, 64, 128, 256, 512)
    depths: Sequence[int] = (3, 4, 14, 3)
    embed_dim: int = 512
    dropout: float = 0.5
    flat_bn: bool = True
    fix_final_scale: bool = False
    kernel_init: str = "xavier_uniform"
    dtype: Any = None

    def setup(self) -> None:
        self.backbone = FaceBackbone(self.widths, self.depths, self.kernel_init, self.dtype)
        self.head = EmbeddingHead(
            self.embed_dim,
            self.dropout,
            self.flat_bn,
            self.fix_final_scale,
            self.kernel_init,
            self.dtype,
        )

    def __call__(self, x: Array, train: bool = False, return_features: bool = False):
        feats = self.backbone(x, train)
        emb = self.head(feats[-1], train)
        return (emb, feats) if return_features else emb


def lresnet50e_ir(**overrides: Any) -> FaceRecognitionNet:
    """LResNet50E-IR as in FROM/SynFace (input 112x96 -> C5 7x6x512 -> 512-d)."""
    kw: dict[str, Any] = dict(
        widths=(64, 64, 128, 256, 512),
        depths=(3, 4, 14, 3),
        dropout=0.5,
        flat_bn=True,
        fix_final_scale=False,
        kernel_init="xavier_uniform",
    )
    kw.update(overrides)
    return FaceRecognitionNet(**kw)


def iresnet(depth: int, **overrides: Any) -> FaceRecognitionNet:
    """IResNet-{18,34,50,100} as in insightface arcface_torch (input 112x112 -> C5 7x7x512)."""
    if depth not in IRESNET_DEPTHS:
        raise ValueError(f"IResNet depth must be one of {sorted(IRESNET_DEPTHS)}, got {depth}.")
    kw: dict[str, Any] = dict(
        widths=(64, 64, 128, 256, 512),
        depths=IRESNET_DEPTHS[depth],
        dropout=0.0,
        flat_bn=False,
        fix_final_scale=True,
        kernel_init="normal_0.1",
    )
    kw.update(overrides)
    return FaceRecognitionNet(**kw)


def iresnet50(**overrides: Any) -> FaceRecognitionNet:
    """IResNet-50 (insightface r50)."""
    return iresnet(50, **overrides)


def iresnet100(**overrides: Any) -> FaceRecognitionNet:
    """IResNet-100 (insightface r100)."""
    return iresnet(100, **overrides)


def feature_hw(image_hw: tuple[int, int], num_stages: int = 4) -> tuple[int, int]:
    """Spatial size after `num_stages` stride-2 stages (PyTorch padding=1 arithmetic: ceil(x/2))."""
    h, w = image_hw
    for _ in range(num_stages):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w
