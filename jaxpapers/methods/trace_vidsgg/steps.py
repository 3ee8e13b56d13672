"""TRACE training (sampled multi-label BCE + 0.05 object CE) and Recall@K evaluation.

Loss (official reldn_heads.binary_prd_losses + fast_rcnn_rel._sample_pairs; notes §1.4): over
the (pair, predicate) entries of a frame, up to ``fg_per_frame`` (512) positive entries are kept
at random and negatives fill the rest up to fg_per_frame / fg_fraction (2048); the loss is the
mean BCE-with-logits over the kept entries of the batch. The refined object classifier adds
``obj_loss_weight`` (0.05) x CE. The stand-in detector classifier (synthetic benchmark only, the
real detector is frozen and pretrained) adds ``det_loss_weight`` x CE.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxpapers import optim, rng, state
from jaxpapers.methods.trace_vidsgg import backbones, formats, metrics, synthetic
from jaxpapers.methods.trace_vidsgg.model import TRACE


def build_model(config) -> TRACE:
    """The relation model; its config is frozen so the module is hashable (jit static arg)."""
    return TRACE(ml_collections.FrozenConfigDict(config.model))


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    b, m, d = config.batch_size, config.model, config.data
    if m.backbone != "precomputed" and (d.n_max != m.n_max or d.clip_len != m.clip_len):
        raise ValueError(
            f"data.n_max/clip_len ({d.n_max}, {d.clip_len}) must equal model.n_max/clip_len "
            f"({m.n_max}, {m.clip_len}) for the synthetic benchmark."
        )
    n, p = m.n_max, m.num_predicates
    spec = {
        "boxes": jax.ShapeDtypeStruct((b, n, 4), jnp.float32),
        "labels": jax.ShapeDtypeStruct((b, n), jnp.int32),
        "num_boxes": jax.ShapeDtypeStruct((b,), jnp.int32),
        "rels": jax.ShapeDtypeStruct((b, n, n, p), jnp.uint8),
    }
    if m.backbone in ("precomputed", "resnet"):  # the frozen detector's box features
        spec["obj_feat"] = jax.ShapeDtypeStruct((b, n, m.feat_dim), jnp.float32)
    if m.backbone == "precomputed":
        t = max(1, backbones.i3d_output_frames(m.clip_len))  # I3D slices of a clip_len clip
        spec["feat2d"] = jax.ShapeDtypeStruct((b, *d.feat2d_shape), jnp.float32)
        spec["feat3d"] = jax.ShapeDtypeStruct((b, t, *d.feat3d_shape), jnp.float32)
    else:
        hw = tuple(d.frame_shape) if d.get("frame_shape", (0, 0))[0] else (d.image_size,) * 2
        spec["frames"] = jax.ShapeDtypeStruct((b, m.clip_len, *hw, 3), jnp.uint8)
    return spec


@functools.lru_cache(maxsize=4)
def _source(
    data_cfg_json: str, backbone: str, split: str, n_max: int, feat_dim: int
) -> dict[str, np.ndarray]:
    cfg = ml_collections.ConfigDict(__import__("json").loads(data_cfg_json))
    if cfg.name == "precomputed" or backbone == "precomputed":
        return formats.load_precomputed(
            cfg.path,
            split,
            n_max,
            frames=backbone == "resnet",
            frame_shape=tuple(cfg.get("frame_shape", (0, 0))),
        )
    src = synthetic.make_frames(cfg, split)
    if backbone == "resnet":
        # The synthetic benchmark has no detector: zero box features (pipeline tests only).
        src["obj_feat"] = np.zeros(src["boxes"].shape[:2] + (feat_dim,), np.float32)
    return src


def make_source(config, split: str) -> dict[str, np.ndarray]:
    """Synthetic key frames (default) or key-frame files (paper presets, formats.py)."""
    m = config.model
    return _source(config.data.to_json(), m.backbone, split, m.n_max, m.feat_dim)


def freq_bias_init(
    rels: np.ndarray, labels: np.ndarray, num: np.ndarray, num_cls: int
) -> np.ndarray:
    """log(fg / (sum_p fg + 1e-8) + 1e-3) per (subject class, object class) (FrequencyBias)."""
    fg = np.zeros((num_cls, num_cls, rels.shape[-1]))
    for r, lab, k in zip(rels, labels, num, strict=False):
        np.add.at(fg, (lab[:k, None].repeat(k, 1), lab[None, :k].repeat(k, 0)), r[:k, :k])
    return np.log(fg / (fg.sum(2)[:, :, None] + 1e-8) + 1e-3).reshape(num_cls * num_cls, -1)


def init_state(key, config) -> state.TrainState:
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
    if config.model.backbone == "resnet":
        params.update(load_backbone_weights(config.model, params))
    if config.model.use_freq_bias and config.model.freq_bias_from_data:
        src = make_source(config, "train")
        params["freq_bias"] = jnp.asarray(
            freq_bias_init(
                src["rels"], src["labels"], src["num_boxes"], config.model.num_obj_classes
            ),
            jnp.float32,
        )
    if config.model.glove_path:
        vec = formats.load_class_vectors(
            config.model.glove_path, config.model.num_obj_classes, config.model.embed_dim
        )
        for name in ("embed_obj_det", "embed_s", "embed_o"):
            params[name] = jnp.asarray(vec)
    return state.TrainState.create(params, optim.make(config.optim), k_state)


def load_backbone_weights(m, params) -> dict:
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
    for name, tree in out.items():
        want = jax.tree.map(lambda a: (a.shape, a.dtype), params[name])
        got = jax.tree.map(lambda a: (a.shape, a.dtype), tree)
        if want != got:
            raise ValueError(f"Converted {name} does not match the model's parameter tree.")
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
    model = build_model(config)
    k_drop, k_sample = jax.random.split(rng.step_key(st))

    def loss_fn(params):
        out = model.apply({"params": params}, batch, train=True, rngs={"dropout": k_drop})
        return losses(out, batch, k_sample, config)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    st = st.apply_gradients(grads, optim.make(config.optim))
    return st, {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(params, batch, model):
    out = model.apply({"params": params}, batch, train=False)
    return {
        "rel": jax.nn.sigmoid(out["rel_logits"]),
        "obj": jax.nn.softmax(out["obj_logits"]),
        "lca": out["lca"],
        "parent": out["tree_parent"],
    }


def predict(st, config, src: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Eval-mode predictions for every frame of ``src`` (last batch padded and cut)."""
    model = build_model(config)
    total = len(src["num_boxes"])
    outs = []
    for i in range(0, total, batch_size):
        idx = np.arange(i, i + batch_size) % total
        outs.append(jax.device_get(_predict(st.params, {k: v[idx] for k, v in src.items()}, model)))
    return {k: np.concatenate([o[k] for o in outs])[:total] for k in outs[0]}


