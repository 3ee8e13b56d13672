"""The DGL-GAN job's phase schedule, shared by the StyleGAN2 and BigGAN halves.

Steps ``[0, teacher.steps)`` train the teacher (phase 0), the next ``student.stage1_steps`` the
student without the teacher term (phase 1, stage 1), the rest the student with it (phase 2,
stage 2). The trainer reads `phase` on the host and compiles one step per phase
(``trainer.StepFunction``).
"""

from __future__ import annotations

PHASES = (0, 1, 2)


def phase_bounds(config) -> tuple[int, int]:
    """(first student step, first stage-2 step)."""
    t = int(config.teacher.steps)
    return t, t + int(config.student.stage1_steps)


def phase(config, step: int) -> int:
    """0 teacher, 1 student stage 1 (no teacher term), 2 student stage 2 (the DGL term)."""
    s1, s2 = phase_bounds(config)
    return 0 if step < s1 else (1 if step < s2 else 2)


def check_phase(p) -> None:
    if p not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {p!r}.")
