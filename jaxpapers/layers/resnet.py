"""ResNets for classification baselines: PreActResNet-18, WideResNet-34-10/28-10, a small ResNet.

PreActResNet-18 follows the standard adversarial-training code base (He et al. 2016, identity
mappings; the version used by Rice et al. and the RAT/hedge-defense official code): 3x3 stem
without pooling, four stages of two pre-activation basic blocks, global average pool.

WideResNet-d-k is the robustness literature's (TRADES `models/wideresnet.py`, RobustBench
`robustbench/model_zoo/architectures/wide_resnet.py`): 3x3 stem to 16 channels, three groups of
n = (d − 4)/6 pre-activation basic blocks of widths 16k/32k/64k with strides 1/2/2, then BN-ReLU,
global average pool (= avgpool 8 on 32x32 inputs) and a linear layer; no dropout.

``ResNetBody`` is the ImageNet bottleneck ResNet (ResNet-50 = stage_sizes (3, 4, 6, 3)) as a
feature extractor: 7x7/2 stem + 3x3/2 max-pool, post-activation bottlenecks, optional dilated
conv5 (``res5_dilation=2``: stride 1 in stage 5, output stride 16 — Detectron's
``ResNet50_conv5_body_dilation2``, TRACE's 2D relation backbone, ``resnet50_dc5``), optional
GAP + fc head. ``norm='affine'`` is Detectron's AffineChannel (frozen BN folded into scale and
bias; same parameter count as BN), ``norm='batch'`` a BatchNorm with running statistics.

Mixed precision (``layers.precision``): every conv and activation follows the compute dtype;
BatchNorm statistics are float32 (`TorchBatchNorm`) and the logit layer (``F32_PARAMS``) stays
float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers import conv as conv_lib
from jaxpapers.layers.norm import TorchBatchNorm

# PyTorch's default BatchNorm: momentum 0.1 (flax: 0.9), eps 1e-5, unbiased running variance.
BatchNorm = lambda train, **kw: TorchBatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, **kw
)
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # Kaiming (fan_out, relu).
CONV_OPTIONS = ("auto", "lax", "mm_grad")


def conv_fn(option: str):
    """``nn.Conv``'s convolution for a ``conv`` option: 'lax' = XLA's convolution and gradients;
    'mm_grad' = kernel gradients as matmuls (``layers.conv``: same parameters, results equal to
    float32 rounding, faster on XLA:CPU, benchmarks/README.md); 'auto' = 'mm_grad' on CPU."""
    if option not in CONV_OPTIONS:
        raise ValueError(f"conv must be one of {CONV_OPTIONS}, got {option!r}.")
    if option == "auto":
        option = "mm_grad" if jax.default_backend() == "cpu" else "lax"
    return conv_lib.conv_general_dilated if option == "mm_grad" else None


# Parameters that stay float32 under bfloat16 compute: the final linear layer of the classifiers
# (its float32 kernel promotes the matmul, so logits are computed in float32).
F32_PARAMS = (r"^(Dense_0|fc)/",)


class PreActBlock(nn.Module):
    """Pre-activation basic block; when the shape changes the 1x1 shortcut takes ReLU(BN(x)).

    This is both Rice et al.'s PreActBlock and the TRADES WRN BasicBlock (its `equalInOut=False`
    branch replaces x by ReLU(BN(x)) for the residual path and the shortcut alike).
    """

    features: int
    stride: int = 1
    conv: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        conv = partial(
            nn.Conv, use_bias=False, kernel_init=conv_init, conv_general_dilated=conv_fn(self.conv)
        )
        out = nn.relu(BatchNorm(train)(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, (1, 1), self.stride)(out)
        out = conv(self.features, (3, 3), self.stride, padding=1)(out)
        out = nn.relu(BatchNorm(train)(out))
        out = conv(self.features, (3, 3), padding=1)(out)
        return out + shortcut


class PreActResNet(nn.Module):
    """PreActResNet with ``stage_sizes`` blocks per stage; (2, 2, 2, 2) is PreActResNet-18."""

    num_classes: int = 10
    width: int = 64
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    conv: str = "auto"  # see conv_fn

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(
            self.width,
            (3, 3),
            padding=1,
            use_bias=False,
            kernel_init=conv_init,
            conv_general_dilated=conv_fn(self.conv),
        )(x)
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                x = PreActBlock(self.width * 2**i, stride, self.conv)(x, train)
        x = nn.relu(BatchNorm(train)(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def PreActResNet18(  # noqa: N802
    num_classes: int = 10, width: int = 64, conv: str = "auto"
) -> PreActResNet:
    return PreActResNet(num_classes, width, (2, 2, 2, 2), conv)


class WideResNet(nn.Module):
    """WideResNet-``depth``-``widen_factor`` (pre-activation, TRADES/RobustBench layout)."""

    num_classes: int = 10
    depth: int = 34
    widen_factor: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        if (self.depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 28, 34), got {self.depth}.")
        n = (self.depth - 4) // 6
        x = nn.Conv(16, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(x)
        for i, stride in enumerate((1, 2, 2)):
            for j in range(n):
                x = PreActBlock(16 * self.widen_factor * 2**i, stride=stride if j == 0 else 1)(
                    x, train
                )
        x = nn.relu(BatchNorm(train)(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)  # bias zero-initialised as in the reference


class BasicBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        y = nn.Conv(
            self.features, (3, 3), self.stride, padding=1, use_bias=False, kernel_init=conv_init
        )(x)
        y = nn.relu(BatchNorm(train)(y))
        y = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(y)
        y = BatchNorm(train, scale_init=nn.initializers.zeros)(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), self.stride, use_bias=False, kernel_init=conv_init)(
                x
            )
            x = BatchNorm(train)(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """A small post-activation ResNet for small images: ``len(stage_sizes)`` basic-block stages."""

    num_classes: int = 10
    width: int = 32
    stage_sizes: Sequence[int] = (1, 1, 1)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(x)
        x = nn.relu(BatchNorm(train)(x))
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                x = BasicBlock(self.width * 2**i, stride=2 if i > 0 and j == 0 else 1)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


ARCHS = ("preact_resnet18", "wrn34_10", "wrn28_10", "wide_resnet", "resnet")
WRN_SIZES = {"wrn34_10": (34, 10), "wrn28_10": (28, 10)}


class Affine(nn.Module):
    """Detectron ``AffineChannel``: y = x * scale + bias per channel (a frozen, folded BN).

    Computed in float32 and returned in ``x``'s dtype, like the other norms under mixed
    precision (``layers.precision``): the scale and bias gradients sum over every position.
    In float32 the casts are no-ops."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        f32 = jnp.float32
        scale = self.param("scale", nn.initializers.ones, (c,)).astype(f32)
        bias = self.param("bias", nn.initializers.zeros, (c,)).astype(f32)
        return (x.astype(f32) * scale + bias).astype(x.dtype)


