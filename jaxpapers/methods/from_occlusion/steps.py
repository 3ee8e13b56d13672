"""FROM state, init and the two-phase train step (notes §1.3-§1.5; FROM lib/core/functions.py).

Phase 1 ('Clean' mode, steps < config.clean_steps): the baseline.  L = CE(CosFace(emb)) on the
unmasked embedding of clean (flipped) images; the mask branch (FPN, decoder, OPP) is not trained
(PyTorch's SGD skips parameters without gradients, so their updates are zeroed here too).
Phase 2 ('Mask' mode): FROM fine-tuned from phase 1 with a fresh optimizer (lr 0.01):
each image is clean w.p. 1/clean_ratio, else occluded on device; L = CE(CosFace(emb_masked)) +
lambda * CE(OPP logits, max-IoU pattern label), lambda = 1 (start.sh; the yaml's 10 is overridden).

One jitted step serves both phases: the phase is a traced flag (state.step >= clean_steps) that
selects the embedding, the loss weight and which optimizer's update/state advances, so the step
compiles once.  The baseline network (params + BN statistics) is snapshotted every phase-1 step
and frozen in phase 2, so `evaluate` can compare baseline vs FROM from one run.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import optim, rng
from jaxpapers.lib import margin_heads as mh
from jaxpapers.lib import occlusion as oc
from jaxpapers.methods.from_occlusion.model import FROMNet

MASK_BRANCH = ("fpn", "mask_decoder", "opp")  # submodules not trained in phase 1


@flax.struct.dataclass
class FromState:
    step: jax.Array
    params: Any  # {'net': FROMNet params, 'cls': MarginHead params}
    batch_stats: Any
    opt_clean: Any
    opt_mask: Any
    baseline: Any  # {'params': net params, 'batch_stats': ...} at the end of phase 1
    rng: jax.Array


def build_net(config) -> FROMNet:
    m = config.model
    return FROMNet(
        widths=tuple(m.widths),
        depths=tuple(m.depths),
        embed_dim=m.embed_dim,
        dropout=m.dropout,
        fpn_features=m.fpn_features,
        num_patterns=oc.num_patterns(config.occlusion.grid),
        variant=m.variant,
        dtype=jnp.bfloat16 if m.bf16 else None,
    )


def build_head(config) -> mh.MarginHead:
    m = config.model
    margin = mh.make_margin(m.margin, m.scale, m.margin_m)
    return mh.MarginHead(m.num_classes, margin)


@functools.lru_cache(maxsize=4)
def _bank(folder: str, hw: tuple[int, int], seed: int, variants: int, grayscale: bool):
    occs = (
        oc.load_occluders(folder, grayscale)
        if folder
        else oc.procedural_occluders(seed, variants, hw, grayscale)
    )
    return occs, oc.build_bank(occs, hw)


def occluders(config):
    """(occluder list, device bank) for the config: a folder of real occluders, else procedural."""
    o = config.occlusion
    return _bank(
        o.folder,
        tuple(config.data.image_size),
        int(o.seed),
        int(o.variants),
        bool(config.data.grayscale),
    )


def normalize(images: jax.Array) -> jax.Array:
    """uint8 -> [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def _select(flag, a, b):
    return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _freeze_mask_branch(updates):
    def leaf(path, u):
        name = optim.param_path(path)
        return jnp.zeros_like(u) if any(f"net/{b}/" in name + "/" for b in MASK_BRANCH) else u

    return jax.tree_util.tree_map_with_path(leaf, updates)


def init_state(key: jax.Array, config) -> FromState:
    k_net, k_cls, k_drop, k_state = jax.random.split(key, 4)
    k_net, k_cls, k_drop = rng.fast_key(k_net), rng.fast_key(k_cls), rng.fast_key(k_drop)
    h, w = config.data.image_size
    net, head = build_net(config), build_head(config)
    v = net.init({"params": k_net, "dropout": k_drop}, jnp.zeros((1, h, w, 3)), train=False)
    cls = head.init(k_cls, jnp.zeros((1, config.model.embed_dim)), jnp.zeros((1,), jnp.int32))
    params = {"net": v["params"], "cls": cls["params"]}
    return FromState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=v["batch_stats"],
        opt_clean=optim.make(config.optim.clean).init(params),
        opt_mask=optim.make(config.optim.mask).init(params),
        baseline={"params": v["params"], "batch_stats": v["batch_stats"]},
        rng=k_state,
    )


