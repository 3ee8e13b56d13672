"""Analysis pipeline on constructed inputs with known answers, and the track-file reader."""

from __future__ import annotations

import numpy as np
import pytest

from jaxpapers.methods.granular_avalanche import analysis, io


def _packing(n_side=8, seed=0):
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return g.astype(float) + rng.uniform(-0.1, 0.1, g.shape)


def test_d2min_is_zero_for_any_affine_map():
    ref = _packing()
    rng = np.random.default_rng(3)
    a = np.eye(3) + 0.05 * rng.normal(size=(3, 3))
    cur = ref @ a.T + np.array([0.3, -0.2, 0.1])
    out = analysis.d2min(ref, cur, np.zeros(3), cutoff=1.5)
    ok = np.isfinite(out["d2"])
    assert ok.mean() > 0.9
    assert np.nanmax(out["d2"]) < 1e-20
    np.testing.assert_allclose(out["jac"][ok], np.broadcast_to(a, (ok.sum(), 3, 3)), atol=1e-10)
    # The global-affine alternative removes it too.
    assert np.abs(analysis.nonaffine_global(ref, cur, np.zeros(3))).max() < 1e-10


def test_d2min_equals_analytic_value_for_a_planted_displacement():
    ref = _packing()
    shear = np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cur = ref @ shear.T
    k = 4 * 64 + 4 * 8 + 4  # an interior particle
    a = np.array([0.01, -0.02, 0.015])
    cur[k] += a
    out = analysis.d2min(ref, cur, np.zeros(3), cutoff=1.5)
    # With J free, D2_k = |a|^2 (n - s^T Y^-1 s), s = sum_j d0_kj, Y = sum_j d0 d0^T.
    d0 = ref - ref[k]
    nb = (np.linalg.norm(d0, axis=1) < 1.5) & (np.arange(len(ref)) != k)
    s = d0[nb].sum(0)
    y = d0[nb].T @ d0[nb]
    expect = a @ a * (nb.sum() - s @ np.linalg.solve(y, s))
    assert out["d2"][k] == pytest.approx(expect, rel=1e-9)
    assert out["count"][k] == nb.sum()
    far = np.linalg.norm(ref - ref[k], axis=1) > 3.5
    assert np.nanmax(out["d2"][far]) < 1e-20  # untouched far away


def test_minimum_image_in_a_periodic_box():
    box = np.array([8.0, 0.0, 8.0])
    ref = _packing()
    cur = ref.copy()
    cur[:, 0] = np.mod(cur[:, 0] + 3.0, 8.0)  # a rigid translation, wrapped
    out = analysis.d2min(ref, cur, box, cutoff=1.5)
    assert np.nanmax(out["d2"]) < 1e-18


def test_correlation_length_recovered_from_exponential_field():
    rng = np.random.default_rng(0)
    xi = 1.5
    pts = rng.uniform(0, 14.0, (1400, 3))
    r = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    chol = np.linalg.cholesky(np.exp(-r / xi) + 1e-9 * np.eye(len(pts)))
    fits = []
    for _ in range(3):
        field = chol @ rng.normal(size=(len(pts), 3))  # 3 independent components
        corr = analysis.correlation_function(
            pts, field, np.zeros(3), rmax=5.0, nbins=20, subtract_mean=False
        )
        fits.append(analysis.correlation_length(corr)["xi"])
    assert np.mean(fits) == pytest.approx(xi, rel=0.1)


def test_stress_drop_detector_finds_planted_sawtooth_drops():
    rng = np.random.default_rng(1)
    strain = np.linspace(0, 1.0, 5000)
    stress = 0.5 + 0.8 * strain
    drops_at = np.array([0.11, 0.27, 0.42, 0.58, 0.76, 0.91])
    sizes = np.array([0.05, 0.08, 0.03, 0.1, 0.06, 0.04])
    for g, s in zip(drops_at, sizes, strict=True):
        i = np.searchsorted(strain, g)
        stress[i:] -= s * np.clip((np.arange(len(strain) - i)) / 4.0, 0, 1)  # 4-sample drop
    stress += rng.normal(0, 1e-3, len(strain))
    d = analysis.detect_drops(strain, stress, noise_factor=5.0)
    assert len(d["size"]) == len(sizes)
    np.testing.assert_allclose(d["strain_start"], drops_at, atol=2e-3)
    np.testing.assert_allclose(d["size"], sizes, atol=6e-3)
    q = analysis.quasi_periodicity(d, large_fraction=0.0)
    assert q["n_large"] == 6 and q["cv_interval"] < 0.3


def test_powerlaw_mle_recovers_exponent():
    rng = np.random.default_rng(2)
    tau, xmin = 1.5, 0.01
    x = xmin * (1 - rng.uniform(size=3000)) ** (-1 / (tau - 1))
    fit = analysis.powerlaw_fit(np.concatenate([x, rng.uniform(0, xmin, 300)]))
    assert fit["tau"] == pytest.approx(tau, abs=0.06)
    assert fit["xmin"] == pytest.approx(xmin, rel=0.3)


def test_regression_slope_and_interval():
    rng = np.random.default_rng(4)
    x = np.linspace(1, 5, 40)
    y = 0.7 * x + 0.2 + rng.normal(0, 0.05, 40)
    reg = analysis.regression(x, y)
    assert reg["slope_lo"] < 0.7 < reg["slope_hi"] and reg["r2"] > 0.98


def test_track_files_roundtrip_and_clear_errors(tmp_path):
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 5, (3, 20, 3))
    data = dict(
        ids=np.arange(20),
        radius=np.full(20, 0.5),
        positions=pos,
        scan_strain=np.array([0.0, 0.01, 0.02]),
        strain=np.linspace(0, 0.02, 50),
        stress=rng.normal(size=50),
        box=np.array([5.0, 0.0, 5.0]),
    )
    path = io.save_tracks(str(tmp_path / "t.npz"), data)
    back = io.load_tracks(path)
    np.testing.assert_array_equal(back["positions"], pos)
    # CSV: particle 7 missing from scan 1 is dropped.
    rows = ["scan,scan_strain,id,x,y,z,radius"]
    for s in range(3):
        for i in range(20):
            if not (s == 1 and i == 7):
                rows.append(f"{s},{0.01 * s},{i},{pos[s, i, 0]},{pos[s, i, 1]},{pos[s, i, 2]},0.5")
    (tmp_path / "t.csv").write_text("\n".join(rows))
    (tmp_path / "f.csv").write_text(
        "strain,stress\n"
        + "\n".join(f"{a},{b}" for a, b in zip(data["strain"], data["stress"], strict=True))
    )
    c = io.load_tracks(str(tmp_path / "t.csv"), str(tmp_path / "f.csv"))
    assert c["positions"].shape == (3, 19, 3) and c["meta"]["dropped"] == 1
    np.testing.assert_allclose(c["positions"][2], np.delete(pos[2], 7, axis=0))
    with pytest.raises(FileNotFoundError, match="not found"):
        io.load_tracks(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="positions must be"):
        io.validate({**data, "positions": pos[0]})
    with pytest.raises(ValueError, match="NaN"):
        io.validate({**data, "stress": np.full(50, np.nan)})
    with pytest.raises(ValueError, match="lacks"):
        io.validate({k: v for k, v in data.items() if k != "strain"})
