"""Config presets and the end-to-end `run` (smoke preset: DEM shear + analysis + report)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jaxpapers.methods.granular_avalanche as method
from configs import granular_avalanche as cfg_mod
from jaxpapers.methods.granular_avalanche import io


def test_every_preset_parses_and_typos_fail():
    for p in cfg_mod.PRESETS:
        c = cfg_mod.get_config(p)
        assert c.method == "granular_avalanche" and c.sim.n > 0
    assert cfg_mod.get_config("smoke,sim.n=10").sim.n == 10
    with pytest.raises(ValueError):
        cfg_mod.get_config("nope")
    with pytest.raises((KeyError, AttributeError, ValueError)):
        cfg_mod.get_config("smoke,sim.nn=3")
    assert method.kind == "analysis"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("gran_smoke"))
    out = method.run(cfg_mod.get_config("smoke"), wd)
    return wd, out


def test_smoke_run_writes_report_tracks_and_figures(smoke_run):
    wd, out = smoke_run
    files = set(os.listdir(wd))
    for f in (
        "summary.json",
        "report.md",
        "tracks_rough.npz",
        "tracks_smooth.npz",
        "stress_strain_rough.png",
        "stress_strain_rough_vs_smooth.png",
        "drop_vs_xi.png",
        "correlation_rough.png",
    ):
        assert f in files, f
    summary = json.load(open(os.path.join(wd, "summary.json")))
    assert set(summary) == {"rough", "smooth"}
    for tag in ("rough", "smooth"):
        assert out[f"{tag}/dem_steps"] > 0
        # Non-affine displacements are tiny compared with d and finite.
        assert 0 < out[f"{tag}/nonaffine_rms_over_d"] < 0.5
        tracks = io.load_tracks(os.path.join(wd, f"tracks_{tag}.npz"))
        assert tracks["positions"].shape[1] == cfg_mod.get_config("smoke").sim.n
        assert np.all(np.isfinite(tracks["stress"]))


def test_tracks_preset_analyses_a_saved_file(smoke_run, tmp_path):
    wd, _ = smoke_run
    c = cfg_mod.get_config(f"tracks,data.path={os.path.join(wd, 'tracks_rough.npz')}")
    out = method.run(c, str(tmp_path))
    assert "tracks/n_drops" in out and os.path.exists(tmp_path / "report.md")
