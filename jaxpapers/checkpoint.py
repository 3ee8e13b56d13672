"""Orbax checkpoints (the only module that imports orbax), with a digest of every array.

Saves are atomic (Orbax writes into a temporary directory and renames it when complete), so a
crash mid-save never replaces a good checkpoint; ``restore`` turns a truncated or corrupt
checkpoint into an error that names the directory.

Integrity: with every step, ``<directory>/integrity/<step>.json`` records the sha256 of every
array (its dtype, shape and bytes). It is written atomically (temporary file, fsync, rename)
*before* Orbax starts the step, so once a step is visible its digest exists. Rules:
  * digest present and every array matches: the step is intact;
  * digest present and an array differs (or the digest file is unreadable): the step is
    corrupt; restoring it raises :class:`CorruptCheckpointError` naming the step and the newest
    intact earlier step; ``restore(..., fallback=True)`` (config ``ckpt_fallback``) resumes
    from that step instead and moves the newer corrupt steps to ``<directory>_corrupt/``;
  * no digest (a checkpoint written before digests existed, or the file was removed): restored
    unverified, with a warning; never treated as corrupt;
  * a digest without its step (a crash between the two writes) is ignored and pruned later.
A failed restore never deletes or overwrites anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxpapers.optim import param_path  # The same "/"-joined leaf names as lr multipliers use.

INTEGRITY_DIR = "integrity"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read into the expected state."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's arrays do not match the digest written with it."""


def _leaf_digest(leaf) -> str | None:
    """sha256 of a leaf's dtype, shape and bytes; None for arrays this process cannot see whole."""
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable:
            if not leaf.sharding.is_fully_replicated:
                return None
            leaf = leaf.addressable_data(0)  # every process holds the same full copy
    arr = np.ascontiguousarray(np.asarray(leaf))
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(arr.view(np.uint8).reshape(-1) if arr.size else b"")
    return h.hexdigest()


