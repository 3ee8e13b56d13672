"""FROM state, init and the two-phase train step (FROM lib/core/functions.py occ_train).

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

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxpapers import checkpoint, optim, rng
from jaxpapers.layers import precision
from jaxpapers.lib import margin_heads as mh
from jaxpapers.lib import occlusion as oc
from jaxpapers.methods.from_occlusion.inputs import normalize
from jaxpapers.methods.from_occlusion.model import build_head, build_net
from jaxpapers.methods.from_occlusion.occluders import occluders

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


def occluded_inputs(k_flip: jax.Array, k_occ: jax.Array, images: jax.Array, is_mask, config):
    """Flipped (p=0.5), then in phase 2 occluded, normalised images and their pattern labels.

    The flip comes before occlusion, as the official loader; in phase 1 every label is 0 (clean).
    """
    flip = jax.random.bernoulli(k_flip, 0.5, (images.shape[0],))[:, None, None, None]
    images = jnp.where(flip, images[:, :, ::-1], images)
    _, bank = occluders(config)
    patterns = oc.pattern_boxes(*config.data.image_size, config.occlusion.grid)
    occ, _, pat = oc.occlude_batch(k_occ, images, bank, config.occlusion.clean_ratio, patterns)
    images = jnp.where(is_mask, occ, images)
    return normalize(images), jnp.where(is_mask, pat, 0)


def train_step(state: FromState, batch: dict, *, config) -> tuple[FromState, dict]:
    key = rng.step_key(state)
    k_flip, k_occ, k_drop = jax.random.split(key, 3)
    k_drop = rng.fast_key(k_drop)
    labels = batch["label"]
    is_mask = state.step >= config.clean_steps
    x, pat = occluded_inputs(k_flip, k_occ, batch["image"], is_mask, config)
    net, head = build_net(config), build_head(config)
    lam = jnp.where(is_mask, config.loss.weight_pred, 0.0)

    def loss_fn(params):
        out, upd = precision.apply(
            net,
            {"params": params["net"], "batch_stats": state.batch_stats},
            x,
            dtype=precision.compute_dtype(config.model),
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
    new_state = apply_phase_updates(state, grads, aux["stats"], is_mask, config)
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


def apply_phase_updates(state: FromState, grads, stats, is_mask, config) -> FromState:
    """Advances the phase's optimizer (phase 1: mask branch frozen) and the baseline snapshot."""
    tx_clean, tx_mask = optim.make(config.optim.clean), optim.make(config.optim.mask)
    u_clean, opt_clean = tx_clean.update(grads, state.opt_clean, state.params)
    u_mask, opt_mask = tx_mask.update(grads, state.opt_mask, state.params)
    updates = _select(is_mask, u_mask, _freeze_mask_branch(u_clean))
    params = optax.apply_updates(state.params, updates)
    new_baseline = {"params": params["net"], "batch_stats": stats}
    return state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=stats,
        opt_clean=_select(is_mask, state.opt_clean, opt_clean),
        opt_mask=_select(is_mask, opt_mask, state.opt_mask),
        baseline=_select(is_mask, state.baseline, new_baseline),
    )


def load_init(state: FromState, tree: dict, config) -> FromState:
    """init_from a phase-1 (baseline) run: every weight except the OPP ('regress'), plus the
    classifier, as FROM's load_pretrained; the baseline snapshot is the loaded network."""
    del config
    if not isinstance(tree, dict) or "net" not in tree.get("params", {}):
        raise ValueError("init_from must point at a from_occlusion run (params/net missing).")
    net = {**tree["params"]["net"], "opp": state.params["net"]["opp"]}
    source = {
        "params": {"net": net, "cls": tree["params"].get("cls")},
        "batch_stats": tree.get("batch_stats"),
    }
    state = checkpoint.graft(state, source, ("params", "batch_stats"))
    return state.replace(baseline={"params": state.params["net"], "batch_stats": state.batch_stats})
