"""FaceAnime state, init and the joint train step (critic, generator, 3DDP in one jitted step).

Order inside the step follows the official loop (main_paraltrain_withMask_300vw_idloss.py):
  1. sparse renders n_src, n_dst of the source texture at source/target geometry (on device);
  2. critic update: WGAN-GP (losses.critic_loss), one critic step per generator step;
  3. generator update against the UPDATED critic: -D + w_l1 L1 + w_w |w| + w_id L_id;
  4. 3DDP update (dynamics.dynamics_loss) on the window that starts at the source frame.
The 3DDP is trained in the same step only to keep one run = one command; it shares no parameter
with the generator stage (the paper trains the two stages separately).
Mixed precision (``model.dtype``, ``layers.precision``; README "Mixed precision"): G and the
critic (also inside the gradient penalty) run on bfloat16 copies of their parameters; the
frozen identity net, the 3DDP, the sparse renders and every loss stay float32.
The identity net is frozen (trained beforehand on ORL, cached on disk; `lib/face_identity.py`)
and the geometry constants (reference shape, expression PCA) come from the training frames:
``prepare`` computes both once on the host, ``init_state`` puts them into the state (so that a
checkpoint holds everything inference needs) and the step reads them from there.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import optim, rng
from jaxpapers.data import faces
from jaxpapers.layers import precision
from jaxpapers.lib import face_identity as fi
from jaxpapers.methods.faceanime import dynamics, inputs, losses, sparse_texture
from jaxpapers.methods.faceanime.model import D_F32_PARAMS, G_F32_PARAMS, NetD, ResUNetG

CONDITIONS = ("sparse", "landmarks")


@flax.struct.dataclass
class Net:
    params: Any
    opt_state: Any


@flax.struct.dataclass
class FaceAnimeState:
    step: jax.Array
    rng: jax.Array
    g: Net
    d: Net
    dyn: Net
    geom: dynamics.Geometry
    id_model: fi.IdentityModel


def build_g(config) -> ResUNetG:
    m = config.model
    return ResUNetG(h_dim=m.g_dim, depth=m.g_depth, num_res=m.g_res)


def build_d(config) -> NetD:
    m = config.model
    return NetD(h_dim=m.d_dim, depth=m.d_depth)


def build_dyn(config, param_dim: int) -> dynamics.Dynamics:
    m = config.model
    return dynamics.Dynamics(
        param_dim=param_dim, hidden=m.dyn_hidden, latent=m.dyn_latent, img_width=m.dyn_img_width
    )


def identity_model(config, seed_offset: int = 0) -> fi.IdentityModel:
    """The frozen identity net: trained once on config.identity.path and cached by its config.

    identity.steps = 0 gives an untrained (random, frozen) net: used ONLY by the smoke preset
    so that tests need no face data; its L_id is then not an identity measure.  `seed_offset`
    gives an independently trained net (evaluation uses seed + 100).
    """
    c = config.identity
    seed = int(c.seed) + int(seed_offset)
    id_cfg = fi.IdentityConfig(
        size=tuple(c.size),
        widths=tuple(c.widths),
        depths=tuple(c.depths),
        embed_dim=int(c.embed_dim),
    )
    if int(c.steps) == 0:
        net = fi.build_net(id_cfg)
        v = net.init(jax.random.key(seed), jnp.zeros((1, *id_cfg.size, 1)), train=False)
        return fi.IdentityModel(params=v["params"], batch_stats=v["batch_stats"], config=id_cfg)
    path = faces.resolve_dir(c.path, key="identity.path")  # fails here, before any compile
    key = json.dumps(
        [path, list(c.size), list(c.widths), list(c.depths), c.embed_dim, c.steps, seed],
        sort_keys=True,
    )
    root = c.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "jaxpapers")
    directory = os.path.join(root, "face_identity", hashlib.sha1(key.encode()).hexdigest()[:12])
    if os.path.isfile(os.path.join(directory, "identity_config.json")):
        return fi.load(directory)
    images, labels = fi.orl_faces(c.path, tuple(id_cfg.size))
    return fi.load_or_train(directory, images, labels, steps=int(c.steps), seed=seed, config=id_cfg)


def prepare(config) -> dict:
    """Host, once: geometry fitted on the training frames and the frozen identity net."""
    return {
        "geom": inputs.fit_geometry(config, inputs.load_clips(config)),
        "id_model": identity_model(config),
    }


def init_state(key: jax.Array, config, *, prepared: dict) -> FaceAnimeState:
    """Random G/D/3DDP params, fresh Adam states, the prepared geometry and identity net."""
    if config.model.condition not in CONDITIONS:
        raise ValueError(
            f"model.condition must be one of {CONDITIONS}, got {config.model.condition!r}."
        )
    s = int(config.data.image_size)
    geom = jax.tree.map(jnp.asarray, prepared["geom"])
    id_model = jax.tree.map(jnp.asarray, prepared["id_model"])
    p_dim = int(geom.p_std.shape[0])
    kg, kd, kdyn, kr = jax.random.split(key, 4)
    img = jnp.zeros((1, s, s, 3))
    gp = build_g(config).init(kg, img, img, img)["params"]
    dp = build_d(config).init(kd, jnp.zeros((1, s, s, 6)))["params"]
    seq = jnp.zeros((1, int(config.data.window), p_dim))
    dynp = build_dyn(config, p_dim).init(kdyn, img, seq, jnp.zeros((1, config.model.dyn_latent)))
    dynp = dynp["params"]
    o = config.optim
    return FaceAnimeState(
        step=jnp.zeros((), jnp.int32),
        rng=kr,
        g=Net(gp, optim.make(o.g).init(gp)),
        d=Net(dp, optim.make(o.d).init(dp)),
        dyn=Net(dynp, optim.make(o.dyn).init(dynp)),
        geom=geom,
        id_model=id_model,
    )


def to_float(images: jax.Array) -> jax.Array:
    """uint8 -> [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def landmark_map(verts: jax.Array, height: int, width: int) -> jax.Array:
    """Landmarks-only conditioning (ablation): 1 at each vertex's pixel, -1 elsewhere, 3 ch."""
    col = jnp.clip(jnp.floor(verts[:, 0]), 0, width - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor(verts[:, 1]), 0, height - 1).astype(jnp.int32)
    m = jnp.zeros((height, width)).at[row, col].set(1.0)
    return jnp.repeat((2.0 * m - 1.0)[..., None], 3, axis=-1)


def conditions(
    x_src: jax.Array, src_lm: jax.Array, dst_lm: jax.Array, config
) -> tuple[jax.Array, jax.Array]:
    """(n_src, n_dst) [B, H, W, 3] for the configured conditioning."""
    h, w = x_src.shape[1:3]
    if config.model.condition == "landmarks":
        lm_map = jax.vmap(lambda v: landmark_map(v, h, w))
        return lm_map(src_lm), lm_map(dst_lm)
    faces = sparse_texture.sparse_faces(config.model.region)
    n_src, n_dst, _ = sparse_texture.sparse_texture_batch(
        x_src, src_lm, dst_lm, faces, shading=config.model.shading
    )
    return n_src, n_dst


def train_step(state: FaceAnimeState, batch: dict, *, config) -> tuple[FaceAnimeState, dict]:
    """One critic, generator and 3DDP update (module docstring)."""
    k_eps, k_dyn = jax.random.split(rng.step_key(state))
    lw = config.loss
    x_src, x_dst = to_float(batch["src_image"]), to_float(batch["dst_image"])
    n_src, n_dst = conditions(x_src, batch["src_lm"], batch["dst_lm"], config)
    g_net, d_net = build_g(config), build_d(config)
    tx_g, tx_d, tx_dyn = (
        optim.make(config.optim.g),
        optim.make(config.optim.d),
        optim.make(config.optim.dyn),
    )

    # Mixed precision: G and the critic compute in `dtype` (float32 outputs); the 3DDP and the
    # frozen identity net stay float32 (README "Mixed precision").
    dtype = precision.compute_dtype(config.model)

    def generator(gp):
        return precision.apply(
            g_net, {"params": gp}, x_src, n_src, n_dst, dtype=dtype, keep=G_F32_PARAMS
        )

    def critic_of(dp):
        return lambda z: precision.apply(d_net, {"params": dp}, z, dtype=dtype, keep=D_F32_PARAMS)

    x_fake, _ = generator(state.g.params)
    eps = jax.random.uniform(k_eps, (x_src.shape[0],))

    def d_loss_fn(dp):
        return losses.critic_loss(critic_of(dp), x_dst, x_fake, n_dst, eps, lw.gp)

    (d_loss, d_aux), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d.params)
    d_upd, d_opt = tx_d.update(d_grads, state.d.opt_state, state.d.params)
    d_params = optax.apply_updates(state.d.params, d_upd)

    def g_loss_fn(gp):
        fake, w = generator(gp)
        id_term = fi.identity_loss(state.id_model, fake, x_dst) if lw.id > 0 else jnp.zeros(())
        return losses.generator_loss(
            critic_of(d_params), fake, x_dst, n_dst, w, id_term, w_l1=lw.l1, w_w=lw.w, w_id=lw.id
        )

    (g_loss, g_aux), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g.params)
    g_upd, g_opt = tx_g.update(g_grads, state.g.opt_state, state.g.params)

    dyn_net = build_dyn(config, int(state.geom.p_std.shape[0]))

    def dyn_loss_fn(p):
        return dynamics.dynamics_loss(
            dyn_net, {"params": p}, x_src, batch["seq"], k_dyn, lw.dyn_beta
        )

    (dyn_l, dyn_aux), dyn_grads = jax.value_and_grad(dyn_loss_fn, has_aux=True)(state.dyn.params)
    dyn_upd, dyn_opt = tx_dyn.update(dyn_grads, state.dyn.opt_state, state.dyn.params)

    new = state.replace(
        step=state.step + 1,
        g=Net(optax.apply_updates(state.g.params, g_upd), g_opt),
        d=Net(d_params, d_opt),
        dyn=Net(optax.apply_updates(state.dyn.params, dyn_upd), dyn_opt),
    )
    metrics = {"loss": g_loss, "d_loss": d_loss, "dyn_loss": dyn_l, **d_aux, **g_aux, **dyn_aux}
    return new, metrics


def generate(
    state: FaceAnimeState, x_src: jax.Array, n_src: jax.Array, n_dst: jax.Array, config
) -> tuple[jax.Array, jax.Array]:
    """G(x_src, n_src, n_dst) -> (frames, w) with the state's generator."""
    return build_g(config).apply({"params": state.g.params}, x_src, n_src, n_dst)


def np_float(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 [-1, 1] on the host."""
    return images.astype(np.float32) / 127.5 - 1.0
