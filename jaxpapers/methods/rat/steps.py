"""Train steps of the `rat` method: standard, SAT (Madry PGD-AT), TRADES and RAT, one switch.

`config.method_variant` picks the objective; everything else (model, data, optimizer) is shared so
the comparison is like for like. Attacks always run on the eval-mode model (BatchNorm running
statistics; Madry's original attacked in train mode) in [0, 1] pixel space; the model
normalises inside (`config.model.mean/std`, Rice et al.).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxpapers import optim, rng, state
from jaxpapers.layers import precision, resnet
from jaxpapers.lib import attacks, augment
from jaxpapers.lib.attacks import losses
from jaxpapers.methods.rat import model as rat_model
from jaxpapers.methods.rat import region

VARIANTS = ("standard", "sat", "trades", "rat")


def init_state(key: jax.Array, config) -> state.TrainState:
    if config.method_variant not in VARIANTS:
        raise ValueError(f"method_variant must be one of {VARIANTS}, got {config.method_variant!r}")
    model = resnet.build(config.model)
    k_init, k_state = jax.random.split(key)
    variables = model.init(k_init, jnp.zeros((1, *config.data.image_shape)), train=False)
    return state.TrainState.create(
        variables["params"], optim.make(config.optim), k_state, variables.get("batch_stats", {})
    )


def train_attack_unroll(config) -> bool | int:
    """Unroll the training attack's loop on CPU (several times faster there, same result)."""
    mode = config.attack.get("unroll", "auto")  # runs made before the key existed
    if mode not in ("auto", "yes", "no"):
        raise ValueError(f"attack.unroll must be 'auto', 'yes' or 'no', got {mode!r}")
    if mode == "auto":
        return True if jax.default_backend() == "cpu" else 1
    return True if mode == "yes" else 1


def train_pgd(f: Callable, x: jax.Array, y: jax.Array, key: jax.Array, config, **kwargs):
    """The L∞ PGD of ``config.attack`` that SAT trains on and RAT walks (``return_path=True``)."""
    a = config.attack
    return attacks.pgd(
        f,
        x,
        y,
        key,
        eps=a.eps,
        step_size=a.step_size,
        num_steps=a.num_steps,
        unroll=train_attack_unroll(config),
        **kwargs,
    )


def rat_inputs(
    f: Callable, x: jax.Array, y: jax.Array, key: jax.Array, config
) -> tuple[jax.Array, jax.Array, dict]:
    """RAT (reconstruction, README): PGD path -> region samples -> distance-aware soft targets.

    Returns samples flattened to (m·B, ...), soft targets (m·B, K) and diagnostics.
    """
    a, r = config.attack, config.rat
    k_pgd, k_reg = jax.random.split(key)
    _, path = train_pgd(f, x, y, k_pgd, config, return_path=True)
    samples = region.sample_region(
        k_reg,
        x,
        path,
        eps=a.eps,
        region=r.region,
        num_samples=r.num_samples,
        include_clean=r.include_clean,
        include_endpoint=r.include_endpoint,
        tube_radius=r.tube_radius,
    )
    d = region.normalized_distance(x, samples, path, eps=a.eps, distance=r.distance)
    s = region.smoothing_amount(d, s_max=r.s_max, power=r.power, direction=r.direction)
    q = region.smoothed_targets(jnp.broadcast_to(y, d.shape), s, config.model.num_classes)
    m = samples.shape[0]
    flat = samples.reshape((m * x.shape[0],) + x.shape[1:])
    diag = {"rat_mean_distance": jnp.mean(d), "rat_mean_smoothing": jnp.mean(s)}
    return flat, q.reshape(flat.shape[0], -1), diag


