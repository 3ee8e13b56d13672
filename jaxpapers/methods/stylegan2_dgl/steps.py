"""One jitted train step for the whole DGL-GAN job: teacher -> student stage 1 -> stage 2.

The phase is a function of the global step (`phase`; boundaries from the config), chosen on the
host by the trainer, which compiles each phase once (``trainer.StepFunction``: a ``lax.cond`` on
``state.step`` around the whole update made every convolution far slower on XLA:CPU); every stage
resumes from a checkpoint:

* phase 0, ``step < teacher.steps``: train the teacher StyleGAN2 (G_T, D_T).
* phase 1, next ``student.stage1_steps``: train the narrow student (G_S, D_S) with alpha = 0.
* phase 2, until ``num_train_steps``: the same student with ``alpha * softplus(-D_T(G_S(z)))``
  added to its G loss; D_T is read, never written (its params pass through unchanged).

One GAN update follows the official iteration (NVlabs/stylegan2 training_loop: G main, G reg,
D main, D reg, then the G EMA): lazy path-length every ``g_reg_interval`` and lazy R1 every
``d_reg_interval`` local steps as separate optimizer updates sharing the Adam moments (as in
stylegan2-ada-pytorch, whose phases share one optimizer). Whether a step runs them is part of the
static phase (`Phase`), so each of the (at most four) variants per stage is its own executable and
no convolution sits inside a ``lax.cond`` (XLA:CPU runs those far slower; the lazy R1 phase went
from 0.018x the official PyTorch speed to top-level speed, see the README).

Mixed precision (``model.dtype``, ``layers.precision``): G's synthesis and every D (the GAN's own,
the frozen teacher's in stage 2, R1's) run under ``precision.apply`` with the float32 parameter
patterns of ``model.f32_params`` (the official ``num_fp16_res`` layout); the mapping network runs
in float32 as officially; losses, logits, R1 and path-length penalties are float32.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import optim, rng
from jaxpapers.layers import precision
from jaxpapers.layers import stylegan2 as sg
from jaxpapers.lib import dgl, gan
from jaxpapers.methods.stylegan2_dgl.model import f32_params, make_nets, w_dim


class Phase(NamedTuple):
    """The static part of a step, chosen on the host from the global step (`phase`)."""

    stage: int  # 0 teacher, 1 student stage 1, 2 student stage 2 (teacher term on).
    pl: bool  # This step runs the lazy path-length update (every g_reg_interval local steps).
    r1: bool  # This step runs the lazy R1 update (every d_reg_interval local steps).


def phase(config, step: int) -> Phase:
    """Stage from the DGL schedule; lazy regularizers counted in the stage's own local steps."""
    stage = dgl.stage(config, step)
    local = dgl.local_step(config, stage, step)
    L = config.loss
    pl = L.pl_weight > 0 and local % L.g_reg_interval == 0
    r1 = L.r1_gamma > 0 and local % L.d_reg_interval == 0
    return Phase(stage, bool(pl), bool(r1))


@flax.struct.dataclass
class GanState:
    """One StyleGAN2: params, EMA generator, Adam states and the tracked statistics."""

    g: Any
    d: Any
    g_ema: Any
    g_opt: Any
    d_opt: Any
    w_avg: jax.Array  # Tracked mean of w (decay w_avg_beta), shared by G and its EMA.
    pl_mean: jax.Array  # Running mean of path lengths.
    r1_last: jax.Array  # Last R1 penalty (logging only; R1 runs every d_reg_interval steps).
    pl_last: jax.Array  # Last path-length penalty (logging only).


DGLState = dgl.DGLState  # (step, rng, teacher: GanState, student: GanState)