def train_step(state: FromState, batch: dict, *, config) -> tuple[FromState, dict]:
    key = rng.step_key(state)
    k_flip, k_occ, k_drop = jax.random.split(key, 3)
    k_drop = rng.fast_key(k_drop)
    images, labels = batch["image"], batch["label"]
    n = images.shape[0]
    is_mask = state.step >= config.clean_steps

    # Random horizontal flip (p=0.5) before occlusion, as the official loader.
    flip = jax.random.bernoulli(k_flip, 0.5, (n,))[:, None, None, None]
    images = jnp.where(flip, images[:, :, ::-1], images)
    _, bank = occluders(config)
    patterns = oc.pattern_boxes(*config.data.image_size, config.occlusion.grid)
    occ, boxes, pat = oc.occlude_batch(k_occ, images, bank, config.occlusion.clean_ratio, patterns)
    images = jnp.where(is_mask, occ, images)
    pat = jnp.where(is_mask, pat, 0)
    x = normalize(images)
    net, head = build_net(config), build_head(config)
    lam = jnp.where(is_mask, config.loss.weight_pred, 0.0)

    def loss_fn(params):
        out, upd = net.apply(
            {"params": params["net"], "batch_stats": state.batch_stats},
            x,
            train=True,
            rngs={"dropout": k_drop},
            mutable=["batch_stats"],
        )
        emb = jnp.where(is_mask, out["emb_masked"], out["emb"])
        logits, _ = head.apply({"params": params["cls"]}, emb, labels)
        loss_cls = mh.softmax_cross_entropy(logits, labels)
        loss_pred = optax.softmax_cross_entropy_with_integer_labels(
            out["pattern_logits"], pat
        ).mean()
        aux = dict(
            stats=upd["batch_stats"],
            logits=logits,
            loss_cls=loss_cls,
            loss_pred=loss_pred,
            pat_logits=out["pattern_logits"],
        )
        return loss_cls + lam * loss_pred, aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    tx_clean, tx_mask = optim.make(config.optim.clean), optim.make(config.optim.mask)
    u_clean, opt_clean = tx_clean.update(grads, state.opt_clean, state.params)
    u_mask, opt_mask = tx_mask.update(grads, state.opt_mask, state.params)
    updates = _select(is_mask, u_mask, _freeze_mask_branch(u_clean))
    params = optax.apply_updates(state.params, updates)
    new_baseline = {"params": params["net"], "batch_stats": aux["stats"]}
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=aux["stats"],
        opt_clean=_select(is_mask, state.opt_clean, opt_clean),
        opt_mask=_select(is_mask, opt_mask, state.opt_mask),
        baseline=_select(is_mask, state.baseline, new_baseline),
    )
    metrics = dict(
        loss=loss,
        loss_cls=aux["loss_cls"],
        loss_pred=aux["loss_pred"],
        acc=jnp.mean(jnp.argmax(aux["logits"], -1) == labels),
        pattern_acc=jnp.mean(jnp.argmax(aux["pat_logits"], -1) == pat),
        occluded=jnp.mean((pat > 0).astype(jnp.float32)),
        phase=is_mask.astype(jnp.float32) + 1.0,
    )
    return new_state, metrics


def load_init(state: FromState, tree: dict, config) -> FromState:
    """init_from a phase-1 (baseline) run: every weight except the OPP ('regress'), plus the
    classifier, as FROM's load_pretrained; the baseline snapshot is the loaded network."""
    del config
    if "params" not in tree or "net" not in tree["params"]:
        raise ValueError("init_from must point at a from_occlusion run (params/net missing).")
    src_net = tree["params"]["net"]
    net = dict(src_net)
    net["opp"] = state.params["net"]["opp"]
    params = {"net": net, "cls": tree["params"]["cls"]}
    params = jax.tree.map(
        lambda a, b: jnp.asarray(b, a.dtype).reshape(a.shape), state.params, params
    )
    stats = jax.tree.map(
        lambda a, b: jnp.asarray(b, a.dtype), state.batch_stats, tree["batch_stats"]
    )
    return state.replace(
        params=params, batch_stats=stats, baseline={"params": params["net"], "batch_stats": stats}
    )


def embed(variables: dict, images: np.ndarray, config, masked: bool, batch: int = 64):
    """Embeddings (and masks, pattern logits) of uint8 images in eval mode, batched on host."""
    net = build_net(config)
    fn = _embed_fn(net)
    outs = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        o = jax.device_get(fn(variables, jnp.asarray(chunk)))
        outs.append({k: v[: batch - pad] for k, v in o.items()})
    cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    cat["embedding"] = cat["emb_masked"] if masked else cat["emb"]
    return cat


@functools.lru_cache(maxsize=8)
def _embed_fn(net: FROMNet):
    return jax.jit(lambda v, x: net.apply(v, normalize(x), train=False))