def _norm(kind: str, train: bool, name: str) -> nn.Module:
    if kind == "affine":
        return Affine(name=name)
    if kind == "batch":
        return BatchNorm(train, name=name)
    raise ValueError(f"Unknown norm {kind!r}; expected 'affine' or 'batch'.")


def _conv(features: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1, name=None):
    """Bias-free conv with PyTorch's symmetric explicit padding (not 'SAME')."""
    return nn.Conv(
        features,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        use_bias=False,
        kernel_init=conv_init,
        name=name,
    )


class Bottleneck(nn.Module):
    """Post-activation bottleneck 1x1 -> 3x3 (dilation) -> 1x1 (x4), projection shortcut.

    ``stride_1x1`` puts the stride on the first 1x1 conv (MSRA/Caffe); otherwise on the 3x3
    (torchvision, and Detectron with ``RESNETS.STRIDE_1X1: False`` as TRACE's configs set it).
    Submodule names follow the PyTorch block (conv1/bn1 ... downsample_conv/downsample_bn).
    """

    planes: int
    stride: int = 1
    dilation: int = 1
    stride_1x1: bool = False
    norm: str = "affine"

    @nn.compact
    def __call__(self, x, train: bool = False):
        p, d, out_ch = self.planes, self.dilation, self.planes * 4
        s1, s3 = (self.stride, 1) if self.stride_1x1 else (1, self.stride)
        y = nn.relu(_norm(self.norm, train, "bn1")(_conv(p, 1, s1, name="conv1")(x)))
        y = _conv(p, 3, s3, d, d, name="conv2")(y)
        y = nn.relu(_norm(self.norm, train, "bn2")(y))
        y = _norm(self.norm, train, "bn3")(_conv(out_ch, 1, name="conv3")(y))
        if self.stride != 1 or x.shape[-1] != out_ch:
            x = _conv(out_ch, 1, self.stride, name="downsample_conv")(x)
            x = _norm(self.norm, train, "downsample_bn")(x)
        return nn.relu(x + y)