def init_gan(key: jax.Array, config, role: str) -> GanState:
    g_net, d_net = make_nets(config, role)
    m = config.model
    kg, kd, kn = jax.random.split(key, 3)
    z = jnp.zeros((1, m.z_dim))
    g = g_net.init({"params": kg, "noise": kn}, z)["params"]
    img = jnp.zeros((max(1, m.mbstd_group_size), m.resolution, m.resolution, m.img_channels))
    d = d_net.init(kd, img)["params"]
    return GanState(
        g=g,
        d=d,
        g_ema=jax.tree.map(jnp.copy, g),
        g_opt=optim.make(config.optim.g).init(g),
        d_opt=optim.make(config.optim.d).init(d),
        w_avg=jnp.zeros((w_dim(config, role),)),
        pl_mean=jnp.zeros(()),
        r1_last=jnp.zeros(()),
        pl_last=jnp.zeros(()),
    )


TEACHER_FIELDS = ("g", "d", "g_ema", "w_avg")
# Model settings of how a teacher was trained, not of what its networks compute: a teacher file's
# values need not match the student job's.
TRAINING_ONLY_MODEL_KEYS = ("dtype", "bf16_res")
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def prepare(config):
    """The teacher file named by ``teacher.weights`` (a trained teacher for the student's stages)
    or ``teacher.continue_from`` (a partly trained teacher whose training goes on from the file's
    step), hash-checked on the host; None without either. A bare name is a file shipped in
    ``weights/``, a path one written by ``jaxpapers.tools.export_teacher``."""
    name = str(config.teacher.get("weights", ""))
    cont = str(config.teacher.get("continue_from", ""))
    if not (name or cont):
        return None
    if sum(map(bool, (name, cont, config.init_from))) > 1:
        raise ValueError(
            "Set one of teacher.weights, teacher.continue_from and init_from: each provides the "
            "teacher."
        )
    path = dgl.resolve_weights(name or cont, WEIGHTS_DIR)
    tree, model = dgl.load_teacher_file(path, TEACHER_FIELDS)
    if cont:
        dgl.check_teacher_model(model, config, path)  # Its whole recipe, dtype included.
        step = dgl.teacher_file_step(path)
        if not 0 < step < int(config.teacher.steps):
            raise ValueError(
                f"teacher.continue_from={cont!r} is at step {step}; it continues a teacher run "
                f"only inside (0, teacher.steps={config.teacher.steps})."
            )
        print(f"Continuing the teacher from {path} at step {step} (fresh Adam states)", flush=True)
        return dict(tree, step=step)
    model = {k: v for k, v in model.items() if k not in TRAINING_ONLY_MODEL_KEYS}
    dgl.check_teacher_model(model, config, path)
    return tree


def init_state(key: jax.Array, config, *, prepared=None) -> DGLState:
    """Fresh teacher and student; with ``prepared`` (a teacher file, see `prepare`) the teacher's
    G, D, G_ema and w_avg come from it: at its own step when it continues the teacher's
    training, else the job starts at stage 1."""
    dgl.student_init(config)  # A bad or impossible student.init fails here, in one line.
    state = dgl.init_job(key, config, init_gan)
    if prepared is None:
        return state
    if "step" in prepared:
        return dgl.continue_teacher(state, prepared, TEACHER_FIELDS)
    return load_init(state, prepared, config)


def run_mapping(g_net: sg.Generator, params, z: jax.Array, key: jax.Array, mixing_prob: float):
    """ws for a batch of z with official style mixing (one crossover layer for the batch)."""
    ws = g_net.apply({"params": params}, z, method=g_net.mapping)
    if mixing_prob > 0:
        k1, k2, k3 = jax.random.split(key, 3)
        n_ws = ws.shape[1]
        cutoff = jax.random.randint(k1, (), 1, n_ws)
        cutoff = jnp.where(jax.random.uniform(k2) < mixing_prob, cutoff, n_ws)
        ws2 = g_net.apply({"params": params}, jax.random.normal(k3, z.shape), method=g_net.mapping)
        ws = jnp.where((jnp.arange(n_ws) < cutoff)[None, :, None], ws, ws2)
    return ws


