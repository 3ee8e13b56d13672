"""StyleGAN2 building blocks in XLA ops (NHWC, Flax Linen): FIR resampling, equalized-lr layers,
modulated convolution, minibatch standard deviation.

Shared by the StyleGAN2-based methods (stylegan2_dgl, synface, ...). Semantics follow the official
StyleGAN2 code (NVlabs/stylegan2 ``dnnlib/tflib/ops/upfirdn_2d.py`` and
``training/networks_stylegan2.py``; NVlabs/stylegan2-ada-pytorch ``torch_utils/ops``), re-expressed
with ``lax.pad``/``lax.conv_general_dilated`` so it runs on CPU, GPU and TPU without custom kernels:

* ``upfirdn2d``: zero-insert upsample by ``up`` -> pad (negative pads crop) -> convolve with a FIR
  filter -> keep every ``down``-th pixel. Output size ``(H*up + p0 + p1 - fh) // down + 1``.
  Computed in polyphase form (one short filter per output phase over the real samples only),
  so the work does not grow with the inserted zeros.
* Up/down-sampling convolutions (``conv2d_resample``) on CPU are polyphase too: the stride-2
  transposed conv is four stride-1 convs of the input with the sub-kernels ``w[a::2, b::2]``,
  interleaved, and the stride-2 conv the sum of four stride-1 convs of the input phases; same
  sums as the zero-insertion / stride-1-then-subsample forms at 1/4 of their multiplications.
* Every stride-1 convolution goes through `conv2d`: on CPU its weight gradient is one matmul per
  kernel tap (XLA:CPU's own weight-gradient convolution, a whole-image window, ran 4-17x slower
  than the forward pass on the StyleGAN2 layers), also in the double backward of R1 / path length.
* Equalized learning rate (Karras et al. 2018): parameters are stored at unit scale (N(0,1) init)
  and multiplied at run time by ``gain * lr_mul / sqrt(fan_in)``; biases by ``lr_mul``.
* Modulated convolution (StyleGAN2 Eq. 1-3): ``w'_ijk = s_i * w_ijk``,
  ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)``; computed "non-fused" (scale activations by
  ``s`` before and by the demodulation coefficients after a shared-weight conv), which equals the
  per-sample-weight form exactly in real arithmetic and batches well on every backend.

Mixed precision (``layers.precision``): each layer computes in the dtype of its weight (the
policy's bfloat16 copy, or float32 for the parameters a model keeps in float32) and casts its
input to it, as the official blocks cast their input to the block's dtype. Whatever sums over
positions stays float32: bias adds (`precision.add_bias`), the (de)modulation scales and the noise
add (their gradients reduce over the batch and every pixel), the demodulation coefficients, the
minibatch-std statistics and the matmul weight gradient of `conv2d`. With float32 weights and
inputs every one of these casts is a no-op: the float32 computation is unchanged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpapers.layers import precision

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
    slices (keeping every ``stride``-th sample). Elementwise ops fuse on every backend and avoid
    depthwise convolutions, which XLA:CPU compiles and runs slowly (and whose second derivatives,
    needed by R1 and path-length regularization, are worse)."""
    k = taps.size
    length = x.shape[axis] - k + 1
    if length < 1:
        raise ValueError(f"FIR filter of {k} taps longer than the padded input ({x.shape}).")
    out = None
    for j in range(k):
        # Convolution, not correlation: output[i] = sum_j taps[k-1-j] * x[i + j]; with a stride
        # each term is read strided, so only the kept outputs are computed.
        t = float(taps[k - 1 - j])
        if t == 0.0:
            continue
        term = lax.slice_in_dim(x, j, j + length, stride, axis=axis) * jnp.asarray(t, x.dtype)
        out = term if out is None else out + term
    if out is None:
        out = jnp.zeros_like(lax.slice_in_dim(x, 0, length, stride, axis=axis))
    return out


