"""Batch normalisation with PyTorch's running-statistics semantics.

``flax.linen.BatchNorm`` updates its running variance with the biased batch variance; PyTorch's
``nn.BatchNorm*d`` (the official code of StRA, FROM, TRACE, PreActResNet/RAT, ...) normalises with
the biased variance but updates the running variance with the unbiased one (factor n / (n - 1),
n = elements per channel). For convolutions n is large and the two agree closely; for
``BatchNorm1d`` on small batches of embeddings they do not, and eval-mode outputs drift from the
official model's. `TorchBatchNorm` keeps flax's variable names (params ``scale``/``bias``,
``batch_stats`` ``mean``/``var``) so checkpoints and weight converters are interchangeable, and
computes statistics in float32 whatever the compute dtype (mixed precision).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax


class TorchBatchNorm(nn.Module):
    """BatchNorm over every axis but the last (NHWC or NC).

    Attributes:
      use_running_average: eval mode (use the running statistics, update nothing).
      momentum: flax convention, ``running = momentum * running + (1 - momentum) * batch``;
        PyTorch's default momentum 0.1 is ``momentum=0.9`` here.
      epsilon: added to the variance (PyTorch default 1e-5).
      unbiased_running_var: PyTorch semantics (True) or flax's (False).
      dtype: compute dtype of the normalised output (None: the input's); statistics stay float32.
    """

    use_running_average: bool | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_bias: bool = True
    use_scale: bool = True
    unbiased_running_var: bool = True
    dtype: Any = None
    scale_init: Any = nn.initializers.ones
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jnp.ndarray, use_running_average: bool | None = None) -> jnp.ndarray:
        eval_mode = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        feat = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((feat,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((feat,), jnp.float32))
        xf = x.astype(jnp.float32)
        if eval_mode:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean = jnp.mean(xf, axes)
            var = jnp.mean(jnp.square(xf - mean), axes)  # Two-pass: no E[x^2]-E[x]^2 cancellation.
            if not self.is_initializing():
                n = x.size // feat
                run_var = var * (n / max(n - 1, 1)) if self.unbiased_running_var else var
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * run_var
        y = (xf - mean) * lax.rsqrt(var + self.epsilon)
        if self.use_scale:
            y = y * self.param("scale", self.scale_init, (feat,), jnp.float32)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (feat,), jnp.float32)
        return y.astype(self.dtype or x.dtype)
