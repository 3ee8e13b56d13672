"""One jitted train step for the BigGAN DGL-GAN job: teacher -> student stage 1 -> stage 2.

The phase is a function of the global step (`phase`), chosen on the host by the trainer, which
compiles each phase once (``trainer.StepFunction``; a ``lax.cond`` on ``state.step`` made every
convolution ~50x slower on XLA:CPU):

* phase 0, ``step < teacher.steps``: train the teacher BigGAN (G_T, D_T).
* phase 1, next ``student.stage1_steps``: the student (G at ``g_ch / g_divisor``) with lam = 0.
* phase 2, until ``num_train_steps``: the student G loss gains ``-lam * E D_T(G_S(z, y), y)``
  (``loss_hinge_genDual``); D_T's params are never written. Its spectral-norm ``u`` vectors keep
  iterating when ``student.teacher_sn_update`` (the official code leaves D_bar in train mode).

One iteration follows BigGAN-PyTorch ``train_fns.GAN_training_function``: ``num_d_steps`` D
steps (a ``lax.scan``; each on its own slice of the real batch, fresh z and uniform fake labels,
G run in train mode so its BN stats and SN vectors update, D run once on [fake; real]), then one
G step, then the G EMA (decay 0 before ``gan.ema_start``, over params and buffers as
``utils.ema`` does).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxpapers import optim, rng
from jaxpapers.layers import precision
from jaxpapers.lib import dgl
from jaxpapers.methods.biggan_dgl import losses, model
from jaxpapers.methods.biggan_dgl.model import make_nets

G_COLS = ("batch_stats", "spectral")
D_COLS = ("spectral",)


def phase(config, step: int) -> int:
    """The DGL stage of global step ``step`` (0 teacher, 1 student stage 1, 2 stage 2)."""
    return dgl.stage(config, step)


@flax.struct.dataclass
class GanState:
    """One BigGAN: params, mutable collections (BN stats, SN vectors), EMA G, Adam states."""

    g: Any
    g_vars: Any  # {'batch_stats': ..., 'spectral': ...}
    d: Any
    d_vars: Any  # {'spectral': ...}
    g_ema: Any
    g_ema_vars: Any
    g_opt: Any
    d_opt: Any


DGLState = dgl.DGLState  # (step, rng, teacher: GanState, student: GanState)


def d_batch(config) -> int:
    """Real images per D step: the step's batch is split over the ``num_d_steps`` D steps."""
    n = int(config.gan.num_d_steps)
    if n < 1 or config.batch_size % n:
        raise ValueError(
            f"batch_size={config.batch_size} must be a multiple of "
            f"gan.num_d_steps={n} (each D step takes its own slice of reals)."
        )
    return config.batch_size // n


def g_batch(config) -> int:
    return int(config.gan.g_batch_size) or d_batch(config)


def init_gan(key: jax.Array, config, role: str) -> GanState:
    g_net, d_net = make_nets(config, role)
    m = config.model
    kg, kd = jax.random.split(key)
    y = jnp.zeros((2,), jnp.int32)
    gv = g_net.init(kg, jnp.zeros((2, m.dim_z)), y, train=True)
    x = jnp.zeros((2, m.resolution, m.resolution, m.img_channels))
    dv = d_net.init(kd, x, y, train=True)
    g, g_vars = gv["params"], {c: gv[c] for c in G_COLS}
    d, d_vars = dv["params"], {c: dv[c] for c in D_COLS}
    return GanState(
        g=g,
        g_vars=g_vars,
        d=d,
        d_vars=d_vars,
        g_ema=jax.tree.map(jnp.copy, g),
        g_ema_vars=jax.tree.map(jnp.copy, g_vars),
        g_opt=optim.make(config.optim.g).init(g),
        d_opt=optim.make(config.optim.d).init(d),
    )


def init_state(key: jax.Array, config) -> DGLState:
    return dgl.init_job(key, config, init_gan)


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 NHWC -> float32 in [-1, 1] (BigGAN-PyTorch normalises with mean 0.5, std 0.5)."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def sample_zy(key: jax.Array, n: int, config) -> tuple[jax.Array, jax.Array]:
    """z ~ N(0, I) and uniform class labels (``utils.prepare_z_y``)."""
    kz, ky = jax.random.split(key)
    z = jax.random.normal(kz, (n, config.model.dim_z))
    return z, jax.random.randint(ky, (n,), 0, config.model.num_classes)


