"""StRA training: classification or re-ID (ID loss + diversity loss [+ triplet]); StRA train.py.

Loss = CE with label smoothing (torchreid ``CrossEntropyLoss``, eps 0.1 for re-ID)
     + ``config.div_weight`` * mean_b L_div(b) summed over StRA blocks   (weight UNVERIFIED)
     + ``config.triplet_weight`` * batch-hard triplet (margin ``config.triplet_margin``; optional).
The official recipe trains only the last stage, neck and classifier for the first ``fixbase_epochs``
epochs (torchreid ``fixbase_epoch``): here updates of all other parameters are zeroed while
``step < config.fixbase_steps``.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import optim, rng, state
from jaxpapers.layers import precision
from jaxpapers.lib import augment
from jaxpapers.methods.stra import convert
from jaxpapers.methods.stra.inputs import normalise
from jaxpapers.methods.stra.model import F32_PARAMS, build_model, total_diversity


def init_state(key, config) -> state.TrainState:
    k_init, k_state = jax.random.split(key)
    dummy = jnp.zeros((1, *config.data.image_shape), jnp.float32)
    variables = build_model(config).init(k_init, dummy, train=False)
    if config.model.pretrained_npz:
        variables = load_pretrained(variables, config.model.pretrained_npz)
    return state.TrainState.create(
        variables["params"], optim.make(config.optim), k_state, variables.get("batch_stats", {})
    )


def load_pretrained(variables, path: str) -> dict:
    """Copies name- and shape-matching tensors of a torch state_dict saved as .npz (e.g.
    torchvision's ImageNet ResNet-50) into ``variables``, as the official
    ``init_pretrained_weights`` does; everything else keeps its initialisation."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model.pretrained_npz={path!r} does not exist: save a torch state_dict with "
            "np.savez(path, **{k: v.numpy() for k, v in sd.items()}) or leave it empty."
        )
    with np.load(path) as f:
        state_dict = {k: f[k] for k in f.files}
    return convert.from_torch(state_dict, variables, strict=False)


def random_erase(key: jax.Array, x: jax.Array, prob: float) -> jax.Array:
    """torchreid RandomErasing (p, area 0.02-0.4 of the image, aspect 0.3-3.33), filled with 0
    (= the channel mean after normalisation), one rectangle per image, vectorised."""
    if prob <= 0:
        return x
    n, h, w, _ = x.shape
    ks = jax.random.split(key, 5)
    area = jax.random.uniform(ks[0], (n,), minval=0.02, maxval=0.4) * h * w
    aspect = jnp.exp(jax.random.uniform(ks[1], (n,), minval=jnp.log(0.3), maxval=jnp.log(1 / 0.3)))
    eh = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, h)
    ew = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, w)
    top = jnp.floor(jax.random.uniform(ks[2], (n,)) * (h - eh + 1))
    left = jnp.floor(jax.random.uniform(ks[3], (n,)) * (w - ew + 1))
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    box = (
        (rows >= top[:, None, None])
        & (rows < (top + eh)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + ew)[:, None, None])
    )
    apply = jax.random.bernoulli(ks[4], prob, (n, 1, 1))
    return jnp.where((box & apply)[..., None], 0.0, x)


def batch_hard_triplet(feat: jax.Array, labels: jax.Array, margin: float) -> jax.Array:
    """Batch-hard triplet loss (torchreid TripletLoss); anchors without a positive are skipped."""
    d = jnp.sqrt(jnp.maximum(jnp.sum((feat[:, None] - feat[None]) ** 2, -1), 1e-12))
    same = labels[:, None] == labels[None]
    eye = jnp.eye(len(labels), dtype=bool)
    pos = jnp.max(jnp.where(same & ~eye, d, -jnp.inf), axis=1)
    neg = jnp.min(jnp.where(same, jnp.inf, d), axis=1)
    valid = jnp.isfinite(pos) & jnp.isfinite(neg)
    per = jnp.where(valid, jax.nn.relu(pos - neg + margin), 0.0)
    return jnp.sum(per) / jnp.maximum(jnp.sum(valid), 1)


def _frozen_mask(params, config):
    """True for parameters NOT in ``config.open_layers`` (frozen during the fixbase phase)."""
    rx = re.compile(config.open_layers)
    return jax.tree_util.tree_map_with_path(lambda p, _: not rx.match(optim.param_path(p)), params)


def train_step(st: state.TrainState, batch, *, config):
    model = build_model(config)
    k_aug, k_erase = jax.random.split(rng.step_key(st))
    x = augment.crop_flip(
        k_aug, normalise(batch["image"], config), config.data.crop_pad, config.data.flip
    )
    x = random_erase(k_erase, x, config.data.erase_prob)
    labels = batch["label"]

    def loss_fn(params):
        (logits, feat), upd = precision.apply(
            model,
            {"params": params, "batch_stats": st.batch_stats},
            x,
            dtype=precision.compute_dtype(config.model),
            keep=F32_PARAMS,
            train=True,
            mutable=["batch_stats", "losses"],
        )
        targets = optax.smooth_labels(
            jax.nn.one_hot(labels, config.model.num_classes), config.label_smoothing
        )
        ce = jnp.mean(optax.softmax_cross_entropy(logits, targets))
        div = jnp.mean(total_diversity(upd.get("losses"), x.shape[0]))
        loss = ce + config.div_weight * div
        trip = jnp.zeros(())
        if config.triplet_weight > 0:
            trip = batch_hard_triplet(feat, labels, config.triplet_margin)
            loss = loss + config.triplet_weight * trip
        return loss, (logits, upd["batch_stats"], ce, div, trip)

    (loss, (logits, stats, ce, div, trip)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        st.params
    )
    tx = optim.make(config.optim)
    updates, opt_state = tx.update(grads, st.opt_state, st.params)
    if config.fixbase_steps > 0:
        frozen = st.step < config.fixbase_steps
        updates = jax.tree.map(
            lambda u, f: jnp.where(frozen & f, 0.0, u), updates, _frozen_mask(updates, config)
        )
    st = st.replace(
        step=st.step + 1,
        params=optax.apply_updates(st.params, updates),
        opt_state=opt_state,
        batch_stats=stats,
    )
    acc = jnp.mean(jnp.argmax(logits, -1) == labels)
    return st, {
        "loss": loss,
        "ce": ce,
        "diversity": div,
        "triplet": trip,
        "accuracy": acc,
        "grad_norm": optax.tree.norm(grads),
    }
