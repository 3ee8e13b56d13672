"""StyleGAN2 building blocks in XLA ops (NHWC, Flax Linen): FIR resampling, equalized-lr layers,
modulated convolution, minibatch standard deviation.

Shared by the StyleGAN2-based methods (stylegan2_dgl, synface, ...). Semantics follow the official
StyleGAN2 code (NVlabs/stylegan2 ``dnnlib/tflib/ops/upfirdn_2d.py`` and
``training/networks_stylegan2.py``; NVlabs/stylegan2-ada-pytorch ``torch_utils/ops``), re-expressed
with ``lax.pad``/``lax.conv_general_dilated`` so it runs on CPU, GPU and TPU without custom kernels:

* ``upfirdn2d``: zero-insert upsample by ``up`` -> pad (negative pads crop) -> convolve with a FIR
  filter -> keep every ``down``-th pixel. Output size ``(H*up + p0 + p1 - fh) // down + 1``.
* Equalized learning rate (Karras et al. 2018): parameters are stored at unit scale (N(0,1) init)
  and multiplied at run time by ``gain * lr_mul / sqrt(fan_in)``; biases by ``lr_mul``.
* Modulated convolution (StyleGAN2 Eq. 1-3): ``w'_ijk = s_i * w_ijk``,
  ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)``; computed "non-fused" (scale activations by
  ``s`` before and by the demodulation coefficients after a shared-weight conv), which equals the
  per-sample-weight form exactly in real arithmetic and batches well on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(f: Sequence[float] = (1, 3, 3, 1), normalize: bool = True) -> np.ndarray:
    """A 1-D separable FIR filter (its 2-D version is the outer product), normalized to sum 1."""
    f = np.asarray(f, np.float32)
    if f.ndim != 1 or f.size < 1:
        raise ValueError(f"FIR filter must be a non-empty 1-D sequence, got shape {f.shape}.")
    if normalize:
        f = f / f.sum()
    return f


def _fir_1d(x: jax.Array, taps: np.ndarray, axis: int, stride: int) -> jax.Array:
    """'Valid' convolution of ``x`` along ``axis`` with a short 1-D filter, as a sum of shifted
    slices (then every ``stride``-th sample). Elementwise ops fuse on every backend and avoid
    depthwise convolutions, which XLA:CPU compiles and runs slowly (and whose second derivatives,
    needed by R1 and path-length regularization, are worse)."""
    k = taps.size
    length = x.shape[axis] - k + 1
    if length < 1:
        raise ValueError(f"FIR filter of {k} taps longer than the padded input ({x.shape}).")
    out = None
    for j in range(k):
        # Convolution, not correlation: output[i] = sum_j taps[k-1-j] * x[i + j].
        t = float(taps[k - 1 - j])
        if t == 0.0:
            continue
        term = lax.slice_in_dim(x, j, j + length, axis=axis) * jnp.asarray(t, x.dtype)
        out = term if out is None else out + term
    if out is None:
        out = jnp.zeros_like(lax.slice_in_dim(x, 0, length, axis=axis))
    if stride > 1:
        out = lax.slice_in_dim(out, 0, length, stride, axis=axis)
    return out


def upfirdn2d(
    x: jax.Array,
    f: np.ndarray,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> jax.Array:
    """Upsample, pad, FIR-filter and downsample a batch of NHWC images.

    Args:
      x: [N, H, W, C] images.
      f: 1-D separable filter taps (``setup_filter``); applied along H and W.
      up: integer upsampling factor (zero insertion).
      down: integer downsampling factor (keep every ``down``-th output pixel).
      padding: (pad_x0, pad_x1, pad_y0, pad_y1) in the upsampled grid, like the official code;
        negative values crop.
      gain: overall gain; ``up**2`` keeps the mean intensity of an upsampled image.

    Returns:
      [N, (H*up + py0 + py1 - fh)//down + 1, (W*up + px0 + px1 - fw)//down + 1, C].
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects NHWC input, got shape {x.shape}.")
    f = np.asarray(f, np.float32)
    if f.ndim != 1:
        raise ValueError("upfirdn2d takes a 1-D separable filter (see setup_filter).")
    px0, px1, py0, py1 = (int(p) for p in padding)
    # Zero insertion as interior padding; the extra (up-1) zeros at the end give length H*up.
    cfg = [(0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)]
    x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    taps = f * math.sqrt(gain)  # Separable: the gain splits evenly over the two passes.
    x = _fir_1d(x, taps, axis=1, stride=down)
    return _fir_1d(x, taps, axis=2, stride=down)


def upsample2d(x: jax.Array, f: np.ndarray, up: int = 2) -> jax.Array:
    """2x (``up``x) FIR upsampling that keeps the image size an exact multiple (skip-G images)."""
    fw = f.shape[0]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: jax.Array, f: np.ndarray, down: int = 2) -> jax.Array:
    """FIR-filtered ``down``x downsampling (D skip connections)."""
    fw = f.shape[0]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def conv2d_resample(
    x: jax.Array, w: jax.Array, f: np.ndarray, up: bool = False, down: bool = False
) -> jax.Array:
    """'Same'-size conv with optional 2x FIR up/downsampling (official ``conv2d_resample``).

    Upsampling is a stride-2 transposed conv (zero insertion + full padding + correlation with
    ``w``) followed by a [1,3,3,1] blur with gain 4; downsampling blurs first and then applies a
    stride-2 'valid' conv. ``w`` is HWIO, already scaled. The kernel is used in correlation
    orientation, which is how the official TF ``Conv0_up`` weights act (the PyTorch port stores
    them flipped).
    """
    if up and down:
        raise ValueError("conv2d_resample: choose up or down, not both.")
    kh = w.shape[0]
    fw = f.shape[0]
    cpu = jax.default_backend() == "cpu"
    if up:
        if cpu:  # Explicit zero insertion + plain conv: XLA:CPU's fast (Eigen) conv path.
            zero = jnp.zeros((), x.dtype)
            cfg = [(0, 0, 0), (kh - 1, kh - 1, 1), (kh - 1, kh - 1, 1), (0, 0, 0)]
            x = lax.conv_general_dilated(
                lax.pad(x, zero, cfg), w, (1, 1), "VALID", dimension_numbers=_DN
            )
        else:  # Same maths as a transposed conv (lhs dilation), native on GPU/TPU.
            x = lax.conv_general_dilated(
                x, w, (1, 1), [(kh - 1, kh - 1)] * 2, lhs_dilation=(2, 2), dimension_numbers=_DN
            )
        p = (fw - 2) - (kh - 1)
        p0, p1 = (p + 1) // 2 + 1, p // 2 + 1
        return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=4.0)
    if down:
        p = (fw - 2) + (kh - 1)
        p0, p1 = (p + 1) // 2, p // 2
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        if cpu:  # Stride-1 conv then subsample: keeps the backward pass off dilated convs.
            y = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DN)
            return y[:, ::2, ::2]
        return lax.conv_general_dilated(x, w, (2, 2), "VALID", dimension_numbers=_DN)
    pad = kh // 2
    return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=_DN)