def _phases(n: int, up: int, pad0: int, pad1: int, k: int) -> tuple[int, list]:
    """Polyphase plan of 'zero-insert by ``up``, pad (pad0, pad1), valid correlation with k taps'
    along one axis of length ``n``: output sample ``up*q + r`` only meets the taps
    ``j = j0 + up*t`` (those that land on inserted input samples, not on the zeros), reading input
    ``q + t + c``. Returns (output length, [(j0, taps, outputs, pad_lo, pad_hi)] per phase r), the
    pads (negative: crop) giving the slice of the input that a 'valid' pass over ``outputs``
    samples reads."""
    length = n * up + pad0 + pad1 - k + 1
    if length < 1:
        raise ValueError(f"Filter of {k} taps longer than the padded, upsampled input ({n}).")
    plan = []
    for r in range(up):
        j0 = (pad0 - r) % up
        taps = len(range(j0, k, up))
        outputs = -(-(length - r) // up)  # ceil
        c = (r + j0 - pad0) // up  # exact: r + j0 - pad0 is a multiple of up
        plan.append((j0, taps, outputs, -c, outputs + taps - 1 + c - n))
    return length, plan


def _pad_axes(x: jax.Array, pads: dict[int, tuple[int, int]]) -> jax.Array:
    cfg = [(*pads.get(a, (0, 0)), 0) for a in range(x.ndim)]
    return lax.pad(x, jnp.zeros((), x.dtype), cfg)


def _interleave(parts: list[jax.Array], axis: int, length: int) -> jax.Array:
    """[y_0, y_1, ...] (phase r holds output samples up*q + r) -> one axis of ``length``."""
    most = parts[0].shape[axis]
    parts = [_pad_axes(p, {axis: (0, most - p.shape[axis])}) for p in parts]
    y = jnp.stack(parts, axis=axis + 1)
    shape = list(parts[0].shape)
    shape[axis] = most * len(parts)
    return lax.slice_in_dim(y.reshape(shape), 0, length, axis=axis)


def _upfir_1d(x: jax.Array, taps: np.ndarray, up: int, pad0: int, pad1: int, axis: int):
    """Zero-insert by ``up``, pad and FIR-filter along ``axis`` without touching the zeros: one
    shifted-slice sum per output phase over the taps that meet real samples (1/up of them)."""
    k = taps.size
    length, plan = _phases(x.shape[axis], up, pad0, pad1, k)
    conv = taps[::-1]  # Convolution: out[i] = sum_j taps[k-1-j] * xz[i + j].
    parts = []
    for j0, t, outputs, lo, hi in plan:
        if t == 0:
            shape = list(x.shape)
            shape[axis] = outputs
            parts.append(jnp.zeros(shape, x.dtype))
            continue
        xr = _pad_axes(x, {axis: (lo, hi)})
        parts.append(_fir_1d(xr, conv[j0::up][::-1].copy(), axis=axis, stride=1))
    return _interleave(parts, axis, length)


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
    taps = f * math.sqrt(gain)  # Separable: the gain splits evenly over the two passes.
    if up > 1:  # Polyphase: the filter never multiplies the inserted zeros (1/up of the work).
        x = _upfir_1d(x, taps, up, py0, py1, axis=1)
        x = _upfir_1d(x, taps, up, px0, px1, axis=2)
        if down > 1:
            x = x[:, ::down, ::down]
        return x
    x = _pad_axes(x, {1: (py0, py1), 2: (px0, px1)})
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


def _conv_padding(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    (a, b), (c, d) = padding
    return (int(a), int(b)), (int(c), int(d))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_s1(x: jax.Array, w: jax.Array, padding) -> jax.Array:
    """Stride-1 NHWC/HWIO convolution (correlation) with ``padding`` ((top, bottom), (left,
    right)) whose weight gradient is one matmul per kernel tap.

    XLA:CPU lowers a convolution's weight gradient to a convolution whose window is the whole
    image (batch as the contracted feature axis), which its conv kernels run 4-17x slower than
    the forward pass (measured on the StyleGAN2 layers); ``sum_{n,h,w} x[n, h+a, w+b, :]^T
    dy[n, h, w, :]`` per tap ``(a, b)`` is the same sum as dense matmuls. The input gradient is
    this function again (a stride-1 conv of ``dy`` with the flipped, transposed kernel), so the
    double backward of R1 and path-length regularization also takes the matmul route."""
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


def _conv_s1_fwd(x, w, padding):
    return _conv_s1(x, w, padding), (x, w)


def _conv_s1_bwd(padding, res, dy):
    x, w = res
    kh, kw = w.shape[0], w.shape[1]
    (t, b), (le, r) = padding
    # Input gradient: correlation of dy with the 180-degree rotated kernel, in/out swapped.
    w_t = jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2))
    dx = _conv_s1(dy, w_t, ((kh - 1 - t, kh - 1 - b), (kw - 1 - le, kw - 1 - r)))
    xp = _pad_axes(x, {1: (t, b), 2: (le, r)})
    n, oh, ow, cout = dy.shape
    cin = x.shape[3]
    # dy^T [Cout, NHW] once, times each tap's [NHW, Cin] window: both operands then sit in the
    # layout the CPU matmul wants (transposing every window instead cost ~1.3x more).
    # The products accumulate in float32 whatever the operands' dtype (a bfloat16 weight
    # gradient sums N*H*W terms per entry); the result is rounded to the weight's dtype once.
    dy_t = dy.reshape(n * oh * ow, cout).T
    taps = [
        jnp.matmul(
            dy_t,
            xp[:, i : i + oh, j : j + ow].reshape(n * oh * ow, cin),
            preferred_element_type=jnp.float32,
        )
        for i in range(kh)
        for j in range(kw)
    ]
    dw = jnp.stack(taps).reshape(kh, kw, cout, cin).transpose(0, 1, 3, 2)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv_s1.defvjp(_conv_s1_fwd, _conv_s1_bwd)


