"""TRACE's real relation backbones (official MCG-NJU/TRACE lib/i3d/resnet3d.py, the mmaction2
config lib/i3d/i3d_nl_dot_product_r50_32x2x1_100e_kinetics400_rgb.py, model_builder_rel.py).

* 2D: ResNet-50 with dilated conv5 (``jaxpapers.layers.resnet.resnet50_dc5``; Detectron's
  ``ResNet50_conv5_body_dilation2``, AffineChannel norms, stride on the 3x3 conv).
* 3D: ``I3DResNet`` = mmaction2 ``ResNet3d`` depth 50 with the I3D-NL config TRACE loads:
  - stem: conv 5x7x7, stride (2, 2, 2), padding (2, 3, 3) + BN + ReLU; max-pool 1x3x3, stride
    (2, 2, 2) (``pool1_stride_t`` 2), padding (0, 1, 1); a 2x1x1/2 temporal max-pool (``pool2``)
    after stage 1. The temporal stride of the whole net is 8 (17 input frames -> 2 slices).
  - bottlenecks in the 'pytorch' style (stride on the middle conv); inflate style '3x1x1': an
    inflated block has conv1 = 3x1x1 (temporal padding 1), conv2 = 1x3x3; a non-inflated one
    conv1 = 1x1x1. Inflation per block: ((1,1,1), (1,0,1,0), (1,0,1,0,1,0), (0,1,0)).
  - non-local blocks (dot-product, ``sub_sample`` = 1x2x2 max-pool on g and phi, inter channels
    C/2, conv_out + BN, residual) after blocks ((0,0,0), (0,1,0,1), (0,1,0,1,0,1), (0,0,0)).
  - ``I3D_DC5: True`` (TRACE's configs): 4 stages, dilations (1, 1, 1, 2), spatial strides
    (1, 2, 2, 1) -> output stride 16, 2048 channels. Temporal strides (1, 1, 1, 1).
  - ``frozen_stages`` 2: the stem and stages 1-2 get no gradient (``stop_gradient``).
  All BatchNorms are used with their running statistics, folded into an affine scale/bias
  (``layers.resnet.Affine``) by the converter (the official trains stages 3-4 with BN in train
  mode, ``norm_eval=False``, on one clip per GPU; see README deviations).

Input layout: (B, T, H, W, C), channels last. Parameter names mirror the PyTorch modules
(``conv1``/``bn``, ``layer{i}_{j}``, ``conv{1,2,3}``, ``downsample``, ``non_local_block``), so
``convert.py`` maps state-dict keys by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers.layers.resnet import Affine, conv_init

I3D_INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
I3D_NON_LOCAL = ((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0))
# Detectron's PIXEL_MEANS (BGR): TRACE feeds both relation backbones Detectron-preprocessed
# frames (lib/roi_data_rel/minibatch_rel.py prep_im_for_blob, also for the 3D clip).
PIXEL_MEANS_BGR = (102.9801, 115.9465, 122.7717)


def conv3d(
    features, kernel, stride=(1, 1, 1), pad=(0, 0, 0), dilation=(1, 1, 1), bias=False, name=None
):
    return nn.Conv(
        features,
        tuple(kernel),
        strides=tuple(stride),
        padding=tuple((p, p) for p in pad),
        kernel_dilation=tuple(dilation),
        use_bias=bias,
        kernel_init=conv_init,
        name=name,
    )


class ConvModule(nn.Module):
    """mmcv ``ConvModule``: bias-free conv (``conv``) + BN (``bn``, folded) + optional ReLU."""

    features: int
    kernel: Sequence[int]
    stride: Sequence[int] = (1, 1, 1)
    pad: Sequence[int] = (0, 0, 0)
    dilation: Sequence[int] = (1, 1, 1)
    act: bool = True

    @nn.compact
    def __call__(self, x):
        x = conv3d(self.features, self.kernel, self.stride, self.pad, self.dilation, name="conv")(x)
        x = Affine(name="bn")(x)
        return nn.relu(x) if self.act else x


class NonLocal3d(nn.Module):
    """mmcv ``NonLocal3d``, mode 'dot_product', sub_sample: y = x + BN(W_out (f(x) g(x)) ) with
    f = theta(x) phi(x)^T / N (N = number of sub-sampled positions)."""

    @nn.compact
    def __call__(self, x):
        b, t, h, w, c = x.shape
        inter = c // 2

        def proj(name):
            return conv3d(inter, (1, 1, 1), bias=True, name=name)

        def sub(v):  # MaxPool3d((1, 2, 2)), stride = kernel, floor mode
            return nn.max_pool(v, (1, 2, 2), (1, 2, 2))

        g = sub(proj("g")(x)).reshape(b, -1, inter)
        theta = proj("theta")(x).reshape(b, -1, inter)
        phi = sub(proj("phi")(x)).reshape(b, -1, inter)
        pw = jnp.einsum("bqc,bkc->bqk", theta, phi) / phi.shape[1]
        y = jnp.einsum("bqk,bkc->bqc", pw, g).reshape(b, t, h, w, inter)
        return x + ConvModule(c, (1, 1, 1), act=False, name="conv_out")(y)


class Bottleneck3d(nn.Module):
    """mmaction2 ``Bottleneck3d`` (style 'pytorch', inflate style '3x1x1')."""

    planes: int
    spatial_stride: int = 1
    temporal_stride: int = 1
    dilation: int = 1
    inflate: bool = True
    non_local: bool = False

    @nn.compact
    def __call__(self, x):
        p, d = self.planes, self.dilation
        k1, pad1 = ((3, 1, 1), (1, 0, 0)) if self.inflate else ((1, 1, 1), (0, 0, 0))
        stride = (self.temporal_stride, self.spatial_stride, self.spatial_stride)
        y = ConvModule(p, k1, pad=pad1, name="conv1")(x)
        y = ConvModule(p, (1, 3, 3), stride, (0, d, d), (1, d, d), name="conv2")(y)
        y = ConvModule(4 * p, (1, 1, 1), act=False, name="conv3")(y)
        if self.spatial_stride != 1 or x.shape[-1] != 4 * p:
            x = ConvModule(4 * p, (1, 1, 1), stride, act=False, name="downsample")(x)
        y = nn.relu(y + x)
        if self.non_local:
            y = NonLocal3d(name="non_local_block")(y)
        return y


class I3DResNet(nn.Module):
    """I3D non-local ResNet-50 (DC5) trunk: clip (B, T, H, W, 3) -> (B, T', H/16, W/16, 2048)."""

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    inflate: Sequence[Sequence[int]] = I3D_INFLATE
    non_local: Sequence[Sequence[int]] = I3D_NON_LOCAL
    spatial_strides: Sequence[int] = (1, 2, 2, 1)
    temporal_strides: Sequence[int] = (1, 1, 1, 1)
    dilations: Sequence[int] = (1, 1, 1, 2)
    frozen_stages: int = 2

    @nn.compact
    def __call__(self, x):
        x = ConvModule(self.width, (5, 7, 7), (2, 2, 2), (2, 3, 3), name="conv1")(x)
        x = nn.max_pool(x, (1, 3, 3), (2, 2, 2), padding=((0, 0), (1, 1), (1, 1)))
        if self.frozen_stages == 0:  # frozen_stages >= 0 freezes the stem
            x = jax.lax.stop_gradient(x)
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                first = j == 0
                x = Bottleneck3d(
                    self.width * 2**i,
                    spatial_stride=self.spatial_strides[i] if first else 1,
                    temporal_stride=self.temporal_strides[i] if first else 1,
                    dilation=self.dilations[i],
                    inflate=bool(_pattern(self.inflate, i, j, 1)),
                    non_local=bool(_pattern(self.non_local, i, j, 0)),
                    name=f"layer{i + 1}_{j}",
                )(x)
            if i == 0:  # pool2 (with_pool2=True)
                x = nn.max_pool(x, (2, 1, 1), (2, 1, 1))
            if i + 1 == self.frozen_stages:
                x = jax.lax.stop_gradient(x)
        return x


def _pattern(table, i, j, default):
    """Per-block flag; tiny test variants with fewer blocks read a prefix of the official rows."""
    return table[i][j] if i < len(table) and j < len(table[i]) else default


def i3d_output_frames(t: int) -> int:
    """Temporal slices out of I3DResNet for t input frames (conv1 /2, pool1 /2, pool2 /2)."""
    t = (t + 2 * 2 - 5) // 2 + 1
    t = (t - 1) // 2 + 1
    return (t - 2) // 2 + 1