def attack_inputs(
    variant: str, f_eval: Callable, x: jax.Array, y: jax.Array, key: jax.Array, config
) -> tuple[jax.Array, jax.Array, dict]:
    """The points the model trains on, their targets (B', K) and diagnostics, per objective.

    Gradients are stopped: the inner maximisation is not differentiated through.
    """
    a = config.attack
    num_classes = config.model.num_classes
    extra: dict = {}
    if variant == "standard":
        x_train, targets = x, jax.nn.one_hot(y, num_classes)
    elif variant == "sat":
        x_train = train_pgd(f_eval, x, y, key, config)
        targets = jax.nn.one_hot(y, num_classes)
    elif variant == "rat":
        x_train, targets, extra = rat_inputs(f_eval, x, y, key, config)
    elif variant == "trades":
        t = config.trades
        x_train = attacks.trades_attack(
            f_eval,
            x,
            key,
            eps=a.eps,
            step_size=t.step_size,
            num_steps=t.num_steps,
            unroll=train_attack_unroll(config),
        )
        targets = jax.nn.one_hot(y, num_classes)
    else:
        raise ValueError(f"method_variant must be one of {VARIANTS}, got {variant!r}")
    return jax.lax.stop_gradient(x_train), jax.lax.stop_gradient(targets), extra


def objective(params, st: state.TrainState, x, y, x_train, targets, config):
    """The training loss of ``config.method_variant`` and (logits, new BN statistics, metrics)."""
    variables = {"params": params, "batch_stats": st.batch_stats}
    apply_model = functools.partial(
        rat_model.apply_model, dtype=precision.compute_dtype(config.model)
    )
    if config.method_variant == "trades":
        # TRADES eq. (5): CE(f(x), y) + β·KL(f(x) ‖ f(x')) with the clean probabilities NOT
        # detached; two train-mode passes update BN statistics in turn, as the reference.
        z_nat, upd = apply_model(variables, x, config, train=True, mutable=True)
        variables = {"params": params, "batch_stats": upd["batch_stats"]}
        z_adv, upd = apply_model(variables, x_train, config, train=True, mutable=True)
        ce = jnp.mean(losses.cross_entropy(z_nat, y))
        kl = jnp.mean(losses.kl_to_reference(z_adv, z_nat))
        return ce + config.trades.beta * kl, (z_adv, upd["batch_stats"], {"trades_kl": kl})
    z, upd = apply_model(variables, x_train, config, train=True, mutable=True)
    loss = jnp.mean(losses.soft_cross_entropy(z, targets))
    aux = {}
    if config.method_variant == "rat" and config.rat.clean_weight > 0:
        variables = {"params": params, "batch_stats": upd["batch_stats"]}
        z_nat, upd = apply_model(variables, x, config, train=True, mutable=True)
        clean = jnp.mean(losses.cross_entropy(z_nat, y))
        loss = loss + config.rat.clean_weight * clean
        aux["rat_clean_ce"] = clean
    return loss, (z, upd["batch_stats"], aux)


def train_step(st: state.TrainState, batch: dict, *, config) -> tuple[state.TrainState, dict]:
    k_aug, k_att = jax.random.split(rng.step_key(st))
    x = augment.crop_flip(
        k_aug, augment.to_float(batch["image"]), config.data.crop_pad, config.data.flip
    )
    y = batch["label"]
    # Attacks run on the eval-mode model (BatchNorm running statistics), in the compute dtype.
    f_eval = rat_model.eval_logits(
        {"params": st.params, "batch_stats": st.batch_stats},
        config,
        precision.compute_dtype(config.model),
    )
    x_train, targets, extra = attack_inputs(config.method_variant, f_eval, x, y, k_att, config)
    loss_fn = lambda p: objective(p, st, x, y, x_train, targets, config)
    (loss, (z, stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    st = st.apply_gradients(grads, optim.make(config.optim), batch_stats=stats)
    labels = jnp.argmax(targets, -1)
    metrics = {
        "loss": loss,
        "train_input_accuracy": jnp.mean(jnp.argmax(z, -1) == labels),
        "grad_norm": optax.tree.norm(grads),
        **extra,
        **aux,
    }
    return st, metrics
