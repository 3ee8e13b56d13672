"""SynFace job in one jitted step: generator phase, then recognition on synthetic (+ real) faces.

* phase 0, ``step < gen.steps``: one conditional StyleGAN2 iteration (G non-saturating loss on
  fakes of random training identities; D logistic loss; lazy R1 every ``d_reg_interval`` steps;
  G EMA) on the real training identities (``real_image``/``real_label``). Whether a step runs the
  lazy R1 is part of the static phase (`Phase`), so no convolution sits inside a ``lax.cond``.
* phase 1: the recogniser (LResNet-E-IR + ArcFace s=30, m=0.5) on the synthetic rows of the batch,
  whose images are generated from the frozen EMA generator inside the step (`synthesis.generate`:
  the row's image is a deterministic function of the row, the same pixels the builder stores),
  with IM soft labels and, when ``dm.enabled``, domain mixup with the real images: one psi per
  batch from the grid, pixel mixing, real labels offset by ``synth.num_ids``, margin-then-mix
  logits and the official loss (`losses`).
The phase is a function of the global step (`phase`), chosen on the host by the trainer, which
compiles each phase once (``trainer.StepFunction``; a ``lax.cond`` on ``state.step`` made the
convolutions far slower on XLA:CPU); checkpoints resume either phase.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import batching, checkpoint, optim, parallel, rng
from jaxpapers.layers import face_backbones as fb
from jaxpapers.layers import precision
from jaxpapers.lib import gan
from jaxpapers.lib import margin_heads as mh
from jaxpapers.methods.synface import losses, synthesis
from jaxpapers.methods.synface import model as M


@flax.struct.dataclass
class GenState:
    g: Any
    d: Any
    g_ema: Any
    g_opt: Any
    d_opt: Any
    r1_last: jax.Array


@flax.struct.dataclass
class RecState:
    params: Any  # {'net': recogniser, 'cls': MarginHead centres}
    batch_stats: Any
    opt: Any


@flax.struct.dataclass
class SynFaceState:
    step: jax.Array
    rng: jax.Array
    gen: GenState
    rec: RecState

    @property
    def params(self):
        """All trainable parameters (for generic checks)."""
        return {"gen": {"g": self.gen.g, "d": self.gen.d}, "rec": self.rec.params}


def num_classes(config) -> int:
    """Synthetic identities, plus the real ones (offset after them) under domain mixup."""
    return int(config.synth.num_ids) + (int(config.data.n_train_ids) if config.dm.enabled else 0)


def build_net(config) -> fb.FaceRecognitionNet:
    r = config.rec
    return fb.lresnet50e_ir(
        widths=tuple(r.widths),
        depths=tuple(r.depths),
        embed_dim=r.embed_dim,
        dropout=r.dropout,
        flat_bn=False,
    )


def build_head(config) -> mh.MarginHead:
    r = config.rec
    return mh.MarginHead(num_classes(config), mh.make_margin(r.margin, r.scale, r.margin_m))


def check_phase_lengths(config) -> None:
    """The job is gen.steps GAN steps then rec_steps recogniser steps; num_train_steps and the
    recogniser milestones are derived from them in ``get_config``. ``--config.*`` flags land after
    that, so a phase length changed there would silently leave a stale total: refuse it."""
    total = int(config.gen.steps) + int(config.rec_steps)
    if int(config.num_train_steps) != total:
        raise ValueError(
            f"synface: num_train_steps={config.num_train_steps} but gen.steps ({config.gen.steps})"
            f" + rec_steps ({config.rec_steps}) = {total}. Give phase lengths in the preset string "
            "(e.g. --config=configs/synface.py:default,gen.steps=0,rec_steps=200) so the total "
            "and the recogniser milestones follow them."
        )


def init_state(key: jax.Array, config) -> SynFaceState:
    check_phase_lengths(config)
    kg, kd, kn, kr, kc, kdrop, ks = jax.random.split(key, 7)
    g_net, d_net = M.build_generator(config), M.build_discriminator(config)
    gc = config.gen
    g = g_net.init(
        {"params": rng.fast_key(kg), "noise": rng.fast_key(kn)},
        jnp.zeros((1, gc.z_dim)),
        jnp.zeros((1,), jnp.int32),
    )["params"]
    ng = max(1, gc.mbstd_group_size)
    d = d_net.init(
        rng.fast_key(kd),
        jnp.zeros((ng, gc.resolution, gc.resolution, gc.img_channels)),
        jnp.zeros((ng,), jnp.int32),
    )["params"]
    gen = GenState(
        g=g,
        d=d,
        g_ema=jax.tree.map(jnp.copy, g),
        g_opt=optim.make(config.optim.g).init(g),
        d_opt=optim.make(config.optim.d).init(d),
        r1_last=jnp.zeros(()),
    )
    net, head = build_net(config), build_head(config)
    r = gc.resolution
    v = net.init(
        {"params": rng.fast_key(kr), "dropout": rng.fast_key(kdrop)}, jnp.zeros((1, r, r, 3))
    )
    cls = head.init(
        rng.fast_key(kc), jnp.zeros((1, config.rec.embed_dim)), jnp.zeros((1,), jnp.int32)
    )["params"]
    params = {"net": v["params"], "cls": cls}
    rec = RecState(
        params=params, batch_stats=v["batch_stats"], opt=optim.make(config.optim.rec).init(params)
    )
    return SynFaceState(step=jnp.zeros((), jnp.int32), rng=ks, gen=gen, rec=rec)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 -> [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def to_rgb(x: jax.Array) -> jax.Array:
    return jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1], x)


def gan_update(
    gs: GenState,
    reals: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    local_step: jax.Array,
    config,
    do_r1: bool = False,
) -> tuple[GenState, dict]:
    """One conditional StyleGAN2 iteration (G main, D main, lazy R1 when ``do_r1``, EMA)."""
    g_net, d_net = M.build_generator(config), M.build_discriminator(config)
    gc, L = config.gen, config.gen_loss
    n = reals.shape[0]
    ids = int(config.data.n_train_ids)
    k = jax.random.split(key, 6)
    tx_g, tx_d = optim.make(config.optim.g), optim.make(config.optim.d)

    def fake(g_params, kz, kc, kn):
        z = jax.random.normal(kz, (n, gc.z_dim))
        c = jax.random.randint(kc, (n,), 0, ids)
        return g_net.apply({"params": g_params}, z, c, rngs={"noise": kn}), c

    def g_loss_fn(g_params):
        img, c = fake(g_params, k[0], k[1], k[2])
        return gan.g_nonsaturating(d_net.apply({"params": gs.d}, img, c))

    g_loss, grads = jax.value_and_grad(g_loss_fn)(gs.g)
    upd, g_opt = tx_g.update(grads, gs.g_opt, gs.g)
    g = optax.apply_updates(gs.g, upd)
    img_d, c_d = fake(g, k[3], k[4], k[5])
    img_d = jax.lax.stop_gradient(img_d)

    d, d_opt, dm = gan.d_update(
        lambda p, x: d_net.apply({"params": p}, x, labels),
        lambda p, x: d_net.apply({"params": p}, x, c_d),
        gs.d,
        gs.d_opt,
        tx_d,
        reals,
        img_d,
        L,
        do_r1=do_r1,
        r1_last=gs.r1_last,
    )
    d_loss, r1 = dm["d_loss"], dm["r1"]
    g_ema = optim.ema_update(gs.g_ema, g, gan.ema_beta(config.ema, config.batch_size, local_step))
    new = GenState(g=g, d=d, g_ema=g_ema, g_opt=g_opt, d_opt=d_opt, r1_last=r1)
    return new, {"g_loss": g_loss, "d_loss": d_loss, "r1": r1}


def rec_update(st: SynFaceState, batch: dict, key: jax.Array, config) -> tuple[RecState, dict]:
    """One SynFace recognition step (IM soft labels, optional DM; SynFace lib/core/functions.py)."""
    k_fs, k_fr, k_psi, k_perm, k_drop = jax.random.split(key, 5)
    rows = {kk: batch[kk] for kk in synthesis.PLAN_KEYS}
    codes = synthesis.identity_codes(st.gen.g_ema, config)
    syn = synthesis.generate(st.gen.g_ema, codes, rows, config)
    # Quantise as the stored (builder) images are, then the usual [-1, 1] normalisation.
    x_syn = random_flip(k_fs, to_rgb(to_float(synthesis.to_uint8(syn))))
    y_a, y_b, phi = batch["syn_id_a"], batch["syn_id_b"], batch["syn_phi"]
    if config.dm.enabled:
        # Official: an independent real loader -> pair each synthetic image with a random real one.
        perm = jax.random.permutation(k_perm, x_syn.shape[0])
        x_real = random_flip(k_fr, to_rgb(to_float(batch["real_image"][perm])))
        y_real = batch["real_label"][perm] + int(config.synth.num_ids)
        psi = losses.sample_from_grid(k_psi, (), float(config.synth.grid_step))
        x = losses.mix_pixels(x_syn, x_real, psi)
    else:
        x, y_real, psi = x_syn, None, jnp.ones(())
    t = losses.soft_targets(y_a, y_b, phi, y_real, psi, num_classes(config))
    net, head = build_net(config), build_head(config)

    def loss_fn(params):
        # Mixed precision (model.dtype, layers.precision): the recognition network only.
        emb, upd = precision.apply(
            net,
            {"params": params["net"], "batch_stats": st.rec.batch_stats},
            x,
            dtype=precision.compute_dtype(config.model),
            train=True,
            rngs={"dropout": rng.fast_key(k_drop)},
            mutable=["batch_stats"],
        )
        # margin_logits with the mixed target matrix == losses.mixed_logits (tested).
        logits, _ = head.apply({"params": params["cls"]}, emb, t)
        loss = losses.synface_loss(logits, y_a, y_b, phi, y_real, psi)
        return loss, (upd["batch_stats"], logits)

    (loss, (stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.rec.params)
    tx = optim.make(config.optim.rec)
    upd, opt = tx.update(grads, st.rec.opt, st.rec.params)
    params = optax.apply_updates(st.rec.params, upd)
    metrics = {
        "rec_loss": loss,
        "rec_acc": jnp.mean(jnp.argmax(logits, -1) == y_a),
        "psi": psi,
        "phi_mean": jnp.mean(phi),
    }
    return RecState(params=params, batch_stats=stats, opt=opt), metrics


METRIC_KEYS = ("g_loss", "d_loss", "r1", "rec_loss", "rec_acc", "psi", "phi_mean")


class Phase(NamedTuple):
    """The static part of a step, chosen on the host from the global step (`phase`)."""

    stage: int  # 0 generator (StyleGAN2) training, 1 recognition training.
    r1: bool  # This generator step runs the lazy R1 update (every d_reg_interval steps).


def phase(config, step: int) -> Phase:
    """Stage from ``gen.steps``; the lazy R1 in the generator steps ``0, d_reg_interval, ...``."""
    if step >= int(config.gen.steps):
        return Phase(1, False)
    L = config.gen_loss
    return Phase(0, bool(L.r1_gamma > 0 and step % int(L.d_reg_interval) == 0))


def train_step(
    state: SynFaceState, batch: dict, *, config, phase: Phase
) -> tuple[SynFaceState, dict]:
    stage, do_r1 = phase
    if stage not in (0, 1):
        raise ValueError(f"phase stage must be 0 or 1, got {stage!r}.")
    key = rng.step_key(state)
    k_aug, k_gan, k_rec = jax.random.split(key, 3)

    def full(m):
        return {k: jnp.asarray(m.get(k, 0.0), jnp.float32) for k in METRIC_KEYS}

    def gan_branch(st):
        reals = to_float(batch["real_image"])
        if config.gen_loss.mirror:
            reals = random_flip(k_aug, reals)
        gen, m = gan_update(
            st.gen, reals, batch["real_label"], k_gan, st.step, config, do_r1=bool(do_r1)
        )
        m = full(m)
        m["loss"] = m["g_loss"] + m["d_loss"]
        return st.replace(gen=gen), m

    def rec_branch(st):
        rec, m = rec_update(st, batch, k_rec, config)
        m = full(m)
        m["loss"] = m["rec_loss"]
        return st.replace(rec=rec), m

    state, metrics = gan_branch(state) if stage == 0 else rec_branch(state)
    metrics["phase"] = jnp.asarray(stage, jnp.float32)
    return state.replace(step=state.step + 1), metrics


def embed(variables: dict, images: np.ndarray, config, batch: int = 100) -> np.ndarray:
    """Eval-mode embeddings of uint8 faces (grey replicated to RGB), sharded over the devices of
    every process (``batching.map_batches``)."""
    net = build_net(config)
    fn = jax.jit(lambda v, x: net.apply(v, to_rgb(to_float(x)), train=False))
    return batching.map_batches(
        lambda x: fn(variables, x), images, batch_size=batch, mesh=parallel.make_mesh()
    )


def load_init(state: SynFaceState, tree, config) -> SynFaceState:
    """init_from an earlier synface run: its trained generator (gen.steps must be 0)."""
    if int(config.gen.steps) != 0:
        raise ValueError("init_from provides the generator: set --config.gen.steps=0.")
    if not isinstance(tree, dict) or "gen" not in tree:
        raise ValueError("init_from must point at a synface run (no 'gen' in its checkpoint).")
    gen = checkpoint.graft(state.gen, tree["gen"], ("g", "d", "g_ema"), source="init_from gen")
    return state.replace(gen=gen)
