"""Mixed precision: the ``model.dtype`` switch ("float32" | "bfloat16") of every trained method.

One policy for the whole suite (the PyTorch-AMP / ``jmp`` recipe), applied in one place, `apply`:

* **Stored in float32**: parameters, optimizer state, BatchNorm running statistics, spectral-norm
  vectors, EMA weights, checkpoints. The train step casts a *copy* of the parameters to the compute
  dtype inside the differentiated function, so the gradient reaches the float32 master weights
  through the cast (its transpose casts back) and the optimizer updates float32 values.
* **Computed in the compute dtype**: every convolution, matmul and activation whose operands are
  the cast parameters and the cast inputs (Flax layers compute in the dtype of their operands).
* **Computed in float32**: normalisation statistics (`layers.norm.TorchBatchNorm` and Flax's
  BatchNorm / GroupNorm / LayerNorm reduce in float32 and normalise in float32 before casting the
  output back), the network outputs `apply` returns (logits, embeddings, images: so softmax,
  losses and metrics are float32), the layers whose parameters match a method's ``keep`` patterns
  (e.g. a final classifier layer: its float32 kernel promotes the matmul to float32), and what a
  model casts explicitly (attention softmax logits).
* **Evaluation, sampling and attacks** use the float32 parameters in float32: the switch speeds up
  training and changes nothing a run reports except through the trained weights (an attack on a
  bfloat16 forward pass would also see rounding noise in its input gradients).

Methods with the switch: classifier, rat (and hedge_defense's base model), from_occlusion, stra,
biggan_dgl, stylegan2_dgl (the ``model.bf16_res`` highest resolutions, like the official
``num_fp16_res``), synface (recognition phase), unifacegan, trace_vidsgg, faceanime.
granular_avalanche is a physics simulation and keeps its own precision (its LAMMPS comparisons
check positions and velocities to 1e-6-1e-9 relative). Not yet: synface's GAN phase (it could
reuse stylegan2_dgl's layout).

bfloat16 keeps 8 significant bits (unit roundoff 2**-8 ~ 0.4 %) and float32's exponent range, so
no loss scaling is needed (unlike float16). ``float32`` is bit-identical to not using this module.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import config_lib, optim

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_cfg) -> Any:
    """The compute dtype named by ``model_cfg.dtype`` (default float32).

    Configs written before the switch existed spelled bfloat16 as ``bf16=True`` (from_occlusion);
    they still load.
    """
    name = model_cfg.get("dtype", None)
    if name is None:
        return jnp.bfloat16 if model_cfg.get("bf16", False) else jnp.float32
    if name not in DTYPES:
        raise config_lib.ConfigError(
            f"model.dtype={name!r} is not supported; use one of {', '.join(DTYPES)} "
            "(e.g. --config.model.dtype=bfloat16)."
        )
    return DTYPES[name]


def _floating(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)


def cast(tree, dtype, keep: Sequence[str] = ()):
    """Floating leaves of ``tree`` cast to ``dtype``, except those whose '/'-joined key path
    matches (``re.search``) one of the ``keep`` patterns; other leaves unchanged."""
    rules = [re.compile(p) for p in keep]

    def leaf(path, x):
        if not _floating(x) or x.dtype == dtype:
            return x
        if rules and any(r.search(optim.param_path(path)) for r in rules):
            return x
        return x.astype(dtype)

    return jax.tree_util.tree_map_with_path(leaf, tree)


def to_float32(tree):
    """Floating leaves of ``tree`` as float32 (integers, keys and booleans unchanged)."""
    return cast(tree, jnp.float32)


def apply(module, variables: dict, *args, dtype, keep: Sequence[str] = (), **kwargs):
    """``module.apply`` under the policy above.

    The ``params`` collection (float32 masters) and the floating positional inputs are cast to
    ``dtype`` (``keep``: parameter paths that stay float32); other collections (BN statistics,
    spectral-norm vectors) are passed as stored. Floating outputs come back as float32; with
    ``mutable`` the updated collections come back as the model wrote them (float32 for every
    layer of this suite; the mixed-precision tests check it). Biases of Flax ``Dense`` / ``Conv``
    / ``ConvTranspose`` layers are added by `add_bias` (their gradients summed in float32).
    """
    if dtype == jnp.float32:
        return module.apply(variables, *args, **kwargs)
    variables = dict(variables, params=cast(variables["params"], dtype, keep))
    args = tuple(cast(a, dtype) for a in args)
    with nn.intercept_methods(_bias_in_float32):
        out = module.apply(variables, *args, **kwargs)
    if kwargs.get("mutable", False) is not False:
        y, mutated = out
        return to_float32(y), mutated
    return to_float32(out)


def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
    """``y + bias`` (bias broadcast over the leading axes) whose bias gradient is summed in
    float32: the plain add's transpose sums the output gradient over batch and positions in the
    compute dtype, and XLA:CPU accumulates a bfloat16 sum in bfloat16 (measured: 50-90 % error on
    the conv biases of a 32x32 BigGAN D, batch 16). Output in ``y``'s dtype; identical to
    ``y + bias`` in float32."""
    return (y + bias.astype(jnp.float32)).astype(y.dtype)


_BIASED = (nn.Dense, nn.Conv, nn.ConvTranspose)


def _bias_in_float32(next_fun, args, kwargs, context):
    """Flax Dense / Conv / ConvTranspose with a bias, under `apply`: the layer without its bias
    (same kernel, same compute), then `add_bias`, so every bias gradient is summed in float32."""
    m = context.module
    if context.method_name != "__call__" or not isinstance(m, _BIASED) or not m.use_bias:
        return next_fun(*args, **kwargs)
    if m.is_initializing():
        return next_fun(*args, **kwargs)
    kernel, bias = m.get_variable("params", "kernel"), m.get_variable("params", "bias")
    plain = m.clone(parent=None, use_bias=False)
    y = plain.apply({"params": {"kernel": kernel}}, *args, **kwargs)
    return add_bias(y, bias)


_MATMULS = ("conv_general_dilated", "dot_general")


def matmul_dtypes(fn, *args, **kwargs) -> Counter:
    """``Counter`` of ``(primitive, dtype of the first operand)`` over the convolutions and
    matmuls of ``fn(*args, **kwargs)`` (forward and backward, through jit / scan / cond bodies):
    which of them run in which precision."""
    counts: Counter = Counter()

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in _MATMULS:
                counts[(eqn.primitive.name, str(eqn.invars[0].aval.dtype))] += 1
            for p in eqn.params.values():
                for sub in p if isinstance(p, (list, tuple)) else (p,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        visit(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        visit(sub)

    visit(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
    return counts
