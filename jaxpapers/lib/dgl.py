"""The DGL-GAN job skeleton (Tian et al., arXiv 2112.06502), shared by its StyleGAN2 and BigGAN
halves: stage schedule, the teacher-discriminator term, teacher grafting from ``init_from``.

One job trains the teacher (unless ``init_from`` provides it), then the narrow student in two
stages. Steps ``[0, teacher.steps)`` train the teacher (stage 0), the next
``student.stage1_steps`` the student without the teacher term (stage 1), the rest the student
with it (stage 2). The trainer reads the stage on the host and compiles one step per phase
(``trainer.StepFunction``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

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
    given = bool(config.init_from) or bool(config.teacher.get("weights", ""))
    on = {"teacher": s1 > 0 or given, "student": step > s1}
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


@flax.struct.dataclass
class DGLState:
    """A DGL job's state: the global step, its rng, and the teacher and student GANs (each a
    method's own GAN state: StyleGAN2's or BigGAN's params, EMA G, optimizer states, stats)."""

    step: jax.Array
    rng: jax.Array
    teacher: Any
    student: Any


def init_job(key: jax.Array, config, init_gan: Callable) -> DGLState:
    """The job's initial state: step 0, its rng, and the teacher and student GANs made by
    ``init_gan(key, config, role)`` (a DGL method's own GAN initialiser)."""
    kt, ks, kr = jax.random.split(key, 3)
    return DGLState(
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


def continue_teacher(state, prepared: dict, names: Sequence[str]):
    """``state`` with the teacher fields ``names`` and the step of a teacher file (`prepare` of a
    ``teacher.continue_from`` job: {'teacher': ..., 'step': int}); the optimizer states stay
    fresh. The teacher's training then goes on from that step: its data order, noise, lr and
    EMA schedules are functions of the step."""
    teacher = checkpoint.graft(
        state.teacher, prepared["teacher"], names, source="teacher.continue_from"
    )
    step = jnp.asarray(prepared["step"], state.step.dtype)
    return state.replace(teacher=teacher, step=step)


def teacher_file_step(path: str) -> int:
    """The training step a teacher file was exported at (its JSON's ``step``)."""
    side = teacher_sidecar(path)
    try:
        with open(side) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{side!r} names no training step ({e}).") from None


STUDENT_INITS = ("scratch", "teacher")


def student_init(config) -> str:
    """``student.init``: "scratch" (the paper: the student's own random init) or "teacher" (its
    G starts from channels of the trained teacher's EMA G, chosen by the method)."""
    init = str(config.student.get("init", "scratch"))
    if init not in STUDENT_INITS:
        raise ValueError(f"student.init must be one of {STUDENT_INITS}, got {init!r}.")
    if init != "scratch" and int(config.teacher.steps) != 0:
        raise ValueError(
            "student.init='teacher' needs a trained teacher at the start (teacher.weights or "
            "init_from, teacher.steps=0); use student.init='scratch' when the job trains one."
        )
    return init


def slice_like(source, like, what: str):
    """``like``'s tree filled from ``source``: each leaf is the same-named source leaf cut to the
    leading entries of every axis (a narrower network takes the first channels of a wider one;
    same-shaped leaves are copied). Leaves ``like`` lacks are dropped (e.g. a deeper mapping
    network's extra layers); a missing or smaller source leaf is an error naming it."""
    src = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}

    def cut(path, leaf):
        name = jax.tree_util.keystr(path)
        if name not in src:
            raise ValueError(f"{what} has no {name} to initialise the student's from.")
        s = jnp.asarray(src[name])
        if s.ndim != leaf.ndim or any(a < b for a, b in zip(s.shape, leaf.shape, strict=True)):
            raise ValueError(f"{what}{name}: shape {s.shape} cannot give {leaf.shape}.")
        return s[tuple(slice(0, n) for n in leaf.shape)].astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(cut, like)