def frame_dicts(src, pred, mode: str) -> list[dict]:
    """Per-frame inputs of metrics.evaluate_frames (PredCls: GT labels, scores 1; SGCls: argmax)."""
    frames = []
    for i in range(len(src["num_boxes"])):
        k = int(src["num_boxes"][i])
        s, o = np.nonzero(~np.eye(k, dtype=bool))
        rel = src["rels"][i, :k, :k]
        gs, go, gp = np.nonzero(rel)
        if mode == "predcls":
            labels, scores = src["labels"][i, :k], np.ones(k)
        else:
            labels, scores = pred["obj"][i, :k].argmax(-1), pred["obj"][i, :k].max(-1)
        frames.append(
            dict(
                gt_boxes=src["boxes"][i, :k],
                gt_labels=src["labels"][i, :k],
                gt_rels=np.stack([gs, go, gp], 1),
                boxes=src["boxes"][i, :k],
                labels=labels,
                obj_scores=scores,
                pairs=np.stack([s, o], 1),
                pair_scores=pred["rel"][i, s, o],
            )
        )
    return frames


def evaluate(st, config, workdir: str) -> dict[str, float]:
    """R@K / mR@K with and without graph constraint on the test split."""
    src = make_source(config, "test")
    pred = predict(st, config, src, config.eval_batch_size)
    frames = frame_dicts(src, pred, config.model.mode)
    out = {}
    for tag, prd_k in (("with", 1), ("no", config.model.num_predicates)):
        res = metrics.evaluate_frames(frames, ks=tuple(config.eval_ks), prd_k=prd_k)
        out.update({f"{tag}_{k}": v for k, v in res.items()})
    if workdir and config.save_pictures:
        from jaxpapers.methods.trace_vidsgg import viz_graph

        viz_graph.save_examples(workdir, src, pred, config)
    return out