class Policy(NamedTuple):
    """The step's mixed-precision policy: compute dtype and the float32 G / D parameters."""

    dtype: Any
    g_keep: tuple[str, ...]
    d_keep: tuple[str, ...]


def policy(config) -> Policy:
    return Policy(precision.compute_dtype(config.model), *f32_params(config))


FLOAT32 = Policy(jnp.float32, (), ())


def synth(g_net: sg.Generator, params, ws: jax.Array, key: jax.Array, pol=FLOAT32) -> jax.Array:
    """Images (float32) from ws. ``ws`` goes in by keyword, which ``precision.apply`` does not
    cast: the style affines read float32 ws, as officially."""
    return precision.apply(
        g_net,
        {"params": params},
        ws=ws,
        dtype=pol.dtype,
        keep=pol.g_keep,
        rngs={"noise": key},
        method=g_net.synthesis,
    )


def disc(d_net: sg.Discriminator, params, img: jax.Array, pol=FLOAT32) -> jax.Array:
    """Logits (float32). ``img`` by keyword (not cast): D's first layer casts it to its own
    dtype, as the official first block casts the image to the block's dtype."""
    return precision.apply(d_net, {"params": params}, img=img, dtype=pol.dtype, keep=pol.d_keep)


def preprocess(images: jax.Array, key: jax.Array, mirror: bool) -> jax.Array:
    """uint8 NHWC -> float in [-1, 1], with random horizontal flips (mirror augment)."""
    x = images.astype(jnp.float32) / 127.5 - 1.0
    if mirror:
        flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1, :], x)
    return x