def bias_act(x: jax.Array, b: jax.Array | None, act: str = "linear") -> jax.Array:
    """Adds a channel bias, then 'linear' or 'lrelu' (slope 0.2, gain sqrt 2)."""
    if b is not None:
        x = x + b.astype(x.dtype)
    if act == "linear":
        return x
    if act == "lrelu":
        return jax.nn.leaky_relu(x, 0.2) * LRELU_GAIN
    raise ValueError(f"Unknown activation {act!r}; expected 'linear' or 'lrelu'.")


class EqualDense(nn.Module):
    """Fully-connected layer with equalized learning rate (params ``weight`` [in, out], ``bias``).

    Attributes:
      features: output width.
      lr_mul: learning-rate multiplier folded into the parametrization (official mapping: 0.01).
        This suite keeps 1.0 and applies 0.01 through ``optim`` ``lr_multipliers`` instead, which
        is the same Adam trajectory (Adam is invariant to the gradient's scale).
      bias_init: initial bias value (before ``lr_mul``).
      act: 'linear' or 'lrelu'.
    """

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    use_bias: bool = True
    act: str = "linear"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        w = self.param(
            "weight", lambda k, s: jax.random.normal(k, s) / self.lr_mul, (fan_in, self.features)
        )
        x = x @ (w * (self.lr_mul / math.sqrt(fan_in))).astype(x.dtype)
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
            b = b * self.lr_mul
        return bias_act(x, b, self.act)


