"""Jitted adversarial attacks in JAX: FGSM, PGD (L∞/L2), CW-L∞, TRADES-KL, APGD-CE/-DLR/-T,
FAB-T (L∞), Square.

Every attack is a pure function ``attack(logits_fn, x, y, key, *, eps, ...) -> x_adv`` on a batch
in [0, 1]; iterations are ``lax`` loops, so the call jits into one program (wrap it in
``jax.jit`` with the hyper-parameters bound by ``functools.partial``) and can live inside a train
step. Outputs always lie in B_p(x, ε) ∩ [0, 1].
"""

from jaxpapers.lib.attacks import losses
from jaxpapers.lib.attacks.apgd import apgd, apgd_single_run, apgd_targeted, checkpoints
from jaxpapers.lib.attacks.fab import fab_single_run, fab_targeted, project_linf_hyperplane_box
from jaxpapers.lib.attacks.pgd import (
    cw_linf,
    fgsm,
    l2_norm,
    linf_norm,
    pgd,
    pgd_restarts,
    project,
    trades_attack,
)
from jaxpapers.lib.attacks.square import p_selection, square_linf

__all__ = [
    "apgd",
    "apgd_single_run",
    "apgd_targeted",
    "checkpoints",
    "cw_linf",
    "fab_single_run",
    "fab_targeted",
    "fgsm",
    "l2_norm",
    "linf_norm",
    "losses",
    "p_selection",
    "pgd",
    "pgd_restarts",
    "project",
    "project_linf_hyperplane_box",
    "square_linf",
    "trades_attack",
]