def gan_update(
    gs: GanState, reals, labels, key, itr, config, role, teacher=None, lam=0.0, teacher_on=False
):
    """One BigGAN iteration of one GAN. Returns (GanState, teacher d_vars or None, metrics).

    ``teacher_on`` (static): add the frozen teacher D term (stage 2); stage 1 does not run D_T.
    """
    g_net, d_net = make_nets(config, role)
    tx_g, tx_d = optim.make(config.optim.g), optim.make(config.optim.d)
    n_d, per = int(config.gan.num_d_steps), d_batch(config)
    k_d, k_g = jax.random.split(key)
    # Mixed precision (layers.precision): bf16 compute, float32 params/statistics/outputs.
    dtype = precision.compute_dtype(config.model)
    apply_g = functools.partial(
        precision.apply,
        g_net,
        dtype=dtype,
        keep=model.G_F32_PARAMS,
        train=True,
        mutable=list(G_COLS),
    )

    def apply_d(net, variables, x, y, train=True):
        return precision.apply(
            net,
            variables,
            x,
            y,
            dtype=dtype,
            keep=model.D_F32_PARAMS,
            train=train,
            mutable=list(D_COLS),
        )

    xs = (
        reals.reshape(n_d, per, *reals.shape[1:]),
        labels.reshape(n_d, per),
        jax.random.split(k_d, n_d),
    )

    def d_step(carry, inp):
        g_vars, d, d_vars, d_opt = carry
        x, y_real, k = inp
        z, y_fake = sample_zy(k, per, config)
        fake, g_vars = apply_g({"params": gs.g, **g_vars}, z, y_fake)
        fake = jax.lax.stop_gradient(fake)

        def loss_fn(dp):
            out, new_dv = apply_d(
                d_net,
                {"params": dp, **d_vars},
                jnp.concatenate([fake, x]),
                jnp.concatenate([y_fake, y_real]),
            )
            d_fake, d_real = out[:per], out[per:]
            l_real, l_fake = losses.hinge_d(d_real, d_fake)
            total = l_real + l_fake
            if config.gan.d_ortho > 0:
                total = total + losses.ortho_penalty(dp, config.gan.d_ortho, exclude=())
            return total, (new_dv, l_real, l_fake)

        (_, (d_vars, l_real, l_fake)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d)
        upd, d_opt = tx_d.update(grads, d_opt, d)
        return (g_vars, optax.apply_updates(d, upd), d_vars, d_opt), (l_real, l_fake)

    carry = (gs.g_vars, gs.d, gs.d_vars, gs.d_opt)
    # Unrolled (num_d_steps is 1-4): XLA:CPU runs convolutions inside a while loop far slower
    # than the same ops unrolled (jaxlib 0.10.2, default preset: 56 s vs 1.35 s per teacher
    # iteration); on GPU/TPU unrolling only costs compile time.
    (g_vars, d, d_vars, d_opt), (l_real, l_fake) = jax.lax.scan(d_step, carry, xs, unroll=True)

    z, y = sample_zy(k_g, g_batch(config), config)
    t_net = make_nets(config, "teacher")[1] if teacher is not None else None
    t_update = bool(config.student.teacher_sn_update)

    def g_loss_fn(gp):
        fake, new_gv = apply_g({"params": gp, **g_vars}, z, y)
        logits, new_dv = apply_d(d_net, {"params": d, **d_vars}, fake, y)
        t_logits, t_vars = None, None
        if t_net is not None and teacher_on:
            t_logits, t_vars = apply_d(
                t_net, {"params": teacher.d, **teacher.d_vars}, fake, y, train=t_update
            )
        total, term = dgl.generator_loss(losses.hinge_g, logits, t_logits, lam)
        g_main = losses.hinge_g(logits)
        if config.gan.g_ortho > 0:
            total = total + losses.ortho_penalty(gp, config.gan.g_ortho)
        return total, (new_gv, new_dv, t_vars, g_main, term)

    (g_total, (g_vars, d_vars, t_vars, g_main, term)), grads = jax.value_and_grad(
        g_loss_fn, has_aux=True
    )(gs.g)
    upd, g_opt = tx_g.update(grads, gs.g_opt, gs.g)
    g = optax.apply_updates(gs.g, upd)

    # utils.ema: decay 0 (a copy) before ema_start, over params and buffers alike, once per G
    # update (with optim.accum_steps = k: on the k-th micro-step, when the update is applied).
    decay = jnp.where(itr < config.gan.ema_start, 0.0, config.gan.ema_decay)
    decay = jnp.where(optim.applied(g_opt), decay, 1.0)
    g_ema = optim.ema_update(gs.g_ema, g, decay)
    g_ema_vars = optim.ema_update(gs.g_ema_vars, g_vars, decay)
    new = GanState(
        g=g,
        g_vars=g_vars,
        d=d,
        d_vars=d_vars,
        g_ema=g_ema,
        g_ema_vars=g_ema_vars,
        g_opt=g_opt,
        d_opt=d_opt,
    )
    d_loss = jnp.mean(l_real + l_fake)
    metrics = {
        "loss": g_total + d_loss,
        "g_loss": g_main,
        "d_loss": d_loss,
        "d_loss_real": jnp.mean(l_real),
        "d_loss_fake": jnp.mean(l_fake),
        "teacher_term": term,
    }
    return new, t_vars, metrics


def train_step(state: DGLState, batch: dict, *, config, phase: int) -> tuple[DGLState, dict]:
    """The job's train step for one (static) phase; see the module doc."""
    dgl.check_stage(phase)
    key = rng.step_key(state)
    reals, labels = preprocess(batch["image"]), batch["label"].astype(jnp.int32)
    if phase == 0:
        t, _, metrics = gan_update(
            state.teacher, reals, labels, key, state.step + 1, config, "teacher"
        )
        state = state.replace(teacher=t)
    else:
        on = phase == 2
        s, t_vars, metrics = gan_update(
            state.student,
            reals,
            labels,
            key,
            dgl.local_step(config, phase, state.step) + 1,
            config,
            "student",
            teacher=state.teacher,
            lam=config.student.lam if on else 0.0,
            teacher_on=on,
        )
        if on:
            state = state.replace(teacher=state.teacher.replace(d_vars=t_vars))
        state = state.replace(student=s)
    metrics = dict(metrics, phase=jnp.asarray(phase, jnp.int32))
    return state.replace(step=state.step + 1), metrics


def load_init(state: DGLState, tree, config) -> DGLState:
    """Teacher from ``init_from``: a checkpoint of this job (its ``teacher`` sub-state) or
    BigGAN-PyTorch weights converted by ``python -m jaxpapers.tools.convert_biggan``."""
    names = ("g", "g_vars", "d", "d_vars", "g_ema", "g_ema_vars")
    return dgl.load_teacher(state, tree, config, names)
