"""TRACE training (sampled multi-label BCE + 0.05 object CE) and Recall@K evaluation.

Loss (official reldn_heads.binary_prd_losses + fast_rcnn_rel._sample_pairs): over
the (pair, predicate) entries of a frame, up to ``fg_per_frame`` (512) positive entries are kept
at random and negatives fill the rest up to fg_per_frame / fg_fraction (2048); the loss is the
mean BCE-with-logits over the kept entries of the batch. The refined object classifier adds
``obj_loss_weight`` (0.05) x CE. The stand-in detector classifier (synthetic benchmark only, the
real detector is frozen and pretrained) adds ``det_loss_weight`` x CE.

Constants fitted to data or read from files (the frequency bias of the training split, official
backbone weights, GloVe class vectors) come from ``prepare`` (host, once) and enter the state
through ``init_state(..., prepared=...)``; ``init_state`` itself reads nothing.

Mixed precision (``model.dtype``, ``layers.precision``; README "Mixed precision"): the step
runs the model on a bfloat16 copy of the parameters (``model.F32_PARAMS`` kept float32);
the logits, the losses and the entry sampling are float32, and nothing that is sorted or ranked
(the HRTree, the sampled entries) depends on the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import optim, rng, state
from jaxpapers.layers import precision
from jaxpapers.methods.trace_vidsgg import backbones, formats
from jaxpapers.methods.trace_vidsgg.inputs import input_spec, make_source
from jaxpapers.methods.trace_vidsgg.model import F32_PARAMS, build_model


def freq_bias_init(
    rels: np.ndarray, labels: np.ndarray, num: np.ndarray, num_cls: int
) -> np.ndarray:
    """log(fg / (sum_p fg + 1e-8) + 1e-3) per (subject class, object class) (FrequencyBias)."""
    fg = np.zeros((num_cls, num_cls, rels.shape[-1]))
    for r, lab, k in zip(rels, labels, num, strict=False):
        np.add.at(fg, (lab[:k, None].repeat(k, 1), lab[None, :k].repeat(k, 0)), r[:k, :k])
    return np.log(fg / (fg.sum(2)[:, :, None] + 1e-8) + 1e-3).reshape(num_cls * num_cls, -1)


def prepare(config) -> dict:
    """Host, once: the parameter values that come from data or files (absent ones: not used).

    ``freq_bias``: log frequencies of the training split's (subject, object) -> predicate
    statistics; ``rel_body_2d`` / ``rel_body_3d``: converted official backbone checkpoints;
    ``class_vectors``: GloVe vectors of the object classes.
    """
    m, out = config.model, {}
    if m.use_freq_bias and m.freq_bias_from_data:
        src = make_source(config, "train")
        out["freq_bias"] = freq_bias_init(
            src["rels"], src["labels"], src["num_boxes"], m.num_obj_classes
        ).astype(np.float32)
    if m.backbone == "resnet":
        out.update(load_backbone_weights(m))
    if m.glove_path:
        out["class_vectors"] = formats.load_class_vectors(
            m.glove_path, m.num_obj_classes, m.embed_dim
        )
    return out


def init_state(key, config, *, prepared: dict) -> state.TrainState:
    """Random parameters with the ``prepare``d values in place (shapes checked)."""
    model = build_model(config)
    spec = input_spec(config)
    dummy = {k: jnp.zeros((1,) + s.shape[1:], s.dtype) for k, s in spec.items()}
    dummy["num_boxes"] = jnp.full((1,), 2, jnp.int32)
    if config.model.backbone == "resnet":  # no parameter depends on the frame size: init small
        dummy["frames"] = jnp.zeros((1, config.model.clip_len, 96, 96, 3), jnp.uint8)
    k_init, k_state = jax.random.split(key)
    # Parameters are drawn with the 'rbg' PRNG (XLA RngBitGenerator): the ~70 initialisers
    # compile in a fraction of the time threefry takes on CPU. Still a pure function of `key`.
    k_rbg = jax.random.wrap_key_data(jax.random.bits(k_init, (4,), jnp.uint32), impl="rbg")
    params = jax.jit(lambda k: model.init({"params": k}, dummy, train=False)["params"])(k_rbg)
    params = dict(params)
    given = dict(prepared)
    if "class_vectors" in given:
        vec = given.pop("class_vectors")
        given.update({name: vec for name in ("embed_obj_det", "embed_s", "embed_o")})
    for name, tree in given.items():
        _check_tree(name, params[name], tree)
        params[name] = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), params[name], tree)
    return state.TrainState.create(params, optim.make(config.optim), k_state)


def _check_tree(name: str, want, got) -> None:
    shapes = lambda t: jax.tree.map(lambda a: tuple(a.shape), t)  # noqa: E731
    if jax.tree.structure(want) != jax.tree.structure(got) or shapes(want) != shapes(got):
        raise ValueError(f"Prepared {name} does not match the model's parameter tree/shapes.")


def load_backbone_weights(m) -> dict:
    """Official ResNet-50 / I3D checkpoints (model.resnet2d_weights / i3d_weights) -> params."""
    from jaxpapers.methods.trace_vidsgg import convert

    out = {}
    stages, width = tuple(m.resnet_stages), m.resnet_width
    if m.resnet2d_weights:
        out["rel_body_2d"] = convert.load_resnet50_dc5(
            m.resnet2d_weights, stage_sizes=stages, width=width
        )
    if m.i3d_weights:
        module = backbones.I3DResNet(stage_sizes=stages, width=width)
        out["rel_body_3d"] = convert.load_i3d(m.i3d_weights, module=module)
    return out


def sample_entries(key, labels, valid, fg_max: int, total: int):
    """Random (pair, predicate) entries per frame: <= fg_max positives, negatives up to total."""
    b = labels.shape[0]
    lab = labels.reshape(b, -1).astype(bool)
    ok = jnp.broadcast_to(valid, labels.shape).reshape(b, -1)
    u = jax.random.uniform(key, lab.shape)
    pos, neg = ok & lab, ok & ~lab

    def rank(mask):  # rank of u among the entries in mask (others rank last)
        return jnp.argsort(jnp.argsort(jnp.where(mask, u, 2.0), axis=1), axis=1)

    keep_pos = pos & (rank(pos) < fg_max)
    n_neg = total - jnp.sum(keep_pos, axis=1, keepdims=True)
    keep_neg = neg & (rank(neg) < n_neg)
    return (keep_pos | keep_neg).reshape(labels.shape)


def losses(out, batch, key, config):
    m = config.model
    rels = batch["rels"].astype(jnp.float32)
    valid = out["pair_mask"][..., None]
    keep = sample_entries(key, rels, valid, m.fg_per_frame, int(m.fg_per_frame / m.fg_fraction))
    bce = optax.sigmoid_binary_cross_entropy(out["rel_logits"], rels)
    rel_loss = jnp.sum(jnp.where(keep, bce, 0.0)) / jnp.maximum(jnp.sum(keep), 1)
    n = batch["labels"].shape[1]
    box_ok = jnp.arange(n)[None, :] < batch["num_boxes"][:, None]

    def ce(logits):
        per_box = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
        return jnp.sum(jnp.where(box_ok, per_box, 0.0)) / jnp.maximum(jnp.sum(box_ok), 1)

    obj_loss, det_loss = ce(out["obj_logits"]), ce(out["det_logits"])
    loss = rel_loss + m.obj_loss_weight * obj_loss + m.det_loss_weight * det_loss
    acc = jnp.sum((jnp.argmax(out["obj_logits"], -1) == batch["labels"]) & box_ok) / jnp.maximum(
        jnp.sum(box_ok), 1
    )
    return loss, {
        "rel_loss": rel_loss,
        "obj_loss": obj_loss,
        "det_loss": det_loss,
        "obj_acc": acc,
        "entries": jnp.sum(keep).astype(jnp.float32),
    }


def train_step(st: state.TrainState, batch, *, config):
    dtype = precision.compute_dtype(config.model)
    model = build_model(config, dtype)
    k_drop, k_sample = jax.random.split(rng.step_key(st))

    def loss_fn(params):
        # The batch goes in by keyword, so precision.apply leaves it as it is: the boxes (tree,
        # RoIAlign) stay float32; the model casts its image/feature inputs to `dtype` itself.
        out = precision.apply(
            model,
            {"params": params},
            batch=batch,
            train=True,
            rngs={"dropout": k_drop},
            dtype=dtype,
            keep=F32_PARAMS,
        )
        return losses(out, batch, k_sample, config)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    st = st.apply_gradients(grads, optim.make(config.optim))
    return st, {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}