def tree_digest(tree) -> dict[str, str | None]:
    """``{'params/dense/kernel': sha256, ...}`` over every leaf of a (restored or live) tree."""
    return {
        param_path(p): _leaf_digest(leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _digest_path(directory: str, step: int) -> str:
    return os.path.join(directory, INTEGRITY_DIR, f"{int(step)}.json")


def _write_digest(directory: str, step: int, digest: dict) -> None:
    path = _digest_path(directory, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"format": 1, "step": int(step), "arrays": digest}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def verify(directory: str, step: int, tree, *, strict: bool = True) -> bool:
    """Checks a restored ``tree`` against the digest of ``step``; True if verified, False when
    the step has no digest (unverified). Raises CorruptCheckpointError on any mismatch.

    ``strict``: every digested array must be in ``tree`` (restores into a target structure);
    raw restores (``restore_params``) compare the arrays both name.
    """
    path = _digest_path(directory, step)
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            saved = json.load(f)["arrays"]
        if not isinstance(saved, dict):
            raise TypeError("arrays is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(f"digest file {path} is unreadable ({e})") from e
    got = tree_digest(tree)
    bad = [n for n, d in got.items() if d is not None and n in saved and saved[n] not in (None, d)]
    missing = [n for n, d in saved.items() if d is not None and n not in got] if strict else []
    if bad or missing:
        what = f"arrays {bad[:3]} differ from" if bad else f"arrays {missing[:3]} are missing from"
        raise CorruptCheckpointError(f"{what} the digest written with the checkpoint ({path})")
    return True


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
        step = int(step)
        existing = set(self.manager.all_steps())
        # The digest goes first: once Orbax makes the step visible, its digest is on disk.
        if step not in existing and jax.process_index() == 0:
            _write_digest(self.directory, step, tree_digest(state))
        saved = self.manager.save(step, args=ocp.args.StandardSave(state), force=force)
        if jax.process_index() == 0:
            self._prune_digests(existing | {step})
        return saved

    def _prune_digests(self, keep: set) -> None:
        folder = os.path.join(self.directory, INTEGRITY_DIR)
        if not os.path.isdir(folder):
            return
        for name in os.listdir(folder):
            stem = name.split(".")[0]
            if name.endswith(".json") and stem.isdigit() and int(stem) not in keep:
                os.remove(os.path.join(folder, name))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, state_like, step: int | None = None, fallback: bool = False):
        """Restores into the structure, shapes and shardings of ``state_like`` and verifies it.

        A corrupt step raises CheckpointError naming the newest intact earlier step; with
        ``fallback`` that step is restored instead and the newer corrupt ones are moved aside.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        step = steps[0] if step is None and steps else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {self.directory}.")
        try:
            return restore_verified(self.manager, step, state_like, self.directory)
        except CheckpointError as first_error:
            error = first_error
        bad = [step]
        for earlier in (s for s in steps if s < step):
            try:
                state = restore_verified(self.manager, earlier, state_like, self.directory)
            except CheckpointError:
                bad.append(earlier)
                continue
            if not fallback:
                raise type(error)(
                    f"{error} The newest intact earlier checkpoint is step {earlier}; set "
                    f"--config.ckpt_fallback=True to resume from it (steps {bad} are then moved "
                    f"to {self.directory}_corrupt), or move step {step} away yourself."
                ) from error
            self._quarantine(bad)
            print(
                f"Checkpoint step(s) {bad} in {self.directory} are corrupt ({error}); resumed "
                f"from step {earlier}. The corrupt steps were moved to {self.directory}_corrupt.",
                flush=True,
            )
            return state
        raise type(error)(f"{error} No intact earlier checkpoint exists.") from error

    def _quarantine(self, steps) -> None:
        if jax.process_index() == 0:
            dest = f"{self.directory}_corrupt"
            os.makedirs(os.path.join(dest, INTEGRITY_DIR), exist_ok=True)
            for s in steps:
                src = os.path.join(self.directory, str(s))
                if os.path.isdir(src):
                    os.rename(src, os.path.join(dest, str(s)))
                if os.path.exists(_digest_path(self.directory, s)):
                    shutil.move(_digest_path(self.directory, s), _digest_path(dest, s))
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _abstract(state_like):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)


def restore_verified(manager, step, state_like, where):
    """``restore_into`` plus the digest check (see the module docstring for the rules)."""
    state = restore_into(manager, step, state_like, where)
    try:
        verified = verify(where, step, state)
    except CorruptCheckpointError as e:
        raise CorruptCheckpointError(
            f"Checkpoint step {step} in {where} is corrupt: {e}. Nothing was overwritten."
        ) from None
    if not verified:
        print(f"Checkpoint step {step} in {where} has no digest; restored unverified.", flush=True)
    return state


def restore_into(manager, step, state_like, where):
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(_abstract(state_like)))
    except Exception as e:  # Orbax raises many types for truncated files / mismatched trees.
        raise CheckpointError(
            f"Checkpoint step {step} in {where} cannot be restored into this run's state "
            f"({type(e).__name__}: {str(e)[:400]}). It may be truncated or corrupt, or written by "
            "a different config; delete it or point --workdir elsewhere. Nothing was overwritten."
        ) from e


@contextlib.contextmanager
def _another_run(directory: str, step: int | None, what: str):
    """``(manager, step, directory)`` of another run's checkpoints: ``directory`` or its
    ``checkpoints/`` folder, at ``step`` (the latest when None); the manager is closed after."""
    directory = os.path.abspath(directory)
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what} directory {directory!r} does not exist.")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {directory}.")
        yield manager, step, directory
    finally:
        manager.close()


def restore_dir(directory: str, state_like, step: int | None = None):
    """Restores from another run's checkpoint directory (``resume_from``)."""
    with _another_run(directory, step, "Checkpoint") as (manager, step, directory):
        return restore_verified(manager, step, state_like, directory)


def restore_params(directory: str, step: int | None = None):
    """The raw saved tree (no target structure) of another run, for ``init_from`` hooks."""
    with _another_run(directory, step, "init_from") as (manager, step, directory):
        try:
            tree = manager.restore(step, args=ocp.args.StandardRestore())
        except Exception as e:
            raise CheckpointError(f"Cannot read checkpoint step {step} in {directory}: {e}") from e
        try:
            verify(directory, step, tree, strict=False)
        except CorruptCheckpointError as e:
            raise CorruptCheckpointError(
                f"Checkpoint step {step} in {directory} is corrupt: {e}."
            ) from None
        return tree


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