class EqualConv2d(nn.Module):
    """Conv layer with equalized learning rate and optional FIR 2x up/downsampling.

    Params: ``weight`` [k, k, in, out] (HWIO, N(0,1)), ``bias`` [out].
    """

    features: int
    kernel: int = 3
    up: bool = False
    down: bool = False
    use_bias: bool = True
    act: str = "linear"
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        shape = (self.kernel, self.kernel, cin, self.features)
        w = self.param("weight", nn.initializers.normal(1.0), shape)
        w = (w / math.sqrt(cin * self.kernel * self.kernel)).astype(x.dtype)
        f = setup_filter(self.resample_filter)
        x = conv2d_resample(x, w, f, up=self.up, down=self.down)
        b = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        return bias_act(x, b, self.act)


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    demodulate: bool = True,
    up: bool = False,
    resample_filter: np.ndarray | None = None,
    eps: float = 1e-8,
) -> jax.Array:
    """Modulated (and demodulated) convolution, StyleGAN2 Eq. 1-3, non-fused form.

    Args:
      x: [N, H, W, Cin] activations.
      weight: [k, k, Cin, Cout] kernel, equalized-lr scale already applied.
      styles: [N, Cin] per-sample scales s_i.
      demodulate: divide each output channel by sqrt(sum_{k,i} (s_i w_ijk)^2 + eps).
      up: 2x FIR upsampling transposed conv (needs ``resample_filter``).
    """
    if styles.shape != (x.shape[0], x.shape[-1]):
        raise ValueError(f"styles {styles.shape} must be [batch, in_channels] for x {x.shape}.")
    x = x * styles[:, None, None, :].astype(x.dtype)
    f = setup_filter() if resample_filter is None else resample_filter
    x = conv2d_resample(x, weight, f, up=up)
    if demodulate:
        # sum_{k,i} (s_i w_kij)^2 = sum_i s_i^2 * (sum_k w_kij^2): one [N,Cin]x[Cin,Cout] matmul.
        wsq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(0, 1))
        d = lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ wsq + eps)
        x = x * d[:, None, None, :].astype(x.dtype)
    return x


class ModulatedConv2d(nn.Module):
    """A StyleGAN2 synthesis layer: style affine, modulated conv, noise, bias, activation.

    Params use the official TF names: ``weight`` (HWIO), ``mod_weight``/``mod_bias`` (the style
    affine A; ``mod_bias`` is stored without the +1, initialized 0, so s starts at 1), ``bias``,
    and ``noise_strength`` (init 0) when ``use_noise``. ToRGB is this layer with kernel 1,
    ``demodulate=False``, no noise and a linear activation.
    """

    features: int
    kernel: int = 3
    demodulate: bool = True
    up: bool = False
    use_noise: bool = True
    act: str = "lrelu"
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str = "random") -> jax.Array:
        """x: [N,H,W,Cin]; w: [N, w_dim]; noise_mode: 'random' (per-sample N(0,1)) or 'none'."""
        cin = x.shape[-1]
        wdim = w.shape[-1]
        mw = self.param("mod_weight", nn.initializers.normal(1.0), (wdim, cin))
        mb = self.param("mod_bias", nn.initializers.zeros, (cin,))
        s = w @ (mw / math.sqrt(wdim)).astype(w.dtype) + mb + 1.0
        shape = (self.kernel, self.kernel, cin, self.features)
        weight = self.param("weight", nn.initializers.normal(1.0), shape)
        weight = weight / math.sqrt(cin * self.kernel * self.kernel)
        f = setup_filter(self.resample_filter)
        x = modulated_conv2d(x, weight.astype(x.dtype), s, self.demodulate, self.up, f)
        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            if noise_mode == "random":
                n, h, wd, _ = x.shape
                noise = jax.random.normal(self.make_rng("noise"), (n, h, wd, 1), x.dtype)
                x = x + noise * strength.astype(x.dtype)
            elif noise_mode != "none":
                raise ValueError(f"noise_mode must be 'random' or 'none', got {noise_mode!r}.")
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return bias_act(x, b, self.act)


def minibatch_std(x: jax.Array, group_size: int = 4, num_features: int = 1) -> jax.Array:
    """Appends the minibatch standard deviation as extra channels (official layout).

    Samples ``n = g*M + m`` (g < G groups of the reshape) share statistics over g, like the TF
    reshape ``[G, -1, ...]``; the std is averaged over channels (per feature group) and pixels.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"Minibatch-std group size {g} must divide the batch size {n}.")
    if c % num_features:
        raise ValueError(f"num_features {num_features} must divide the channel count {c}.")
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    y = y.reshape(g, n // g, h, w, num_features, c // num_features)
    y = y - y.mean(axis=0)
    y = jnp.sqrt(jnp.square(y).mean(axis=0) + 1e-8)  # [M, H, W, F, c/F]
    y = y.mean(axis=(1, 2, 4))  # [M, F]
    y = jnp.tile(y, (g, 1))[:, None, None, :]  # sample n -> group-member index n % M
    y = jnp.broadcast_to(y, (n, h, w, num_features)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)