def gan_update(
    gs: GanState,
    reals: jax.Array,
    key: jax.Array,
    local_step: jax.Array,
    config,
    role: str,
    d_teacher=None,
    alpha=0.0,
    teacher_on=False,
    do_pl=False,
    do_r1=False,
):
    """One official StyleGAN2 iteration of one GAN; returns (new GanState, metrics).

    ``teacher_on`` (static): add the teacher D term (stage 2); stage 1 does not run D_T.
    ``do_pl`` / ``do_r1`` (static): run the lazy path-length / R1 update in this step.
    """
    g_net, d_net = make_nets(config, role)
    L = config.loss
    n = reals.shape[0]
    tx_g, tx_d = optim.make(config.optim.g), optim.make(config.optim.d)
    keys = jax.random.split(key, 12)
    z = jax.random.normal(keys[0], (n, config.model.z_dim))
    t_net = make_nets(config, "teacher")[1] if d_teacher is not None else None
    pol = policy(config)

    # ---- G main: non-saturating loss (+ DGL teacher term in phase 2).
    def g_loss_fn(g_params):
        ws = run_mapping(g_net, g_params, z, keys[1], L.style_mixing_prob)
        fake = synth(g_net, g_params, ws, keys[2], pol)
        logits = disc(d_net, gs.d, fake, pol)
        t_logits = None
        if t_net is not None and teacher_on:
            t_logits = disc(t_net, d_teacher, fake, pol)
        total, term = dgl.generator_loss(gan.g_nonsaturating, logits, t_logits, alpha)
        w_mean = jnp.mean(ws[:, 0], axis=0)
        return total, (gan.g_nonsaturating(logits), term, w_mean)

    (g_total, (g_main, t_term, w_mean)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(gs.g)
    upd, g_opt = tx_g.update(grads, gs.g_opt, gs.g)
    g = optax.apply_updates(gs.g, upd)
    w_avg = w_mean + config.model.w_avg_beta * (gs.w_avg - w_mean)  # lerp(w_mean, w_avg, beta)

    # ---- G reg: lazy path-length regularization on batch // pl_batch_shrink.
    pl_mean, pl_last = gs.pl_mean, gs.pl_last
    if do_pl:
        m = max(1, n // L.pl_batch_shrink)
        zp = jax.random.normal(keys[3], (m, config.model.z_dim))
        shape = (m, config.model.resolution, config.model.resolution, config.model.img_channels)

        def pl_loss(g_params):
            ws = run_mapping(g_net, g_params, zp, keys[4], L.style_mixing_prob)
            lengths = gan.path_lengths(
                lambda v: synth(g_net, g_params, v, keys[5], pol), ws, keys[6], shape
            )
            pen, new_mean = gan.path_length_penalty(lengths, gs.pl_mean, L.pl_decay)
            return jnp.mean(pen) * L.pl_weight * L.g_reg_interval, (jnp.mean(pen), new_mean)

        (_, (pl_last, pl_mean)), gr = jax.value_and_grad(pl_loss, has_aux=True)(g)
        u, g_opt = tx_g.update(gr, g_opt, g)
        g = optax.apply_updates(g, u)

    # ---- D main: logistic loss on fresh fakes from the updated G.
    ws_d = run_mapping(g_net, g, jax.random.normal(keys[7], z.shape), keys[8], L.style_mixing_prob)
    fake_d = jax.lax.stop_gradient(synth(g_net, g, ws_d, keys[9], pol))

    def d_apply(p, x):
        return disc(d_net, p, x, pol)

    d, d_opt, dm = gan.d_update(
        d_apply, d_apply, gs.d, gs.d_opt, tx_d, reals, fake_d, L, do_r1=do_r1, r1_last=gs.r1_last
    )
    d_loss, r1_last = dm["d_loss"], dm["r1"]
    real_logits, fake_logits = dm["real_logits"], dm["fake_logits"]

    g_ema = optim.ema_update(gs.g_ema, g, gan.ema_beta(config.ema, config.batch_size, local_step))
    new = GanState(
        g=g,
        d=d,
        g_ema=g_ema,
        g_opt=g_opt,
        d_opt=d_opt,
        w_avg=w_avg,
        pl_mean=pl_mean,
        r1_last=r1_last,
        pl_last=pl_last,
    )
    metrics = {
        "loss": g_total + d_loss,
        "g_loss": g_main,
        "d_loss": d_loss,
        "teacher_term": t_term,
        "d_real": jnp.mean(real_logits),
        "d_fake": jnp.mean(fake_logits),
        "r1": r1_last,
        "pl": pl_last,
        "pl_mean": pl_mean,
    }
    return new, metrics


def train_step(state: DGLState, batch: dict, *, config, phase: Phase) -> tuple[DGLState, dict]:
    """The job's train step for one (static) phase; see the module doc."""
    stage, do_pl, do_r1 = phase
    dgl.check_stage(stage)
    key = rng.step_key(state)
    k_aug, k_gan = jax.random.split(key)
    reals = preprocess(batch["image"], k_aug, config.aug.mirror)
    regs = dict(do_pl=bool(do_pl), do_r1=bool(do_r1))
    if stage == 0:
        t, metrics = gan_update(state.teacher, reals, k_gan, state.step, config, "teacher", **regs)
        state = state.replace(teacher=t)
    else:
        on = stage == 2
        s, metrics = gan_update(
            state.student,
            reals,
            k_gan,
            dgl.local_step(config, stage, state.step),
            config,
            "student",
            d_teacher=state.teacher.d,
            alpha=config.student.alpha if on else 0.0,
            teacher_on=on,
            **regs,
        )
        state = state.replace(student=s)
    metrics = dict(metrics, phase=jnp.asarray(stage, jnp.int32))
    return state.replace(step=state.step + 1), metrics


def load_init(state: DGLState, tree, config) -> DGLState:
    """Teacher from ``init_from``: a checkpoint of this job (its ``teacher``), a converted
    official pickle (``jaxpapers.convert.stylegan2`` writes {'teacher': {g, d, g_ema, w_avg}}) or
    a teacher file (`prepare`); with ``student.init='teacher'`` the student starts from it."""
    state = dgl.load_teacher(state, tree, config, TEACHER_FIELDS)
    if dgl.student_init(config) != "scratch":
        state = state.replace(student=student_from_teacher(state.student, state.teacher, config))
    return state


def student_from_teacher(student: GanState, teacher: GanState, config) -> GanState:
    """The student's G from the teacher's EMA G (the network the teacher is judged by): each
    synthesis layer keeps the teacher's most important channels (`kept_channels`), the constant
    and a shorter mapping network the teacher's leading entries / first layers. Its D stays its
    own fresh one, as in the paper (a D copied from the teacher's overpowered the student G:
    README). Fresh Adam states; ``w_avg`` from zero (a shorter mapping gives other w)."""
    t_syn, s_syn = teacher.g_ema["synthesis"], student.g["synthesis"]
    keep = kept_channels(t_syn, teacher.w_avg, s_syn)
    syn = {}
    for name, layer in s_syn.items():
        if name == "const":
            syn[name] = dgl.slice_like(t_syn[name], layer, "teacher G_ema const")
            continue
        into, out = keep.get(_reads(name)), keep.get(name)
        syn[name] = {k: _take(t_syn[name][k], k, into, out, v) for k, v in layer.items()}
    mapping = dgl.slice_like(teacher.g_ema["mapping"], student.g["mapping"], "teacher G_ema")
    g = dict(student.g, synthesis=syn, mapping=mapping)
    return student.replace(
        g=g, g_ema=jax.tree.map(jnp.copy, g), g_opt=optim.make(config.optim.g).init(g)
    )


def _reads(layer: str) -> str | None:
    """The synthesis layer whose output ``layer`` reads (None: the constant input)."""
    res, kind = layer[1:].split("_")
    if kind == "torgb":
        return f"b{res}_conv1"
    if kind == "conv0":
        return f"b{int(res) // 2}_conv1"
    return None if res == "4" else f"b{res}_conv0"  # conv1


def _take(t_leaf, key: str, into, out, like) -> jax.Array:
    """One parameter of a synthesis layer cut to the kept input (``into``) / output channels."""
    a = jnp.asarray(t_leaf)
    if key in ("weight", "mod_weight", "mod_bias") and into is not None:
        a = jnp.take(a, into, axis=-2 if key == "weight" else -1)
    if key in ("weight", "bias") and out is not None:
        a = jnp.take(a, out, axis=-1)
    if a.shape != like.shape:
        raise ValueError(f"teacher G_ema {key} gives {a.shape}, the student needs {like.shape}.")
    return a.astype(like.dtype)


def kept_channels(t_syn: dict, w_avg: jax.Array, s_syn: dict) -> dict[str, jax.Array]:
    """For each synthesis conv, the teacher's output channels the student keeps (as many as the
    student's layer has, in increasing order): those the layers reading them rely on most.

    A channel's weight in a reading layer is its share of that layer's output energy at the
    teacher's mean style: s_c² Σ_k W[k, c, o]² over all input channels, averaged over the outputs
    o of a demodulated conv (demodulation normalises each output over its inputs) and taken over
    the whole output of a ToRGB (not demodulated); a channel's importance sums its shares in the
    layers that read it. Without data: the layers' own weights and styles."""
    wdim = w_avg.shape[-1]
    score: dict[str, jax.Array] = {}
    for name, p in t_syn.items():
        src = None if name == "const" else _reads(name)
        if src is None:
            continue
        s = w_avg @ (p["mod_weight"] / np.sqrt(wdim)) + p["mod_bias"] + 1
        e = s[:, None] ** 2 * jnp.sum(jnp.square(p["weight"]), axis=(0, 1))  # [in, out]
        share = e.sum(1) / e.sum() if name.endswith("torgb") else (e / e.sum(0)).mean(1)
        score[src] = score.get(src, 0.0) + share
    keep = {}
    for name, sc in score.items():
        n = s_syn[name]["bias"].shape[-1]
        keep[name] = jnp.sort(jnp.argsort(-sc, stable=True)[:n])
    return keep
