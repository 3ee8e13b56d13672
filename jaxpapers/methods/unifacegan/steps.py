"""UniFaceGAN's jitted train step: dynamic sample selection, G update, D update.

One step (everything inside one jitted function, no host round-trips):

1. **Dynamic training-sample selection** (paper: one model learns swapping and reenactment by
   choosing per iteration whether a pair has a ground truth). Per sample, with probability
   ``p_self(step)`` the source is another frame of the *same* identity (self-reconstruction:
   the target frame is the ground truth); otherwise the source comes from another sample of the
   batch (cross-identity pair, no ground truth), used as a swap (canvas = target frame) or, with
   probability ``reenact_prob``, a reenactment (canvas = source image). Schedule (ours, the
   paper's is [unverified]): ``p_self = 1`` for ``select.warmup_steps``, then linear down to
   ``select.p_self_min`` over ``select.ramp_steps``.
2. Geometry of frames t and t+1: ``s R (I_src + E_tgt) + t`` (target pose/expression); the
   condition (``conditioning.condition``) and one generator pass over both frames (2B images).
3. Generator loss: hinge adversarial (all samples) + ``w.fm`` feature matching + ``w.rec`` L1
   (+ ``w.perceptual`` identity-net embedding distance) on samples with a ground truth +
   ``w.temporal`` 3D temporal loss (frames t, t+1 of video samples) + ``w.identity`` identity
   loss to the source (all samples; optional, needs the identity net).
4. Discriminator: hinge on (ground truth, condition) of samples with a ground truth vs
   (generated, condition) of all samples, with the pre-update generator's detached outputs.

The frozen identity network (identity/perceptual terms) is loaded or trained once on the host by
``prepare`` and carried in the state (``UniState.identity``; None when those terms are off).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxpapers import optim, rng
from jaxpapers.layers import precision
from jaxpapers.lib.face3d import topology
from jaxpapers.methods.unifacegan import conditioning, identity
from jaxpapers.methods.unifacegan import losses as L
from jaxpapers.methods.unifacegan import model as M


@flax.struct.dataclass
class UniState:
    step: jax.Array
    rng: jax.Array
    g: Any
    d: Any
    g_opt: Any
    d_opt: Any
    identity: Any  # frozen face_identity.IdentityModel, or None (identity terms off)


def make_nets(config) -> tuple[M.Generator, M.MultiScaleDiscriminator]:
    m = config.model
    g = M.Generator(m.g_base, m.n_down, m.n_res, m.max_ch, m.norm, m.hidden)
    d = M.MultiScaleDiscriminator(m.num_d, m.d_base, m.d_layers)
    return g, d


def prepare(config) -> dict:
    """Host, once: the frozen identity network when the identity/perceptual terms are on."""
    return {"identity": identity.load(config) if identity.enabled(config) else None}


def init_state(key: jax.Array, config, *, prepared: dict) -> UniState:
    """Random G/D parameters, fresh optimiser states and the prepared identity network."""
    g_net, d_net = make_nets(config)
    s = config.data.size
    cond = jnp.zeros((1, s, s, conditioning.COND_CHANNELS))
    mask = jnp.zeros((1, s, s, 1))
    kg, kd, kr = jax.random.split(key, 3)
    g = g_net.init(kg, cond, mask)["params"]
    d = d_net.init(kd, jnp.zeros((1, s, s, 3)), cond)["params"]
    return UniState(
        step=jnp.zeros((), jnp.int32),
        rng=kr,
        g=g,
        d=d,
        g_opt=optim.make(config.optim.g).init(g),
        d_opt=optim.make(config.optim.d).init(d),
        identity=prepared["identity"],
    )


def p_self(config, step: jax.Array) -> jax.Array:
    """Probability of a self-reconstruction pair at ``step`` (the selection schedule)."""
    sel = config.select
    frac = (step.astype(jnp.float32) - sel.warmup_steps) / max(1, sel.ramp_steps)
    return 1.0 - (1.0 - sel.p_self_min) * jnp.clip(frac, 0.0, 1.0)


def to_float(images: jax.Array) -> jax.Array:
    return images.astype(jnp.float32) / 127.5 - 1.0


def select_pairs(batch: dict, key: jax.Array, p: jax.Array, reenact_prob: float) -> dict:
    """Dynamic training-sample selection (module doc, item 1) -> the per-sample pair arrays."""
    b = batch["image"].shape[0]
    k1, k2 = jax.random.split(key)
    self_pair = jax.random.bernoulli(k1, p, (b,))
    perm = jnp.roll(jnp.arange(b), 1)  # cross source: the neighbouring sample

    def pick(x):
        return jnp.where(self_pair.reshape((b,) + (1,) * (x.ndim - 1)), x, x[perm])

    same_id = self_pair | (batch["group"][perm] == batch["group"])
    reenact = (~self_pair) & jax.random.bernoulli(k2, reenact_prob, (b,))
    return {
        "src_image": pick(to_float(batch["ref_image"])),
        "src_verts": pick(batch["ref_verts"]),
        "src_identity": pick(batch["identity"]),
        "self_pair": self_pair,
        "has_gt": same_id & ~reenact,
        "reenact": reenact,
    }


def build_inputs(batch: dict, pairs: dict, config) -> dict:
    """Conditions of frames t and t+1 (stacked on the batch axis: [2B, ...]) + targets."""
    src_id = pairs["src_identity"]
    geo = []
    for sfx in ("", "_next"):
        canon = src_id + batch["expr" + sfx]
        geo.append(
            conditioning.pose_points(
                canon, batch["pose_s" + sfx], batch["pose_R" + sfx], batch["pose_t" + sfx]
            )
        )
    verts = jnp.concatenate(geo, 0)
    re = pairs["reenact"][:, None, None, None]
    canvas_t = jnp.where(re, pairs["src_image"], to_float(batch["image"]))
    canvas_n = jnp.where(re, pairs["src_image"], to_float(batch["image_next"]))
    re_v = pairs["reenact"][:, None, None]
    cverts_t = jnp.where(re_v, pairs["src_verts"], batch["verts"])
    cverts_n = jnp.where(re_v, pairs["src_verts"], batch["verts_next"])
    two = lambda x: jnp.concatenate([x, x], 0)  # noqa: E731
    cond, face, g = conditioning.condition(
        verts,
        two(src_id),
        jnp.concatenate([canvas_t, canvas_n], 0),
        jnp.concatenate([cverts_t, cverts_n], 0),
        two(pairs["src_image"]),
        two(pairs["src_verts"]),
        erase_scale=config.model.erase_scale,
        chunk=config.model.raster_chunk,
    )
    real = jnp.concatenate([to_float(batch["image"]), to_float(batch["image_next"])], 0)
    return {"cond": cond, "face": face, "raster": g["raster"], "verts": verts, "real": real}


def discriminate(d_net, d_params, fake, real, cond, dtype=jnp.float32):
    """One D pass over [fake; real] (half the ops of two passes) -> (fake outs, real outs).
    ``dtype``: compute dtype (``layers.precision``); the outputs are float32."""
    n = fake.shape[0]
    outs = precision.apply(
        d_net,
        {"params": d_params},
        jnp.concatenate([fake, real], 0),
        jnp.concatenate([cond, cond], 0),
        dtype=dtype,
    )
    split = lambda i: [[f[i * n : (i + 1) * n] for f in o] for o in outs]  # noqa: E731
    return split(0), split(1)


def generator_losses(g_params, d_params, inp, pairs, batch, config, id_model):
    """Total G loss and its terms for one batch (frames t and t+1 stacked)."""
    g_net, d_net = make_nets(config)
    w = config.loss
    b = batch["image"].shape[0]
    dtype = precision.compute_dtype(config.model)  # mixed precision: G and D compute dtype
    fake = precision.apply(g_net, {"params": g_params}, inp["cond"], inp["face"], dtype=dtype)
    d_fake, d_real = discriminate(d_net, d_params, fake, inp["real"], inp["cond"], dtype)
    d_real = jax.tree.map(jax.lax.stop_gradient, d_real)
    gt = jnp.concatenate([pairs["has_gt"], pairs["has_gt"]], 0).astype(jnp.float32)
    terms = {
        "g_adv": L.hinge_g([o[-1] for o in d_fake]),
        "g_fm": L.feature_matching(d_real, d_fake, gt),
        "g_rec": L.masked_l1(fake, inp["real"], gt),
    }
    faces = jnp.asarray(topology.triangles(), jnp.int32)
    r = inp["raster"]
    terms["g_temporal"] = L.temporal_loss(
        fake[:b],
        fake[b:],
        r.tri_id[:b],
        r.bary[:b],
        inp["verts"][b:],
        faces,
        r.depth[b:],
        weights=batch["has_next"],
        depth_tol=config.loss.depth_tol,
    )
    if id_model is not None:
        e_fake = id_model.embed(fake)
        e_real = jax.lax.stop_gradient(id_model.embed(inp["real"]))
        e_src = jax.lax.stop_gradient(id_model.embed(pairs["src_image"]))
        cos_real = jnp.sum(e_fake * e_real, -1)
        terms["g_perceptual"] = jnp.sum((1 - cos_real) * gt) / jnp.maximum(jnp.sum(gt), 1.0)
        terms["g_identity"] = jnp.mean(1 - jnp.sum(e_fake[:b] * e_src, -1))
    else:
        terms["g_perceptual"] = terms["g_identity"] = jnp.zeros(())
    total = (
        terms["g_adv"]
        + w.fm * terms["g_fm"]
        + w.rec * terms["g_rec"]
        + w.temporal * terms["g_temporal"]
        + w.perceptual * terms["g_perceptual"]
        + w.identity * terms["g_identity"]
    )
    return total, (terms, fake, d_real)


def train_step(state: UniState, batch: dict, *, config) -> tuple[UniState, dict]:
    key = rng.step_key(state)
    _, d_net = make_nets(config)
    tx_g, tx_d = optim.make(config.optim.g), optim.make(config.optim.d)
    p = p_self(config, state.step)
    pairs = select_pairs(batch, key, p, config.select.reenact_prob)
    inp = build_inputs(batch, pairs, config)
    id_model = state.identity

    grad_fn = jax.value_and_grad(generator_losses, has_aux=True)
    (g_total, (terms, fake, _)), g_grads = grad_fn(
        state.g, state.d, inp, pairs, batch, config, id_model
    )
    upd, g_opt = tx_g.update(g_grads, state.g_opt, state.g)
    g = optax.apply_updates(state.g, upd)

    fake = jax.lax.stop_gradient(fake)
    gt = jnp.concatenate([pairs["has_gt"], pairs["has_gt"]], 0).astype(jnp.float32)

    def d_loss_fn(d_params):
        fake_out, real_out = discriminate(
            d_net, d_params, fake, inp["real"], inp["cond"], precision.compute_dtype(config.model)
        )
        loss = 0.0
        for ro, fo in zip(real_out, fake_out, strict=True):
            per_real = jnp.mean(jax.nn.relu(1.0 - ro[-1]), axis=(1, 2, 3))
            loss += jnp.sum(per_real * gt) / jnp.maximum(jnp.sum(gt), 1.0)
            loss += jnp.mean(jax.nn.relu(1.0 + fo[-1]))
        return loss

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(state.d)
    upd, d_opt = tx_d.update(d_grads, state.d_opt, state.d)
    d = optax.apply_updates(state.d, upd)
    metrics = dict(terms)
    metrics.update(
        loss=g_total + d_loss,
        g_loss=g_total,
        d_loss=d_loss,
        p_self=p,
        frac_gt=jnp.mean(pairs["has_gt"].astype(jnp.float32)),
    )
    new = state.replace(step=state.step + 1, g=g, d=d, g_opt=g_opt, d_opt=d_opt)
    return new, metrics
