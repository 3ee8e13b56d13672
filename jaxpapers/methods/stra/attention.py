"""StRA's two operations (official shenao-zhang/StRA models/StRARes.py, models/component.py).

Layout is NHWC (Flax); channels of head g are the contiguous slice [g*n, (g+1)*n), exactly as in
the official grouped convolutions, so official weights convert one-to-one (see ``convert.py``).

* ``LocalStructuralAttention`` replaces the bottleneck's 3x3 convolution:
  M = BN(GConv(tanh(BN(GConv(X))))) gives node scores nu and per-offset kernel logits m;
  a_g(p, o) = m_g(p, o) + nu_g(p + o), w = softmax_o(a), Y_g(p) = sum_o w_g(p, o) V_g(p + o).
* ``HubRouting`` (official ``MoE``): per-head pooled hub vectors, gated update, routing between
  heads, second gated update; it also returns the diversity loss G - sum_p max_g pi_g(p).

The diversity loss is returned explicitly (and ``sow``-n into the 'losses' collection by the
bottleneck), not kept in a module-level buffer as the official code does.

Mixed precision (``layers.precision``): the softmaxes (window weights, pooling maps pi, routing)
and the diversity loss are float32; convolutions, the weighted sums and the hub updates run in the
compute dtype.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

# torch kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2 / (out*kh*kw)), untruncated.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults (eps 1e-5, running-average momentum 0.1)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def window_padding(kernel_size: int, dilation: int, stride: int) -> int:
    """The official padding ((k - 1) d + 2 - s) // 2 (keeps H for s=1, gives ceil(H/2) for s=2)."""
    return ((kernel_size - 1) * dilation + 2 - stride) // 2


def shifted_windows(x: jax.Array, kernel_size: int, dilation: int, stride: int) -> list[jax.Array]:
    """The k*k zero-padded shifted views of ``x`` (B,H,W,...) in row-major offset order.

    Offset o = (i, j) of the returned list index i*k + j reads x at (s*p + d*o - pad), matching
    torch ``nn.Unfold`` channel order (c, kh, kw). Only k*k slices are built (no loop over
    positions); XLA fuses the consumer's weighted sum without materialising a k*k-times tensor.
    """
    pad = window_padding(kernel_size, dilation, stride)
    h, w = x.shape[1], x.shape[2]
    ho = (h + 2 * pad - dilation * (kernel_size - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dilation * (kernel_size - 1) - 1) // stride + 1
    widths = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 3)
    xp = jnp.pad(x, widths)
    views = []
    for i in range(kernel_size):
        for j in range(kernel_size):
            r0, c0 = i * dilation, j * dilation
            rows = slice(r0, r0 + (ho - 1) * stride + 1, stride)
            cols = slice(c0, c0 + (wo - 1) * stride + 1, stride)
            views.append(xp[:, rows, cols])
    return views


def diversity_loss(pool_weights: jax.Array) -> jax.Array:
    """L_div = G - sum_p max_g pi_g(p) per sample; ``pool_weights`` is (B, P, G), softmax over P.

    0 when the heads' maps have disjoint support, G - 1 when all heads put the same one-hot map.
    """
    if pool_weights.ndim != 3:
        raise ValueError(f"pool_weights must be (B, P, G), got shape {pool_weights.shape}.")
    g = pool_weights.shape[-1]
    return g - jnp.sum(jnp.max(pool_weights, axis=-1), axis=-1)


def routing_matrix(hubs: jax.Array) -> jax.Array:
    """R = softmax_rows(sqrt(G) * L2-normalise_rows(Z Z^T)) for hubs Z of shape (B, G, n).

    L2 normalisation uses torch ``F.normalize``'s eps 1e-12 so that zero rows stay finite.
    """
    g = hubs.shape[-2]
    gram = jnp.einsum("bgn,bhn->bgh", hubs, hubs)
    norm = jnp.sqrt(jnp.sum(gram * gram, axis=-1, keepdims=True))
    gram = gram / jnp.maximum(norm, 1e-12)
    return jax.nn.softmax(gram * math.sqrt(g), axis=-1)


