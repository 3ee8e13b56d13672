"""ResNets for classification baselines: PreActResNet-18 (RAT, hedge defense) and a small ResNet.

PreActResNet-18 follows the standard adversarial-training code base (He et al. 2016, identity
mappings; the version used by Rice et al. and the RAT/hedge-defense official code): 3x3 stem
without pooling, four stages of two pre-activation basic blocks, global average pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

# PyTorch's default BatchNorm: momentum 0.1 (flax: 0.9), eps 1e-5.
BatchNorm = lambda train, **kw: nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, **kw
)
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # Kaiming (fan_out, relu).


class PreActBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        out = nn.relu(BatchNorm(train)(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(
                self.features, (1, 1), self.stride, use_bias=False, kernel_init=conv_init
            )(out)
        out = nn.Conv(
            self.features, (3, 3), self.stride, padding=1, use_bias=False, kernel_init=conv_init
        )(out)
        out = nn.relu(BatchNorm(train)(out))
        out = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(out)
        return out + shortcut


class PreActResNet(nn.Module):
    """PreActResNet with ``stage_sizes`` blocks per stage; (2, 2, 2, 2) is PreActResNet-18."""

    num_classes: int = 10
    width: int = 64
    stage_sizes: Sequence[int] = (2, 2, 2, 2)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(x)
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                x = PreActBlock(self.width * 2**i, stride=2 if i > 0 and j == 0 else 1)(x, train)
        x = nn.relu(BatchNorm(train)(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def PreActResNet18(num_classes: int = 10, width: int = 64) -> PreActResNet:  # noqa: N802
    return PreActResNet(num_classes=num_classes, width=width, stage_sizes=(2, 2, 2, 2))


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


def build(cfg) -> nn.Module:
    """A classifier from a model config: ``arch`` in {'preact_resnet18', 'resnet'}."""
    if cfg.arch == "preact_resnet18":
        return PreActResNet18(cfg.num_classes, cfg.width)
    if cfg.arch == "resnet":
        return ResNet(cfg.num_classes, cfg.width, tuple(cfg.stage_sizes))
    raise ValueError(
        f"Unknown classifier arch {cfg.arch!r}; expected 'preact_resnet18' or 'resnet'."
    )