def conv2d(x: jax.Array, w: jax.Array, padding=((0, 0), (0, 0))) -> jax.Array:
    """Stride-1 NHWC/HWIO convolution with explicit ((top, bottom), (left, right)) padding: on
    CPU `_conv_s1` (weight gradient as matmuls), elsewhere the native convolution."""
    padding = _conv_padding(padding)
    if jax.default_backend() == "cpu":
        return _conv_s1(x, w, padding)
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


def _conv_transpose2x_polyphase(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-2 transposed conv with full padding, ``[N, 2H + kh - 2, 2W + kw - 2, Cout]``: the
    correlation of the zero-inserted input (interior pad 1, edges k - 1) with ``w``, computed as
    four stride-1 convs of the un-inserted input, one per output phase (rows, cols) mod 2, each
    with the sub-kernel ``w[a::2, b::2]`` of the taps that meet real samples, then interleaved.
    Same sums as the zero-insertion form without its 3/4 multiplications by zero (which XLA:CPU
    would all perform)."""
    n, h, wd, _ = x.shape
    kh, kw = w.shape[0], w.shape[1]
    rows_len, rows = _phases(h, 2, kh - 1, kh - 2, kh)
    cols_len, cols = _phases(wd, 2, kw - 1, kw - 2, kw)
    out_rows = []
    for a0, ta, qa, lo_a, hi_a in rows:
        out_cols = []
        for b0, tb, qb, lo_b, hi_b in cols:
            if ta == 0 or tb == 0:  # A 1-tap kernel leaves odd output rows/cols at zero.
                out_cols.append(jnp.zeros((n, qa, qb, w.shape[3]), x.dtype))
                continue
            xr = _pad_axes(x, {1: (lo_a, hi_a), 2: (lo_b, hi_b)})
            out_cols.append(conv2d(xr, w[a0::2, b0::2]))
        out_rows.append(_interleave(out_cols, 2, cols_len))
    return _interleave(out_rows, 1, rows_len)


def _conv_stride2_polyphase(x: jax.Array, w: jax.Array) -> jax.Array:
    """'Valid' stride-2 conv as the sum over the four input phases (rows, cols) mod 2 of stride-1
    convs of ``x[:, a::2, b::2]`` with the sub-kernels ``w[a::2, b::2]``: only the kept outputs
    are computed (a stride-1 conv then subsampling does 4x the work), and the backward pass is a
    strided slice's interior padding instead of XLA:CPU's slow lhs-dilated convolution."""
    kh, kw = w.shape[0], w.shape[1]
    out_h, out_w = (x.shape[1] - kh) // 2 + 1, (x.shape[2] - kw) // 2 + 1
    out = None
    for a in range(min(2, kh)):
        for b in range(min(2, kw)):
            sub = w[a::2, b::2]
            rows, cols = out_h + sub.shape[0] - 1, out_w + sub.shape[1] - 1
            xp = lax.slice(
                x,
                (0, a, b, 0),
                (x.shape[0], a + 2 * rows - 1, b + 2 * cols - 1, x.shape[3]),
                (1, 2, 2, 1),
            )
            y = conv2d(xp, sub)
            out = y if out is None else out + y
    return out


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
        if cpu:  # Polyphase transposed conv: plain stride-1 convs (XLA:CPU's fast path).
            x = _conv_transpose2x_polyphase(x, w)
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
        if cpu:  # Polyphase strided conv: stride-1 convs, no dilated convs in the backward pass.
            return _conv_stride2_polyphase(x, w)
        return lax.conv_general_dilated(x, w, (2, 2), "VALID", dimension_numbers=_DN)
    pad = kh // 2
    return conv2d(x, w, ((pad, pad), (pad, pad)))


def bias_act(
    x: jax.Array, b: jax.Array | None, act: str = "linear", clamp: float | None = None
) -> jax.Array:
    """Adds a channel bias (its gradient summed in float32), then 'linear' or 'lrelu' (slope 0.2,
    gain sqrt 2), then clips to [-clamp, clamp] when ``clamp`` (the official ``conv_clamp``)."""
    if b is not None:
        x = precision.add_bias(x, b)
    if act == "lrelu":
        x = jax.nn.leaky_relu(x, 0.2) * LRELU_GAIN
    elif act != "linear":
        raise ValueError(f"Unknown activation {act!r}; expected 'linear' or 'lrelu'.")
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def scale_channels(x: jax.Array, s: jax.Array) -> jax.Array:
    """``x * s`` with a per-sample, per-channel ``s`` [N, C], multiplied in float32 and rounded
    to ``x``'s dtype: the gradient of ``s`` sums over all pixels, in float32 (XLA:CPU sums a
    bfloat16 product in bfloat16). Plain ``x * s`` in float32."""
    y = x.astype(jnp.float32) * s[:, None, None, :].astype(jnp.float32)
    return y.astype(x.dtype)


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
        x = x.astype(w.dtype) @ (w * (self.lr_mul / math.sqrt(fan_in)))
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
            b = b * self.lr_mul
        return bias_act(x, b, self.act)


class EqualConv2d(nn.Module):
    """Conv layer with equalized learning rate and optional FIR 2x up/downsampling.

    Params: ``weight`` [k, k, in, out] (HWIO, N(0,1)), ``bias`` [out]. Computes in the dtype of
    ``weight`` (the input is cast to it).
    """

    features: int
    kernel: int = 3
    up: bool = False
    down: bool = False
    use_bias: bool = True
    act: str = "linear"
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    clamp: float | None = None  # Official conv_clamp: clip the output to [-clamp, clamp].

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        shape = (self.kernel, self.kernel, cin, self.features)
        w = self.param("weight", nn.initializers.normal(1.0), shape)
        w = w / math.sqrt(cin * self.kernel * self.kernel)
        f = setup_filter(self.resample_filter)
        x = conv2d_resample(x.astype(w.dtype), w, f, up=self.up, down=self.down)
        b = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        return bias_act(x, b, self.act, self.clamp)


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
      x: [N, H, W, Cin] activations (the computation's dtype; output in it too).
      weight: [k, k, Cin, Cout] kernel, equalized-lr scale already applied, in ``x``'s dtype.
      styles: [N, Cin] per-sample scales s_i.
      demodulate: divide each output channel by sqrt(sum_{k,i} (s_i w_ijk)^2 + eps).
      up: 2x FIR upsampling transposed conv (needs ``resample_filter``).
    """
    if styles.shape != (x.shape[0], x.shape[-1]):
        raise ValueError(f"styles {styles.shape} must be [batch, in_channels] for x {x.shape}.")
    x = scale_channels(x, styles)
    f = setup_filter() if resample_filter is None else resample_filter
    x = conv2d_resample(x, weight, f, up=up)
    if demodulate:
        # sum_{k,i} (s_i w_kij)^2 = sum_i s_i^2 * (sum_k w_kij^2): one [N,Cin]x[Cin,Cout] matmul,
        # in float32 (a normalisation statistic) from the weight the convolution used.
        wsq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(0, 1))
        d = lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ wsq + eps)
        x = scale_channels(x, d)
    return x


