"""Lees-Edwards periodic boundaries: minimum image, affine flow, virial stress, no retrace."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from configs import granular_avalanche as cfg_mod
from jaxpapers.methods.granular_avalanche import contact, dem, lees_edwards, neighbors, simulate

GDOT = 0.2
BOX = (4.0, 5.0, 4.0)


@functools.partial(jax.jit, static_argnames=("n",))
def _forces_along(state, parts, sp, n):
    def body(s, _):
        s = dem.step(s, parts, sp)
        return s, (s.force, s.torque, s.shear)

    return jax.lax.scan(body, state, None, length=n)


def _pair_run(pos, vel, omega, t0):
    kn = 1e4
    g = contact.hooke_gamma_from_restitution(0.7, kn, 0.5)
    model = contact.make_model("hooke", kn=kn, kt=2 / 7 * kn, gamman=g, gammat=0.5 * g, mu=0.5)
    sp = dem.SimParams(
        model=model,
        dt=contact.hooke_contact_time(kn, 0.5, g) / 50,
        k_slots=2,
        skin=0.3,
        lees_edwards=True,
        shear_rate=GDOT,
    )
    parts = dem.make_particles(np.array([0.5, 0.5]), box_len=BOX)
    st = dem.init_state(pos, vel, omega, parts, sp, time=t0)
    return _forces_along(st, parts, sp, 300)


def test_pair_across_sheared_boundary_feels_the_interior_force():
    """(a) A contact through the sheared y boundary == the same pair in the interior."""
    with jax.enable_x64(True):
        shift = 1.3
        t0 = shift / (GDOT * BOX[1])  # shift = gamma_dot L_y t0
        d0 = np.array([0.3, -0.9, 0.1])  # minimum-image x_i - x_j, |d0| = 0.954 < 1: touching
        vi, vj = np.array([0.05, -0.1, 0.02]), np.array([-0.1, 0.2, 0.0])
        omega = np.array([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.2]])
        xi = np.array([1.0, 4.8, 2.0])  # near the top; j's image above the box touches it
        xj = xi - d0 - np.array([shift, BOX[1], 0.0])  # j itself sits near the bottom
        xj[0] += BOX[0]  # and anywhere along x (one more period)
        across = _pair_run(np.stack([xi, xj]), np.stack([vi, vj]), omega, t0)
        # Interior: j at the image position, moving with the image velocity v_j + gamma_dot L_y.
        xi2 = np.array([1.0, 2.0, 2.0])
        vj2 = vj + np.array([GDOT * BOX[1], 0.0, 0.0])
        inside = _pair_run(np.stack([xi2, xi2 - d0]), np.stack([vi, vj2]), omega, t0)
    f_a, t_a, s_a = (np.asarray(x) for x in across[1])
    f_i, t_i, s_i = (np.asarray(x) for x in inside[1])
    fmax = np.abs(f_i).max()
    assert fmax > 1.0 and np.abs(s_i).max() > 1e-4  # a real, sliding, history-carrying contact
    np.testing.assert_allclose(f_a, f_i, rtol=0, atol=1e-10 * fmax)
    np.testing.assert_allclose(t_a, t_i, rtol=0, atol=1e-10 * np.abs(t_i).max())
    np.testing.assert_allclose(s_a, s_i, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f_a[:, 0], -f_a[:, 1], atol=1e-10 * fmax)  # action = reaction


def _lattice_run(cells: bool, strain: float = 4.3):
    """Simple-cubic lattice (spacing 1.05 d) moving with the affine profile v_x = gdot y."""
    a, m = 1.05, 4
    box = (a * m,) * 3
    g = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = (g + 0.5) * a
    gdot = 1.0
    vel = np.zeros_like(pos)
    vel[:, 0] = gdot * pos[:, 1]
    model = contact.make_model("hooke", kn=1e4, kt=2e3, gamman=10.0, gammat=5.0, mu=0.5)
    grid = ((0.0, 0.0, 0.0), (3, 3, 3), (box[0] / 3,) * 3, 8) if cells else None
    sp = dem.SimParams(
        model=model, dt=0.005, k_slots=12, skin=0.3, cells=grid, lees_edwards=True, shear_rate=gdot
    )
    parts = dem.make_particles(np.full(len(pos), 0.5), box_len=box)
    st = dem.init_state(pos, vel, np.zeros_like(pos), parts, sp)
    block = 20
    n_blocks = int(round(strain / gdot / sp.dt / block))  # the offset wraps L_x ~4 times

    @jax.jit
    def run(st):
        def one(s, _):
            s = dem.rebuild(s, parts, sp)

            def inner(x, _):
                x = dem.step(x, parts, sp)
                return x, (jax.numpy.abs(x.force).max(), (x.pairs[:, 0] < len(pos)).sum())

            return jax.lax.scan(inner, s, None, length=block)

        return jax.lax.scan(one, st, None, length=n_blocks)

    st, (fmax, npairs) = run(st)
    st = dem.rebuild(st, parts, sp)
    return pos, st, parts, sp, np.asarray(fmax), np.asarray(npairs)


def _neighbour_vectors(st, parts, sp):
    """Each particle's sorted list of minimum-image neighbour vectors (rounded)."""
    dele, _ = dem._pair_geometry(st, parts, sp, st.pairs)
    dele = np.round(np.stack([np.asarray(c) for c in dele], -1), 9)
    n = st.pos.shape[0]
    pairs = np.asarray(st.pairs)
    out = [[] for _ in range(n)]
    for (i, j), d in zip(pairs, dele, strict=True):
        if i < n:  # the half list holds (i, j) once: j sees -d
            out[i].append(tuple(d))
            out[j].append(tuple(-d + 0.0))
    return [sorted(v) for v in out]


