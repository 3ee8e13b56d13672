"""Mid-simulation DEM checkpoints: an interrupted + resumed run equals the uninterrupted one."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from configs import granular_avalanche as cfg_mod
from jaxpapers import checkpoint
from jaxpapers.methods.granular_avalanche import experiment, simulate

PRESETS = {"walls": "smoke", "lees_edwards": "smoke_le"}


def _sim(boundary: str):
    return cfg_mod.get_config(f"{PRESETS[boundary]},sim.ckpt_every=2").sim


def _run(sim, ckpt_dir=None, stop_after=None, log=lambda s: None):
    return simulate.shear_experiment(
        sim, 0.8, 0.05, 0, log=log, ckpt_dir=ckpt_dir, stop_after=stop_after
    )


def _assert_identical(a: dict, b: dict) -> None:
    for k in ("positions", "scan_strain", "strain", "stress", "pressure", "radius"):
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    la, lb = jax.tree.leaves(a["final_state"]), jax.tree.leaves(b["final_state"])
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("boundary", ["walls", "lees_edwards"])
def test_resumed_run_equals_uninterrupted_bit_for_bit(boundary, tmp_path):
    sim = _sim(boundary)
    ref = _run(sim)
    ck = str(tmp_path / "ck")
    with pytest.raises(experiment.Interrupted) as first:
        _run(sim, ck, stop_after=3)  # stopped during the preparation
    total, n_prep = first.value.total, first.value.n_prep
    assert os.path.isdir(ck) and 3 < n_prep < total - 1
    with pytest.raises(experiment.Interrupted):
        _run(sim, ck, stop_after=total - 1)  # resumed, then stopped during the shear
    lines = []
    resumed = _run(sim, ck, log=lines.append)  # a fresh call with the same directory
    assert any("resumed" in s and f"chunk {total - 1}" in s for s in lines)
    assert any("strain" in s and "sigma/P" in s and " I " in s for s in lines)  # progress
    assert resumed["final_state"].pos.dtype == np.float64
    _assert_identical(ref, resumed)
    # A finished run re-run with its directory returns the same result without simulating.
    again = _run(sim, ck)
    _assert_identical(ref, again)


def test_corrupt_or_foreign_checkpoint_raises_a_clear_error(tmp_path):
    sim = _sim("lees_edwards")
    ck = str(tmp_path / "ck")
    with pytest.raises(experiment.Interrupted):
        _run(sim, ck, stop_after=2)
    # Different parameters: refused, nothing overwritten.
    other = cfg_mod.get_config("smoke_le,sim.kn=3000.0").sim
    with pytest.raises(checkpoint.CheckpointError, match="other simulation parameters"):
        _run(other, ck)
    # Truncate every array file of the latest checkpoint: a CheckpointError naming the directory.
    step = max(int(d) for d in os.listdir(ck) if d.isdigit())
    for root, _, files in os.walk(os.path.join(ck, str(step))):
        for f in files:
            if not f.endswith(("json", "_METADATA", "_CHECKPOINT_METADATA")):
                with open(os.path.join(root, f), "r+b") as fh:
                    fh.truncate(8)
    with pytest.raises(checkpoint.CheckpointError, match=ck):
        _run(sim, ck)