class ResNetBody(nn.Module):
    """Bottleneck ResNet trunk -> conv5 feature map (B, H/32 or H/16 with dilation, W, 4*8*width).

    Stage s (0-based) has ``stage_sizes[s]`` blocks of ``width * 2**s`` planes, stride 2 from
    stage 1 on; with ``res5_dilation > 1`` the last stage keeps stride 1 and dilates its 3x3
    convs. Names: stem ``conv1``/``bn1``, blocks ``res{s+2}_{j}`` (Detectron's res2..res5).
    ``num_classes > 0`` adds global average pooling + ``fc`` and returns logits instead.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    res5_dilation: int = 1
    stride_1x1: bool = False
    norm: str = "affine"
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _conv(self.width, 7, 2, 3, name="conv1")(x)
        x = nn.relu(_norm(self.norm, train, "bn1")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        last = len(self.stage_sizes) - 1
        for s, n in enumerate(self.stage_sizes):
            dil = self.res5_dilation if s == last and s > 0 else 1
            stride = 1 if s == 0 or dil > 1 else 2
            for j in range(n):
                x = Bottleneck(
                    self.width * 2**s,
                    stride=stride if j == 0 else 1,
                    dilation=dil,
                    stride_1x1=self.stride_1x1,
                    norm=self.norm,
                    name=f"res{s + 2}_{j}",
                )(x, train)
        if self.num_classes:
            return nn.Dense(self.num_classes, name="fc")(jnp.mean(x, axis=(1, 2)))
        return x


def resnet50_dc5(**overrides) -> ResNetBody:
    """ResNet-50 with dilated conv5 (stride 16), AffineChannel norms: TRACE's 2D body."""
    kw = dict(stage_sizes=(3, 4, 6, 3), width=64, res5_dilation=2, norm="affine")
    kw.update(overrides)
    return ResNetBody(**kw)


def build(cfg) -> nn.Module:
    """A classifier from a model config: ``arch`` in ARCHS.

    'wrn34_10' / 'wrn28_10' are the fixed literature models; 'wide_resnet' reads
    ``cfg.depth`` and ``cfg.widen_factor`` (e.g. a narrow WRN-16-2 for CPU runs).
    """
    if cfg.arch == "preact_resnet18":
        return PreActResNet18(cfg.num_classes, cfg.width)
    if cfg.arch in WRN_SIZES:
        depth, k = WRN_SIZES[cfg.arch]
        return WideResNet(cfg.num_classes, depth, k)
    if cfg.arch == "wide_resnet":
        return WideResNet(cfg.num_classes, int(cfg.depth), int(cfg.widen_factor))
    if cfg.arch == "resnet":
        return ResNet(cfg.num_classes, cfg.width, tuple(cfg.stage_sizes))
    raise ValueError(f"Unknown classifier arch {cfg.arch!r}; expected one of {ARCHS}.")