@pytest.mark.parametrize("cells", [False, True])
def test_affine_flow_stays_affine_across_boundary_crossings(cells):
    """(b) Non-touching lattice to strain 4.3: no spurious force, velocities stay gdot * y,
    and every particle (boundary rows included) sees the same sheared-lattice neighbours."""
    with jax.enable_x64(True):
        pos0, st, parts, sp, fmax, npairs = _lattice_run(cells)
        vecs = _neighbour_vectors(st, parts, sp)
        # Sensitivity check: a wrong offset (none) breaks the translation invariance.
        wrong = _neighbour_vectors(st.replace(wall=st.wall.at[0].set(0.0)), parts, sp)
    pos, vel = np.asarray(st.pos), np.asarray(st.vel)
    assert fmax.max() == 0.0  # never a contact: every image is where the lattice puts it
    assert npairs.min() >= len(pos0) * 3  # 6 neighbours each (across the boundaries too)
    np.testing.assert_allclose(vel[:, 0], 1.0 * pos[:, 1], atol=1e-12)
    np.testing.assert_allclose(vel[:, 1:], 0.0, atol=1e-15)
    t = float(st.time)
    assert t == pytest.approx(4.3)
    np.testing.assert_allclose(pos[:, 0], pos0[:, 0] + t * pos0[:, 1], rtol=1e-10)
    assert len(vecs[0]) >= 8 and all(v == vecs[0] for v in vecs)
    assert not all(v == wrong[0] for v in wrong)


def test_le_cell_list_matches_brute_force_at_arbitrary_offsets():
    rng = np.random.default_rng(3)
    n, box = 300, np.array([6.0, 5.5, 6.5])
    with jax.enable_x64(True):
        pos = rng.uniform(0, 1, (n, 3)) * box
        pos[:, 1] += rng.integers(-2, 3, n) * box[1]  # unwrapped: several y periods
        pos[:, 0] += rng.integers(-2, 3, n) * box[0]
        radius = rng.uniform(0.45, 0.55, n)
        free = np.ones(n, bool)
        bl = jax.numpy.asarray(box)
        cap = neighbors.pair_capacity(n, 40)
        for shift in (0.0, 1.37, 5.9):
            nb, cb = neighbors.build_brute(pos, radius, free, bl, 0.3, cap, shift)
            nc, cc, fill = neighbors.build_cells(
                pos,
                radius,
                free,
                bl,
                0.3,
                cap,
                (0.0, 0.0, 0.0),
                (4, 4, 4),
                tuple(box / 4),
                30,
                shift,
            )
            assert int(fill) <= 30 and int(cb) == int(cc) <= cap
            nb, nc = np.asarray(nb)[: int(cb)], np.asarray(nc)[: int(cc)]
            assert np.all(nb[:, 0] < nb[:, 1]) and np.all(nc[:, 0] < nc[:, 1])  # i < j, once
            assert set(map(tuple, nb)) == set(map(tuple, nc)) and len(set(map(tuple, nb))) == len(
                nb
            )
            assert len(nb) > n / 2  # non-trivial lists


@pytest.fixture(scope="module")
def le_dense():
    c = cfg_mod.get_config("smoke_le,sim.prep_time=15.0,sim.total_strain=0.02")
    return simulate.shear_experiment(c.sim, 0.8, 0.05, 0, log=lambda s: None)


def test_dense_le_shear_has_positive_virial_shear_stress(le_dense):
    """(c) Virial shear stress resisting a positive shear rate is positive on average."""
    out = le_dense
    assert out["meta"]["boundary"] == "lees_edwards" and out["meta"]["phi"] > 0.5
    assert np.all(np.isfinite(out["stress"])) and np.all(out["pressure"] > 0)
    assert np.mean(out["stress"]) > 0.05 * np.mean(out["pressure"])
    assert out["strain"][-1] == pytest.approx(0.02, rel=0.15)
    # The barostat holds the normal stress P_yy at P on average (the box height moves).
    assert np.mean(out["pressure"]) == pytest.approx(1.0, abs=0.3)


def test_constant_volume_le_keeps_the_box():
    c = cfg_mod.get_config("smoke_le,sim.le_barostat=False,sim.total_strain=0.004")
    out = simulate.shear_experiment(c.sim, 0.8, 0.05, 0, log=lambda s: None)
    ly0 = lees_edwards.build_le_box(c.sim, 0)["box"][1]
    assert out["meta"]["height"] == ly0 and not out["meta"]["barostat"]
    assert np.all(np.isfinite(out["stress"]))


def test_le_run_jit_no_retrace():
    """(d) The Lees-Edwards run compiles once for any shear rate or contact parameters."""
    with jax.enable_x64(True):
        pos0, *_ = _lattice_run(False, 0.1)
        parts = dem.make_particles(np.full(len(pos0), 0.5), box_len=(4.2, 4.2, 4.2))
        model = contact.make_model("hooke", kn=1e4, kt=2e3, mu=0.5)
        sp = dem.SimParams(model=model, dt=0.005, k_slots=12, skin=0.3, lees_edwards=True)
        vel = np.zeros_like(pos0)
        st = dem.init_state(pos0, vel, vel, parts, sp)
        dem.run(st, parts, sp.replace(shear_rate=0.5), 10)
        before = dem.run._cache_size()
        sp2 = sp.replace(shear_rate=1.5, model=model.replace(mu=0.1, kn=2e4))
        st2, obs = dem.run(st, parts, sp2, 10)
        assert dem.run._cache_size() == before
        assert obs.shape == (10, 6) and np.all(np.isfinite(np.asarray(obs)))
