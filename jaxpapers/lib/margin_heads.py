"""Margin softmax heads for face recognition: CosFace, ArcFace, SphereFace, the combined form.

All margins are one formula on the target class (deepinsight/insightface
recognition/arcface_torch/losses.py CombinedMarginLoss):

    phi(theta) = cos(m1 * theta + m2) - m3,        logit_j = s * cos(theta_j) for j != y,
                                                   logit_y = s * phi(theta_y)

  CosFace    (m1, m2, m3) = (1, 0, m)      FROM: s=30, m=0.35   (CosMarginProduct)
  ArcFace    (m1, m2, m3) = (1, m, 0)      SynFace: s=30, m=0.5 (ArcMarginProduct); insightface s=64
  SphereFace (m1, m2, m3) = (m, 0, 0)      FROM SphereMarginProduct: s=64, m=1.5, cos(m*theta)

ArcFace "theta + m > pi" fallback (easy_margin=False in FROM/insightface): when cos(theta) <=
cos(pi - m2), the target logit becomes cos(theta) - sin(pi - m2) * m2 (- m3), which keeps phi
monotonically decreasing in theta.

Soft labels (SynFace identity/domain mixup, haibo-qiu/SynFace lib/core/functions.py): for a
target distribution t (N, C), SynFace mixes margin-applied logits per target,
o = sum_k w_k A(f, y_k).  Since sum_k w_k = 1 this equals, class by class,

    o_j = s * (cos_j + t_j * (phi_j - cos_j)),

and the loss sum_k w_k CE(o, y_k) equals the soft-target CE(o, t).  `margin_logits` therefore
accepts integer labels (N,) or a soft target matrix (N, C); for one-hot t it is the standard head.

Sharding: the class-centre matrix W (C, D) can be split over a mesh axis (partial-FC style, without
negative-class sampling): `MarginHead(shard_axis='model')` puts a sharding constraint P('model',
None) on W and P(batch_axis, 'model') on the logits; XLA's SPMD partitioner then inserts the
all-gather of embeddings and the cross-shard max/sum of the softmax.  This needs an active mesh
(`jax.set_mesh(mesh)` / `with mesh:`) that has that axis.  The default (None) replicates W.
`centre_partition_spec(shard_axis)` gives the PartitionSpec for placing the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

Array = jax.Array

_ACOS_EPS = 1e-7  # keep arccos away from +-1 where its gradient is infinite


@dataclass(frozen=True)
class Margin:
    """Margin parameters of the combined form cos(m1*theta + m2) - m3, scaled by s."""

    s: float = 30.0
    m1: float = 1.0
    m2: float = 0.0
    m3: float = 0.0

    def __post_init__(self) -> None:
        if self.s <= 0:
            raise ValueError(f"Margin scale s must be > 0, got {self.s}.")
        if self.m1 < 1 or self.m2 < 0 or self.m3 < 0:
            raise ValueError(f"Margins need m1 >= 1, m2 >= 0, m3 >= 0; got {self}.")


def cosface(s: float = 30.0, m: float = 0.35) -> Margin:
    """CosFace / large-margin cosine (FROM's CosMarginProduct default s=30, m=0.35)."""
    return Margin(s=s, m3=m)


def arcface(s: float = 30.0, m: float = 0.5) -> Margin:
    """ArcFace / additive angular margin (SynFace default s=30, m=0.5)."""
    return Margin(s=s, m2=m)


def sphereface(s: float = 64.0, m: float = 1.5) -> Margin:
    """SphereFace-style multiplicative angular margin as in FROM's SphereMarginProduct."""
    return Margin(s=s, m1=m)


def make_margin(
    kind: str, s: float, m: float = 0.0, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0
) -> Margin:
    """Builds a Margin from a config name: 'cosface' | 'arcface' | 'sphereface' | 'combined'."""
    if kind == "cosface":
        return cosface(s, m)
    if kind == "arcface":
        return arcface(s, m)
    if kind == "sphereface":
        return sphereface(s, m)
    if kind == "combined":
        return Margin(s=s, m1=m1, m2=m2, m3=m3)
    raise ValueError(
        f"Unknown margin kind {kind!r}; expected 'cosface', 'arcface', 'sphereface' or 'combined'."
    )


def l2_normalize(x: Array, axis: int = -1, eps: float = 1e-12) -> Array:
    """x / max(||x||, eps) along `axis`."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


def cosine_matrix(emb: Array, centres: Array) -> Array:
    """cos(theta) of every embedding (N, D) with every class centre (C, D), clipped to [-1, 1]."""
    if emb.ndim != 2 or centres.ndim != 2 or emb.shape[1] != centres.shape[1]:
        raise ValueError(
            f"Expected emb (N, D) and centres (C, D) with the same D, got {emb.shape} and "
            f"{centres.shape}."
        )
    cos = l2_normalize(emb.astype(jnp.float32)) @ l2_normalize(centres.astype(jnp.float32)).T
    return jnp.clip(cos, -1.0, 1.0)


def target_phi(cos: Array, margin: Margin) -> Array:
    """phi(theta) = cos(m1*theta + m2) - m3 with the ArcFace fallback, elementwise on cos."""
    if margin.m1 == 1.0:
        # cos(theta + m2) = cos*cos(m2) - sin*sin(m2): no arccos, smooth gradients (FROM's form).
        sin = jnp.sqrt(jnp.clip(1.0 - cos * cos, 0.0, 1.0))
        phi = cos * math.cos(margin.m2) - sin * math.sin(margin.m2)
        if margin.m2 > 0:
            # theta + m2 > pi  <=>  cos(theta) < cos(pi - m2): use the monotone fallback.
            th = math.cos(math.pi - margin.m2)
            mm = math.sin(math.pi - margin.m2) * margin.m2
            phi = jnp.where(cos > th, phi, cos - mm)
    else:
        theta = jnp.arccos(jnp.clip(cos, -1.0 + _ACOS_EPS, 1.0 - _ACOS_EPS))
        phi = jnp.cos(margin.m1 * theta + margin.m2)
    return phi - margin.m3


def as_target_matrix(targets: Array, num_classes: int) -> Array:
    """Integer labels (N,) -> one-hot (N, C); a float (N, C) target matrix passes through."""
    if targets.ndim == 1:
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(f"1-D targets must be integer labels, got dtype {targets.dtype}.")
        return jax.nn.one_hot(targets, num_classes, dtype=jnp.float32)
    if targets.ndim == 2 and targets.shape[1] == num_classes:
        return targets.astype(jnp.float32)
    raise ValueError(
        f"targets must be labels (N,) or a soft target matrix (N, {num_classes}); got "
        f"{targets.shape}."
    )


def margin_logits(cos: Array, targets: Array, margin: Margin) -> Array:
    """Scaled logits with the margin on the target class(es).

    Args:
      cos: (N, C) cosines.
      targets: integer labels (N,) or soft targets (N, C) whose rows sum to 1.
      margin: the Margin.

    Returns:
      (N, C) logits s * (cos + t * (phi(cos) - cos)).
    """
    t = as_target_matrix(targets, cos.shape[-1])
    return margin.s * (cos + t * (target_phi(cos, margin) - cos))


def softmax_cross_entropy(logits: Array, targets: Array) -> Array:
    """Mean softmax CE with integer labels (N,) or soft targets (N, C)."""
    t = as_target_matrix(targets, logits.shape[-1])
    return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), -1))


def centre_partition_spec(shard_axis: str | None) -> P:
    """PartitionSpec of the (C, D) class-centre matrix: P(shard_axis, None) or replicated P()."""
    return P(shard_axis, None) if shard_axis else P()


class MarginHead(nn.Module):
    """Class-centre matrix + margin logits.

    Attributes:
      num_classes: number of identities C.
      margin: the Margin (see cosface/arcface/sphereface).
      shard_axis: mesh axis to split the class centres over (None = replicated).
      batch_axis: mesh axis of the batch for the logits' sharding constraint (used only with
        shard_axis; None leaves the batch dimension to the partitioner).

    Call: `head(emb, targets)` -> (logits (N, C), cos (N, C)); `targets=None` returns (s*cos, cos)
    (no margin, for prediction).
    """

    num_classes: int
    margin: Margin = Margin()
    shard_axis: str | None = None
    batch_axis: str | None = None

    @nn.compact
    def __call__(self, emb: Array, targets: Array | None = None) -> tuple[Array, Array]:
        # (C, D) like PyTorch's Parameter(out_features, in_features); Xavier uniform as both codes.
        w = self.param(
            "centres", nn.initializers.xavier_uniform(), (self.num_classes, emb.shape[-1])
        )
        if self.shard_axis:
            w = jax.lax.with_sharding_constraint(w, centre_partition_spec(self.shard_axis))
        cos = cosine_matrix(emb, w)
        if self.shard_axis:
            cos = jax.lax.with_sharding_constraint(cos, P(self.batch_axis, self.shard_axis))
        if targets is None:
            return self.margin.s * cos, cos
        return margin_logits(cos, targets, self.margin), cos
