"""The DGL-GAN job skeleton (Tian et al., arXiv 2112.06502), shared by its StyleGAN2 and BigGAN
halves: stage schedule, the teacher-discriminator term, teacher grafting from ``init_from``.

One job trains the teacher (unless ``init_from`` provides it), then the narrow student in two
stages. Steps ``[0, teacher.steps)`` train the teacher (stage 0), the next
``student.stage1_steps`` the student without the teacher term (stage 1), the rest the student
with it (stage 2). The trainer reads the stage on the host and compiles one step per phase
(``trainer.StepFunction``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxpapers import checkpoint

STAGES = (0, 1, 2)
ROLES = ("teacher", "student")


def phase_bounds(config) -> tuple[int, int]:
    """(first student step, first stage-2 step)."""
    t = int(config.teacher.steps)
    return t, t + int(config.student.stage1_steps)


def stage(config, step: int) -> int:
    """0 teacher, 1 student stage 1 (no teacher term), 2 student stage 2 (the DGL term)."""
    s1, s2 = phase_bounds(config)
    return 0 if step < s1 else (1 if step < s2 else 2)


def local_step(config, stage_: int, step):
    """Steps counted from the start of the network being trained (teacher or student)."""
    return step if stage_ == 0 else step - phase_bounds(config)[0]


def check_stage(s) -> None:
    if s not in STAGES:
        raise ValueError(f"phase stage must be one of {STAGES}, got {s!r}.")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}.")


def trained_roles(config, step: int) -> list[str]:
    """The networks worth sampling at ``step``: the teacher once trained or loaded, the student
    once it has taken a step."""
    s1, _ = phase_bounds(config)
    on = {"teacher": s1 > 0 or bool(config.init_from), "student": step > s1}
    return [r for r in ROLES if on[r]]


def generator_loss(
    g_loss: Callable[[jax.Array], jax.Array],
    fake_logits: jax.Array,
    teacher_logits: jax.Array | None,
    weight: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """DGL student G loss ``g_loss(D_S(G_S(z))) + weight * g_loss(D_T(G_S(z)))``; returns
    (total, teacher term). ``g_loss`` is the GAN's own G loss (StyleGAN2: non-saturating, BigGAN:
    hinge). Without teacher logits (stage 1) it is the vanilla loss and the term is 0; with
    ``weight = 0`` the total (and its gradient) equals the vanilla loss exactly. D_T's params must
    be held fixed by the caller (only G's params are differentiated)."""
    vanilla = g_loss(fake_logits)
    if teacher_logits is None:
        return vanilla, jnp.zeros((), vanilla.dtype)
    term = g_loss(teacher_logits)
    return vanilla + weight * term, term


def init_job(key: jax.Array, config, init_gan: Callable, state_cls):
    """The job's initial state: step 0, its rng, and the teacher and student GANs made by
    ``init_gan(key, config, role)`` (a DGL method's own GAN initialiser)."""
    kt, ks, kr = jax.random.split(key, 3)
    return state_cls(
        step=jnp.zeros((), jnp.int32),
        rng=kr,
        teacher=init_gan(kt, config, "teacher"),
        student=init_gan(ks, config, "student"),
    )


def load_teacher(state, tree, config, names: Sequence[str]):
    """``state`` with the teacher fields ``names`` from an ``init_from`` tree ({'teacher': ...});
    the job then goes straight to the student (``teacher.steps`` must be 0)."""
    if int(config.teacher.steps) != 0:
        raise ValueError(
            "init_from provides the teacher: set --config.teacher.steps=0 so the job "
            "goes straight to the student's stages."
        )
    if not isinstance(tree, dict) or "teacher" not in tree:
        keys = list(tree)[:10] if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"init_from tree has no 'teacher' entry (keys: {keys}).")
    teacher = checkpoint.graft(state.teacher, tree["teacher"], names, source="init_from teacher")
    return state.replace(teacher=teacher)
