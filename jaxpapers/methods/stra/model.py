"""StRA-ResNet (official shenao-zhang/StRA models/StRARes.py, stru_mask_value.py) and its baselines.

A torchvision-style ResNet (v1.5: stride in the 3x3 conv) whose bottlenecks in ``attn_stages``
get a different middle/extra operation, chosen by one config switch ``block``:

* 'stra'     — the 3x3 conv is replaced by ``LocalStructuralAttention`` (+ ``HubRouting``),
* 'plain'    — the standard ResNet bottleneck everywhere,
* 'se', 'cbam', 'nonlocal' — the attention baselines (``baselines.py``) in the same positions.

StRA-ResNet-50 = stage_sizes (3, 4, 6, 3), width 64, block 'stra' in stage 4 (layer4) with 8
heads, k=3, ratio 4, last_stride 1, and the re-ID neck GAP -> 1x1 conv 2048->512 (no bias) -> BN ->
Linear. Module names follow the official state_dict so ``convert.py`` maps weights by name.
The diversity losses of all StRA blocks are ``sow``-n into the 'losses' collection (summed by
``total_diversity``) and the per-head pooling maps into 'intermediates' when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.methods.stra.attention import LocalStructuralAttention, batch_norm, conv_init
from jaxpapers.methods.stra.baselines import CBAM, NonLocal, SqueezeExcite

BLOCKS = ("stra", "plain", "se", "cbam", "nonlocal")
# Parameters that stay float32 under bfloat16 compute (``layers.precision``): the classifier, so
# logits are computed in float32.
F32_PARAMS = (r"^classifier/",)


def conv(features: int, kernel: int, stride: int = 1, pad: int = 0, name: str | None = None):
    """A bias-free conv with PyTorch's symmetric explicit padding and Kaiming fan-out init."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=conv_init,
        name=name,
    )


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (expansion 4), optionally with StRA or a baseline attention."""

    planes: int
    stride: int = 1
    block: str = "plain"
    heads: int = 8
    kernel_size: int = 3
    ratio: int = 4
    keep_maps: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        width, out_ch = self.planes, self.planes * 4
        y = nn.relu(batch_norm(train, "bn1")(conv(width, 1, name="conv1")(x)))
        if self.block == "stra":
            y, div, pi = LocalStructuralAttention(
                features=width,
                groups=self.heads,
                kernel_size=self.kernel_size,
                stride=self.stride,
                ratio=self.ratio,
                name="conv2",
            )(y, train)
            self.sow("losses", "diversity", div)  # (B,), summed over blocks by total_diversity
            if self.keep_maps:
                self.sow("intermediates", "pool_maps", pi)
        else:
            y = conv(width, 3, self.stride, 1, name="conv2")(y)
        y = nn.relu(batch_norm(train, "bn2")(y))
        y = batch_norm(train, "bn3")(conv(out_ch, 1, name="conv3")(y))
        if self.block == "se":
            y = SqueezeExcite(name="se")(y)
        elif self.block == "cbam":
            y = CBAM(name="cbam")(y)
        if x.shape[-1] != out_ch or self.stride != 1:
            x = batch_norm(train, "downsample_bn")(
                conv(out_ch, 1, self.stride, name="downsample_conv")(x)
            )
        y = nn.relu(y + x)
        if self.block == "nonlocal":
            y = NonLocal(name="nonlocal")(y, train)
        return y


class StRAResNet(nn.Module):
    """ResNet with StRA / baseline blocks in ``attn_stages`` (0-based; 3 = layer4 = conv5_x).

    Attributes:
      num_classes: classifier outputs.
      stage_sizes: bottlenecks per stage ((3, 4, 6, 3) for ResNet-50).
      width: planes of the first stage (64 for ResNet-50; smaller for the CPU presets).
      block: one of ``BLOCKS``; applied in ``attn_stages``, plain bottlenecks elsewhere.
      attn_stages: stages that get ``block``.
      heads, kernel_size, ratio: StRA hyper-parameters (8, 3, 4 in the paper's model).
      last_stride: stride of the last stage (1 in StRA-ResNet-50 for re-ID).
      stem: 'imagenet' (7x7/2 conv + 3x3/2 max-pool) or 'small' (3x3/1 conv, for 28x28 inputs).
      neck_dim: >0: re-ID neck GAP -> 1x1 conv -> BN (its output is the test feature); 0: GAP.
      keep_maps: sow the per-head pooling maps pi_g into 'intermediates' (for pictures).
    """

    num_classes: int
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    block: str = "stra"
    attn_stages: Sequence[int] = (3,)
    heads: int = 8
    kernel_size: int = 3
    ratio: int = 4
    last_stride: int = 1
    stem: str = "imagenet"
    neck_dim: int = 512
    keep_maps: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """x: float (B,H,W,C) normalised images. Returns (logits, feature)."""
        if self.block not in BLOCKS:
            raise ValueError(f"Unknown block {self.block!r}; expected one of {BLOCKS}.")
        if self.stem == "imagenet":
            x = nn.relu(batch_norm(train, "bn1")(conv(self.width, 7, 2, 3, name="conv1")(x)))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        elif self.stem == "small":
            x = nn.relu(batch_norm(train, "bn1")(conv(self.width, 3, 1, 1, name="conv1")(x)))
        else:
            raise ValueError(f"Unknown stem {self.stem!r}; expected 'imagenet' or 'small'.")
        n_stages = len(self.stage_sizes)
        for s, size in enumerate(self.stage_sizes):
            stride = 1 if s == 0 else (self.last_stride if s == n_stages - 1 else 2)
            block = self.block if s in self.attn_stages else "plain"
            for j in range(size):
                x = Bottleneck(
                    planes=self.width * 2**s,
                    stride=stride if j == 0 else 1,
                    block=block,
                    heads=self.heads,
                    kernel_size=self.kernel_size,
                    ratio=self.ratio,
                    keep_maps=self.keep_maps,
                    name=f"layer{s + 1}_{j}",
                )(x, train)
        v = jnp.mean(x, axis=(1, 2))
        if self.neck_dim:
            # Official re-ID neck: AdaptiveAvgPool -> 1x1 conv (no bias) -> BN2d; the BN output is
            # the 512-d test feature.
            v = nn.Dense(self.neck_dim, use_bias=False, kernel_init=conv_init, name="neck_conv")(v)
            v = batch_norm(train, "neck_bn")(v)
        logits = nn.Dense(
            self.num_classes, kernel_init=nn.initializers.normal(0.01), name="classifier"
        )(v)
        return logits, v


def build_model(config, keep_maps: bool = False) -> StRAResNet:
    """The network of ``config.model`` (``keep_maps``: sow the pooling maps for pictures)."""
    m = config.model
    return StRAResNet(
        num_classes=m.num_classes,
        stage_sizes=tuple(m.stage_sizes),
        width=m.width,
        block=m.block,
        attn_stages=tuple(m.attn_stages),
        heads=m.heads,
        kernel_size=m.kernel_size,
        ratio=m.ratio,
        last_stride=m.last_stride,
        stem=m.stem,
        neck_dim=m.neck_dim,
        keep_maps=keep_maps,
    )


def total_diversity(losses: dict | None, batch: int) -> jax.Array:
    """Per-sample diversity loss summed over all StRA blocks (zeros if the model has none)."""
    leaves = jax.tree.leaves(losses or {})
    if not leaves:
        return jnp.zeros((batch,), jnp.float32)
    return sum(leaves)


def count_params(params) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(p.size for p in jax.tree.leaves(params)))