class ModulatedConv2d(nn.Module):
    """A StyleGAN2 synthesis layer: style affine, modulated conv, noise, bias, activation.

    Params use the official TF names: ``weight`` (HWIO), ``mod_weight``/``mod_bias`` (the style
    affine A; ``mod_bias`` is stored without the +1, initialized 0, so s starts at 1), ``bias``,
    and ``noise_strength`` (init 0) when ``use_noise``. ToRGB is this layer with kernel 1,
    ``demodulate=False``, no noise and a linear activation.

    The style affine computes in the dtype of ``mod_weight`` (float32 under the StyleGAN2 models'
    mixed-precision policy, as officially), the convolution in that of ``weight``; the noise
    (drawn in float32) is added in float32, its strength's gradient summed in float32.
    """

    features: int
    kernel: int = 3
    demodulate: bool = True
    up: bool = False
    use_noise: bool = True
    act: str = "lrelu"
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    clamp: float | None = None  # Official conv_clamp: clip the output to [-clamp, clamp].

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str = "random") -> jax.Array:
        """x: [N,H,W,Cin]; w: [N, w_dim]; noise_mode: 'random' (per-sample N(0,1)) or 'none'."""
        cin = x.shape[-1]
        wdim = w.shape[-1]
        mw = self.param("mod_weight", nn.initializers.normal(1.0), (wdim, cin))
        mb = self.param("mod_bias", nn.initializers.zeros, (cin,))
        s = w.astype(mw.dtype) @ (mw / math.sqrt(wdim)) + mb + 1.0
        shape = (self.kernel, self.kernel, cin, self.features)
        weight = self.param("weight", nn.initializers.normal(1.0), shape)
        weight = weight / math.sqrt(cin * self.kernel * self.kernel)
        f = setup_filter(self.resample_filter)
        x = modulated_conv2d(x.astype(weight.dtype), weight, s, self.demodulate, self.up, f)
        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            if noise_mode == "random":
                n, h, wd, _ = x.shape
                noise = jax.random.normal(self.make_rng("noise"), (n, h, wd, 1))
                x = (x.astype(jnp.float32) + noise * strength.astype(jnp.float32)).astype(x.dtype)
            elif noise_mode != "none":
                raise ValueError(f"noise_mode must be 'random' or 'none', got {noise_mode!r}.")
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return bias_act(x, b, self.act, self.clamp)


def minibatch_std(x: jax.Array, group_size: int = 4, num_features: int = 1) -> jax.Array:
    """Appends the minibatch standard deviation as extra channels (official layout), computed
    and returned in float32 (or wider).

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
    y = jnp.broadcast_to(y, (n, h, w, num_features))
    # Float32 out for a bfloat16 input (the official epilogue runs in float32): the statistic
    # is not rounded; the next layer casts to its own dtype.
    return jnp.concatenate([x.astype(y.dtype), y], axis=-1)
