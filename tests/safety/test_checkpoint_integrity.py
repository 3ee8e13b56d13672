"""Checkpoint digests, fallback, finiteness before every save, metrics.jsonl after a resume."""

import json
import os
import types

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import checkpoint, config_lib, metrics, trainer


def _state(v: float):
    # Random values, so the (compressed) array file is mostly raw data, as in real checkpoints.
    w = np.random.RandomState(int(v * 10)).standard_normal((64, 64)).astype(np.float32)
    return {"w": jnp.asarray(w + v), "b": jnp.arange(8) + int(v), "key": jax.random.key(0)}


def _w(v: float):
    return np.asarray(_state(v)["w"])


def _save_steps(directory, steps=(1, 2, 3)):
    ck = checkpoint.Checkpointer(directory, keep=5, async_save=False)
    for s in steps:
        ck.save(s, _state(float(s)))
    ck.close()


def _flip_array_bytes(step_dir: str, n: int = 64, every_file: bool = False) -> None:
    """Flips ``n`` bytes in the middle of the biggest array data file of a checkpoint step (of
    every data file with ``every_file``: OCDBT stores tiny arrays inside its index nodes)."""
    files = [
        os.path.join(d, f)
        for d, _, fs in os.walk(step_dir)
        for f in fs
        if os.path.basename(d) == "d"
    ]
    for victim in files if every_file else [max(files, key=os.path.getsize)]:
        with open(victim, "r+b") as f:
            data = bytearray(f.read())
            mid = max(0, len(data) // 2 - n // 2)
            for i in range(mid, min(mid + n, len(data))):
                data[i] ^= 0xFF
            f.seek(0)
            f.write(data)


def test_flipped_bytes_are_an_error_naming_steps_and_nothing_is_touched(tmp_path):
    d = str(tmp_path / "checkpoints")
    _save_steps(d)
    assert sorted(os.listdir(os.path.join(d, checkpoint.INTEGRITY_DIR))) == [
        "1.json",
        "2.json",
        "3.json",
    ]
    _flip_array_bytes(os.path.join(d, "3"))
    before = sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
    ck = checkpoint.Checkpointer(d, keep=5, async_save=False)
    with pytest.raises(checkpoint.CheckpointError) as e:
        ck.restore(_state(0.0))
    msg = str(e.value)
    assert "step 3" in msg and "intact earlier checkpoint is step 2" in msg, msg
    assert "ckpt_fallback" in msg
    after = sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
    assert after == before, "a failed restore must not delete or overwrite anything"
    ck.close()


def test_fallback_restores_newest_intact_and_moves_corrupt_aside(tmp_path):
    d = str(tmp_path / "checkpoints")
    _save_steps(d)
    _flip_array_bytes(os.path.join(d, "3"))
    ck = checkpoint.Checkpointer(d, keep=5, async_save=False)
    state = ck.restore(_state(0.0), fallback=True)
    np.testing.assert_array_equal(np.asarray(state["w"]), _w(2.0))
    assert ck.latest_step() == 2
    assert os.path.isdir(os.path.join(f"{d}_corrupt", "3")), "the corrupt step is kept aside"
    ck.save(3, _state(3.5))  # training continues: the step number is free again
    ck.wait()
    np.testing.assert_array_equal(np.asarray(ck.restore(_state(0.0))["w"]), _w(3.5))
    ck.close()


def test_digest_rules_for_crashes_and_legacy_checkpoints(tmp_path):
    d = str(tmp_path / "checkpoints")
    _save_steps(d, (1, 2))
    # A crash after the digest but before Orbax committed: an orphan digest, ignored.
    checkpoint._write_digest(d, 7, {"w": "0" * 64})
    # A checkpoint without a digest (written before digests existed): restored unverified.
    os.remove(os.path.join(d, checkpoint.INTEGRITY_DIR, "2.json"))
    ck = checkpoint.Checkpointer(d, keep=5, async_save=False)
    assert ck.latest_step() == 2
    np.testing.assert_array_equal(np.asarray(ck.restore(_state(0.0))["w"]), _w(2.0))
    ck.save(3, _state(3.0))
    ck.wait()
    assert not os.path.exists(os.path.join(d, checkpoint.INTEGRITY_DIR, "7.json")), "pruned"
    # An unreadable digest is corruption, not "no digest".
    with open(os.path.join(d, checkpoint.INTEGRITY_DIR, "3.json"), "w") as f:
        f.write("{")
    with pytest.raises(checkpoint.CorruptCheckpointError, match="step 3.*unreadable"):
        ck.restore(_state(0.0), step=3)
    ck.close()


def test_restore_params_verifies_raw_trees(tmp_path):
    d = str(tmp_path / "run" / "checkpoints")
    _save_steps(d, (1,))
    tree = checkpoint.restore_params(str(tmp_path / "run"))
    np.testing.assert_array_equal(np.asarray(tree["w"]), _w(1.0))
    _flip_array_bytes(os.path.join(d, "1"))
    with pytest.raises(checkpoint.CheckpointError, match="step 1"):
        checkpoint.restore_params(str(tmp_path / "run"))


# --------------------------------------------------------------------------- trainer


@flax.struct.dataclass
class _S:
    step: jax.Array
    w: jax.Array


def _fake_method():
    """A 4-weight least-squares model whose weights turn NaN at step ``config.nan_at``."""

    def input_spec(config):
        return {"x": jax.ShapeDtypeStruct((config.batch_size, 4), jnp.float32)}

    def init_state(rng, config):
        return _S(step=jnp.zeros((), jnp.int32), w=jnp.ones((4,), jnp.float32))

    def train_step(state, batch, *, config):
        x = batch["x"]
        loss = jnp.mean((x @ state.w - 1.0) ** 2)
        w = state.w - 0.05 * jnp.mean(x * (x @ state.w - 1.0)[:, None], 0)
        w = jnp.where(state.step + 1 == config.nan_at, jnp.nan, w)
        return _S(step=state.step + 1, w=w), {"loss": loss}

    def make_source(config, split):
        return {"x": np.random.RandomState(0).randn(64, 4).astype(np.float32)}

    return types.SimpleNamespace(
        kind="train",
        input_spec=input_spec,
        init_state=init_state,
        train_step=train_step,
        make_source=make_source,
    )


def _config(**kw):
    c = config_lib.base_config("fake")
    c.nan_at = -1
    c.batch_size, c.num_train_steps, c.log_every, c.ckpt_every = 8, 6, 1, 3
    c.prefetch = 1
    for k, v in kw.items():
        setattr(c, k, v)
    return c


@pytest.fixture
def fake_method(monkeypatch):
    method = _fake_method()
    monkeypatch.setattr(trainer.methods, "get", lambda name: method)
    return method


def test_nan_state_never_becomes_a_checkpoint(tmp_path, fake_method):
    # ckpt_every=3 is not a multiple of log_every=5: step 3 is saved without being logged.
    config = _config(nan_at=3, log_every=5, num_train_steps=10)
    work = str(tmp_path / "w")
    with pytest.raises(trainer.NonFiniteLossError, match="step 3"):
        trainer.train(config, work)
    ck = checkpoint.Checkpointer(os.path.join(work, "checkpoints"))
    assert ck.latest_step() is None
    ck.close()


def _rows(work):
    rows = metrics.read_jsonl(os.path.join(work, "metrics.jsonl"))
    return [(r["step"], r["train/loss"]) for r in rows]


def test_metrics_after_kill_and_resume_equal_uninterrupted(tmp_path, fake_method):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    trainer.train(_config(), full)
    trainer.train(_config(), killed)
    # Simulate a SIGKILL after step 6's rows were written but before checkpoint 6 committed:
    # drop that checkpoint (and its digest) and leave a half-written line.
    import shutil

    shutil.rmtree(os.path.join(killed, "checkpoints", "6"))
    os.remove(os.path.join(killed, "checkpoints", checkpoint.INTEGRITY_DIR, "6.json"))
    with open(os.path.join(killed, "metrics.jsonl"), "a") as f:
        f.write('{"step": 7, "train/lo')
    assert len(_rows_lenient(killed)) == 6
    trainer.train(_config(), killed)  # resumes from step 3 and re-writes steps 4..6
    assert _rows(killed) == _rows(full)
    assert [s for s, _ in _rows(killed)] == [1, 2, 3, 4, 5, 6]


def _rows_lenient(work):
    with open(os.path.join(work, "metrics.jsonl")) as f:
        return [json.loads(ln) for ln in f if ln.strip().endswith("}")]


def test_truncate_after_is_atomic_and_keeps_earlier_rows(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        for s in (1, 2, 3, 2, 3, 4):
            f.write(json.dumps({"step": s, "x": s}) + "\n")
    metrics.truncate_after(path, 2)
    assert [r["step"] for r in metrics.read_jsonl(path)] == [1, 2, 2]
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_trainer_refuses_a_corrupt_newest_checkpoint_unless_fallback(tmp_path, fake_method):
    full, work = str(tmp_path / "full"), str(tmp_path / "w")
    trainer.train(_config(), full)
    trainer.train(_config(), work)
    ckdir = os.path.join(work, "checkpoints")
    _flip_array_bytes(os.path.join(ckdir, "6"), every_file=True)
    with pytest.raises(checkpoint.CheckpointError, match="step 6.*earlier checkpoint is step 3"):
        trainer.train(_config(num_train_steps=9), work)
    assert os.path.isdir(os.path.join(ckdir, "6")), "nothing is moved without the flag"
    trainer.train(_config(ckpt_fallback=True), work)  # resumes from 3 and redoes 4..6
    assert os.path.isdir(os.path.join(f"{ckdir}_corrupt", "6"))
    assert _rows(work) == _rows(full)