class HubRouting(nn.Module):
    """Global hub aggregation with routing between heads (official ``MoE``): StRA's 2nd operation.

    Attributes:
      groups: number of heads G (channels must divide by G).
      pool_hidden_per_group: hidden width per head of the pooling-weight branch (official: 8).

    The official module hard-codes 512 input channels (stage 5 only); here the input width is
    read from the input so the block can be dropped into any stage (same maths).
    """

    groups: int = 8
    pool_hidden_per_group: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns (output (B,H,W,C), diversity loss (B,), pooling maps pi (B,H,W,G))."""
        b, h, w, c = x.shape
        g = self.groups
        if c % g:
            raise ValueError(f"HubRouting: channels {c} must be divisible by groups {g}.")
        n = c // g
        # Per-head pooling logits: BN(GConv_{8G->G}(tanh(BN(GConv_{C->8G}(Y))))), softmax over p.
        t = nn.Conv(
            g * self.pool_hidden_per_group,
            (1, 1),
            feature_group_count=g,
            kernel_init=conv_init,
            name="gap_conv1",
        )(x)
        t = jnp.tanh(batch_norm(train, "gap_bn1")(t))
        t = nn.Conv(g, (1, 1), feature_group_count=g, kernel_init=conv_init, name="gap_conv2")(t)
        t = batch_norm(train, "gap_bn2")(t)
        # Softmax (and the diversity loss) in float32; the rest in x's (compute) dtype.
        pi = jax.nn.softmax(t.reshape(b, h * w, g).astype(jnp.float32), axis=1)  # (B, P, G)
        y = x.reshape(b, h * w, g, n)
        hubs = jnp.einsum("bpg,bpgn->bgn", pi.astype(x.dtype), y)  # z_g = sum_p pi_g(p) Y_g(p)

        # Phase 1: gamma_g(p) = sigmoid(BN(z_g . Y_g(p))); Y' = Y + gamma z.
        dot = jnp.einsum("bgn,bpgn->bpg", hubs, y).reshape(b, h, w, g)
        gate = jax.nn.sigmoid(batch_norm(train, "bn")(dot)).reshape(b, h * w, g, 1).astype(x.dtype)
        y = y + gate * hubs[:, None]

        # Routing between heads, then phase 2 with the routed hubs z' = R Z.
        r = routing_matrix(hubs.astype(jnp.float32)).astype(x.dtype)
        routed = jnp.einsum("bgh,bhn->bgn", r, hubs)
        dot2 = jnp.einsum("bgn,bpgn->bpg", routed, y).reshape(b, h, w, g)
        gate2 = jax.nn.sigmoid(batch_norm(train, "bn2")(dot2)).reshape(b, h * w, g, 1)
        gate2 = gate2.astype(x.dtype)
        y = y + gate2 * routed[:, None]
        return y.reshape(b, h, w, c), diversity_loss(pi), pi.reshape(b, h, w, g)


class LocalStructuralAttention(nn.Module):
    """Local structural attention + hub routing, StRA's 3x3-conv replacement (``LocalAttn``).

    Attributes:
      features: output channels (the official block keeps C: value_out_channels = width).
      groups: heads G. kernel_size, dilation, stride: the k x k window. ratio: mask reduction r.
      use_hub: apply ``HubRouting`` after the local attention (True in the official model).
    """

    features: int
    groups: int = 8
    kernel_size: int = 3
    dilation: int = 1
    stride: int = 1
    ratio: int = 4
    use_hub: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """Returns (output (B,H',W',features), diversity loss (B,), pooling maps pi or None)."""
        b, _, _, c = x.shape
        g, k2 = self.groups, self.kernel_size**2
        if c % g or self.features % g or (c // self.ratio) % g:
            raise ValueError(
                f"LocalStructuralAttention: channels {c}, features {self.features} and C/ratio "
                f"{c // self.ratio} must all be divisible by groups {g}."
            )
        # The official mask branch applies the stride in its first 1x1 conv and then unfolds the
        # (already strided) node scores with the stride again, which only works for stride 1 (the
        # only stride StRA-ResNet-50 uses, last_stride=1). For stride > 1 we compute the branch at
        # full resolution, read node scores at the strided window positions and kernel logits at
        # the strided centres (a_g(p,o) = m_g(sp,o) + nu_g(sp+o)); see README 'Deviations'.
        t = nn.Conv(
            c // self.ratio, (1, 1), feature_group_count=g, kernel_init=conv_init, name="mask_conv1"
        )(x)
        t = jnp.tanh(batch_norm(train, "mask_bn1")(t))
        t = nn.Conv(
            g * (1 + k2), (1, 1), feature_group_count=g, kernel_init=conv_init, name="mask_conv2"
        )(t)
        mask = batch_norm(train, "mask_bn2")(t)
        # Split by flat channel index as the official code does: channels [0, G) are the node
        # scores nu, channels [G, G(1+k^2)) reshape to (G, k^2) kernel logits. (With grouped
        # convs this means nu for all heads come from the first conv group; kept for fidelity.)
        nu, logits = mask[..., :g], mask[..., g:]
        s = self.stride
        logits = logits[:, ::s, ::s] if s > 1 else logits
        ho, wo = logits.shape[1], logits.shape[2]
        logits = logits.reshape(b, ho, wo, g, k2)
        nu_win = shifted_windows(nu, self.kernel_size, self.dilation, s)  # k2 x (B,H',W',G)
        # Softmax over k^2 in float32, weights back in the compute dtype of the values.
        att = jax.nn.softmax((logits + jnp.stack(nu_win, axis=-1)).astype(jnp.float32), axis=-1)
        att = att.astype(x.dtype)

        value = nn.Conv(
            self.features,
            (1, 1),
            feature_group_count=g,
            use_bias=False,
            kernel_init=conv_init,
            name="value_conv",
        )(x)
        value = value.reshape(*value.shape[:3], g, self.features // g)
        v_win = shifted_windows(value, self.kernel_size, self.dilation, s)
        # Y_g(p) = sum_o w_g(p,o) V_g(p+o): all n channels of a head share the weights.
        out = sum(att[..., o, None] * v_win[o] for o in range(k2))
        out = out.reshape(b, ho, wo, self.features).astype(x.dtype)
        if not self.use_hub:
            return out, jnp.zeros((b,), out.dtype), None
        return HubRouting(groups=g, name="moe")(out, train)
