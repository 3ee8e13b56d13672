"""Orbax checkpoints (the only module that imports orbax).

Saves are atomic (Orbax writes into a temporary directory and renames it when complete), so a
crash mid-save never replaces a good checkpoint; ``restore`` turns a truncated or corrupt
checkpoint into an error that names the directory.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read into the expected state."""


class Checkpointer:
    """Keep-N, async checkpoints of a state pytree in ``<workdir>/checkpoints``."""

    def __init__(self, directory: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, force: bool = False) -> bool:
        return self.manager.save(int(step), args=ocp.args.StandardSave(state), force=force)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, state_like, step: int | None = None):
        """Restores into the structure, shapes and shardings of ``state_like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {self.directory}.")
        return restore_into(self.manager, step, state_like, self.directory)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _abstract(state_like):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)


def restore_into(manager, step, state_like, where):
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(_abstract(state_like)))
    except Exception as e:  # Orbax raises many types for truncated files / mismatched trees.
        raise CheckpointError(
            f"Checkpoint step {step} in {where} cannot be restored into this run's state "
            f"({type(e).__name__}: {str(e)[:400]}). It may be truncated or corrupt, or written by "
            "a different config; delete it or point --workdir elsewhere. Nothing was overwritten."
        ) from e


def restore_dir(directory: str, state_like, step: int | None = None):
    """Restores from another run's checkpoint directory (``resume_from``)."""
    directory = os.path.abspath(directory)
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Checkpoint directory {directory!r} does not exist.")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {directory}.")
        return restore_into(manager, step, state_like, directory)
    finally:
        manager.close()


def restore_params(directory: str, step: int | None = None):
    """The raw saved tree (no target structure) of another run, for ``init_from`` hooks."""
    directory = os.path.abspath(directory)
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"init_from directory {directory!r} does not exist.")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {directory}.")
        try:
            return manager.restore(step, args=ocp.args.StandardRestore())
        except Exception as e:
            raise CheckpointError(f"Cannot read checkpoint step {step} in {directory}: {e}") from e
    finally:
        manager.close()


def graft(target, tree, names, *, source: str = "init_from"):
    """Returns ``target`` with the fields ``names`` replaced by the same entries of ``tree``.

    ``target`` is a state dataclass (or dict); ``tree`` a restored pytree (dicts of arrays) such as
    ``restore_params`` returns. Every grafted leaf must match the target's tree structure and
    shape; it is cast to the target's dtype. Errors name the field and what differs, so a
    teacher of the wrong architecture fails before training instead of inside the first step.
    """
    import jax.numpy as jnp

    if not isinstance(tree, dict):
        raise ValueError(f"{source}: expected a dict of fields, got {type(tree).__name__}.")
    new = {}
    for name in names:
        if name not in tree:
            raise ValueError(
                f"{source} lacks {name!r} (has: {', '.join(map(str, list(tree)[:10]))})."
            )
        want = target[name] if isinstance(target, dict) else getattr(target, name)
        got = jax.tree.map(jnp.asarray, tree[name])
        if jax.tree.structure(got) != jax.tree.structure(want):
            raise ValueError(
                f"{source} {name!r}: tree structure does not match this config's model "
                "(check the architecture settings it was trained with)."
            )
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
        ):
            if a.shape != b.shape:
                where = jax.tree_util.keystr(path)
                raise ValueError(f"{source} {name!r}{where}: shape {a.shape} != {b.shape}.")
        new[name] = jax.tree.map(lambda a, b: a.astype(b.dtype), got, want)
    if isinstance(target, dict):
        return {**target, **new}
    return target.replace(**new)