# ---- Teacher weight files: a trained teacher shipped with (or handed to) a DGL job.
#
# ``NAME.msgpack`` holds {'teacher': {field: array tree}, 'model': JSON of the model settings}
# (flax msgpack: arrays as dtype/shape/bytes, no pickle); ``NAME.json`` beside it holds the file's
# sha256, the model settings and where the weights came from. The loader checks the hash before
# parsing, so a truncated or swapped file fails with one line instead of a bad teacher.

MAX_TEACHER_BYTES = 2**31  # A bound on what the loader reads (config-f 1024 G+D+G_ema: ~0.4 GB).


def teacher_sidecar(path: str) -> str:
    """The JSON beside a teacher file (``fmnist_teacher.msgpack`` -> ``fmnist_teacher.json``)."""
    return os.path.splitext(path)[0] + ".json"


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_teacher_file(path: str, teacher: dict, model: dict, info: dict | None = None) -> str:
    """Writes the teacher file and its JSON sidecar atomically; returns the file's sha256."""
    tree = {
        "teacher": jax.tree.map(np.asarray, teacher),
        "model": json.dumps(model, sort_keys=True),
    }
    data = serialization.msgpack_serialize(tree)
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = dict(info or {}, sha256=digest, bytes=len(data), model=model)
    for target, blob in (
        (path, data),
        (teacher_sidecar(path), json.dumps(meta, indent=2).encode()),
    ):
        tmp = f"{target}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, target)
    return digest


def load_teacher_file(path: str, fields: Sequence[str]) -> tuple[dict, dict]:
    """``({'teacher': {field: tree}}, model settings)`` of a teacher file after checking its size
    and its sha256 against the sidecar's; every error is one line naming the file and the fix."""
    side = teacher_sidecar(path)
    for p in (path, side):
        if not os.path.isfile(p):
            raise FileNotFoundError(
                f"teacher weights {p!r} not found (write the pair with "
                "`python -m jaxpapers.tools.export_teacher --workdir=TEACHER_RUN --out=FILE`)."
            )
    size = os.path.getsize(path)
    if size > MAX_TEACHER_BYTES:
        raise ValueError(f"teacher weights {path!r}: {size} bytes exceeds {MAX_TEACHER_BYTES}.")
    try:
        with open(side) as f:
            want = str(json.load(f)["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{side!r} is not a teacher sidecar with a 'sha256' entry ({e})."
        ) from None
    with open(path, "rb") as f:
        data = f.read()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ValueError(
            f"teacher weights {path!r} have sha256 {got[:12]}..., the sidecar {side!r} expects "
            f"{want[:12]}...: the file is damaged or not the one exported; export it again."
        )
    try:
        tree = serialization.msgpack_restore(data)
        model = json.loads(tree["model"])
        teacher = tree["teacher"]
    except Exception as e:  # noqa: BLE001 - any parse failure is the same one-line error.
        raise ValueError(f"teacher weights {path!r} cannot be parsed: {e}") from None
    missing = [f for f in fields if not isinstance(teacher, dict) or f not in teacher]
    if missing or not isinstance(model, dict):
        raise ValueError(f"teacher weights {path!r} lack the fields {missing} (need {fields}).")
    return {"teacher": {f: teacher[f] for f in fields}}, model


def resolve_weights(name: str, root: str) -> str:
    """A shipped file's bare name resolves inside the package folder ``root`` (never outside it);
    anything with a directory part is the user's own path."""
    if os.path.basename(name) != name:
        return os.path.abspath(os.path.expanduser(name))
    path = os.path.realpath(os.path.join(root, name))
    if name.startswith(".") or os.path.dirname(path) != os.path.realpath(root):
        raise ValueError(f"teacher.weights={name!r} is not a file name inside {root}.")
    return path


def check_teacher_model(model: dict, config, path: str) -> None:
    """The teacher file's model settings must equal the config's (one line naming each key)."""
    diff = []
    for k, v in model.items():
        mine = config.model.get(k)
        mine = list(mine) if isinstance(mine, (tuple, list)) else mine
        if mine != v:
            diff.append(f"--config.model.{k}={v} (config has {mine})")
    if diff:
        raise ValueError(
            f"teacher weights {path!r} were trained with other settings: {', '.join(diff)}."
        )
