"""DEM physics on analytic cases: collisions, friction on an incline, conservation laws."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.granular_avalanche import contact, dem, neighbors


@functools.partial(jax.jit, static_argnames=("n",))
def _trajectory(state, parts, sp, n):
    def body(s, _):
        s = dem.step(s, parts, sp)
        return s, (s.pos, s.vel, s.omega)

    return jax.lax.scan(body, state, None, length=n)


def _collide(model, v0, dt, n):
    """Head-on collision of two d=1 spheres (mass 1); returns (e, contact time)."""
    sp = dem.SimParams(model=model, dt=dt, k_slots=1, skin=0.5)
    parts = dem.make_particles(np.array([0.5, 0.5]))
    pos = np.array([[0.0, 0, 0], [1.0 + 0.5 * v0 * dt, 0, 0]])
    vel = np.array([[0.5 * v0, 0, 0], [-0.5 * v0, 0, 0]])
    st = dem.init_state(pos, vel, np.zeros((2, 3)), parts, sp)
    st, (p, v, _) = _trajectory(st, parts, sp, n)
    gap = np.asarray(p[:, 1, 0] - p[:, 0, 0]) - 1.0
    e = float(v[-1, 1, 0] - v[-1, 0, 0]) / v0
    return e, float(np.sum(gap < 0) * dt)


@pytest.mark.parametrize("e", [0.5, 0.9])
def test_hooke_collision_restitution_and_contact_time(e):
    with jax.enable_x64(True):
        kn, meff = 1e4, 0.5
        g = contact.hooke_gamma_from_restitution(e, kn, meff)
        tc = contact.hooke_contact_time(kn, meff, g)
        model = contact.make_model("hooke", kn=kn, kt=0.0, gamman=g, mu=0.0)
        dt = tc / 400
        e_sim, t_sim = _collide(model, 0.2, dt, 800)
    assert e_sim == pytest.approx(e, abs=2e-3)
    assert t_sim == pytest.approx(tc, abs=2 * dt)


def test_hertz_collision_contact_time_and_speed_independent_restitution():
    with jax.enable_x64(True):
        kn, meff, reff = 1e4, 0.5, 0.25
        undamped = contact.make_model("hertz", kn=kn, kt=0.0, gamman=0.0, mu=0.0)
        for v0 in (0.1, 1.0):
            tc = contact.hertz_contact_time(kn, reff, meff, v0)
            e_sim, t_sim = _collide(undamped, v0, tc / 400, 800)
            assert t_sim == pytest.approx(tc, abs=3 * tc / 400)
            assert e_sim == pytest.approx(1.0, abs=1e-6)
        g = contact.hertz_gamma_from_restitution(0.6)
        damped = contact.make_model("hertz", kn=kn, kt=0.0, gamman=g, mu=0.0)
        es = [
            _collide(damped, v0, contact.hertz_contact_time(kn, reff, meff, v0) / 400, 800)[0]
            for v0 in (0.1, 1.0)
        ]
    # Tsuji-type damping: the restitution is the requested one at every impact speed.
    assert es[0] == pytest.approx(0.6, abs=3e-3)
    assert es[1] == pytest.approx(0.6, abs=3e-3)


def _incline(theta_deg, mu, lock_rotation, t_end=2.0):
    """A d=1 sphere on a (huge frozen sphere) plane; gravity tilted by theta."""
    big = 1e4
    kn = 1e5
    meff = 1.0
    g = contact.hooke_gamma_from_restitution(0.3, kn, meff)
    model = contact.make_model("hooke", kn=kn, kt=2 / 7 * kn, gamman=g, gammat=g, mu=mu)
    tc = contact.hooke_contact_time(kn, meff, g)
    th = math.radians(theta_deg)
    sp = dem.SimParams(
        model=model, dt=tc / 50, k_slots=1, skin=0.5, gravity=(math.sin(th), -math.cos(th), 0.0)
    )
    parts = dem.make_particles(
        np.array([0.5, big]),
        np.array([dem.FREE, dem.BOTTOM]),
        lock_rotation=np.array([lock_rotation, False]),
    )
    delta = math.cos(th) / kn
    pos = np.array([[0.0, 0.5 - delta, 0.0], [0.0, -big, 0.0]])
    st = dem.init_state(pos, np.zeros((2, 3)), np.zeros((2, 3)), parts, sp)
    n = int(t_end / sp.dt)
    st, (p, v, w) = _trajectory(st, parts, sp, n)
    vx = np.asarray(v[:, 0, 0])
    t = (np.arange(n) + 1) * sp.dt
    half = n // 2
    acc = (vx[-1] - vx[half]) / (t[-1] - t[half])
    slip = np.asarray(v[:, 0, 0] - 0.5 * w[:, 0, 2] * -1.0)  # contact-point velocity v + w x r
    return acc, float(np.abs(vx[-1])), float(np.asarray(p[-1, 0, 0])), float(np.abs(slip[-1]))


def test_incline_stick_slip_threshold_is_atan_mu():
    mu = 0.4  # atan(0.4) = 21.8 degrees
    with jax.enable_x64(True):
        acc_s, v_s, x_s, _ = _incline(15.0, mu, lock_rotation=True)
        acc_f, _, _, _ = _incline(30.0, mu, lock_rotation=True)
    assert v_s < 1e-4 and abs(x_s) < 1e-4  # sticks: only the elastic tangential deflection
    th = math.radians(30.0)
    assert acc_f == pytest.approx(math.sin(th) - mu * math.cos(th), rel=1e-2)


def test_free_sphere_rolls_without_slip_below_threshold():
    # With rotation the sphere rolls (a = 5/7 g sin) while tan(theta) < 7/2 mu, slides above.
    with jax.enable_x64(True):
        acc_r, _, _, _ = _incline(15.0, 0.4, lock_rotation=False)
        acc_sl, _, _, _ = _incline(60.0, 0.1, lock_rotation=False)
    assert acc_r == pytest.approx(5 / 7 * math.sin(math.radians(15.0)), rel=1e-2)
    th = math.radians(60.0)
    assert acc_sl == pytest.approx(math.sin(th) - 0.1 * math.cos(th), rel=1e-2)


def _gas(n=40, box=5.0, seed=0):
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    pos = (g + 0.5) * box / 4 + rng.uniform(-0.05, 0.05, (n, 3))
    vel = rng.normal(0, 1.0, (n, 3))
    radius = rng.uniform(0.45, 0.55, n)
    return pos, vel, radius


@pytest.fixture(scope="module")
def gas_runs():
    with jax.enable_x64(True):
        pos, vel, radius = _gas()
        parts = dem.make_particles(radius, box_len=(5.0, 5.0, 5.0))
        kn = 1e4
        tc = contact.hooke_contact_time(kn, 0.5, 0.0)
        out = {}
        for name, model in {
            # rolling=True in both so that one compiled function serves both runs.
            "elastic": contact.make_model("hooke", kn=kn, kt=0.0, gamman=0.0, mu=0.0, rolling=True),
            "frictional": contact.make_model(
                "hooke", kn=kn, kt=2 / 7 * kn, gamman=30.0, gammat=15.0, mu=0.5, mu_roll=0.1
            ),
        }.items():
            sp = dem.SimParams(model=model, dt=tc / 60, k_slots=16, skin=0.3)
            st = dem.init_state(pos, vel, np.zeros_like(pos), parts, sp)
            e0 = float(dem.kinetic_energy(st, parts) + dem.elastic_energy(st, parts, sp))
            p0 = np.asarray(jnp.sum(st.vel / parts.inv_mass[:, None], 0))
            st, _ = dem.run(st, parts, sp, 800)
            e1 = float(dem.kinetic_energy(st, parts) + dem.elastic_energy(st, parts, sp))
            p1 = np.asarray(jnp.sum(st.vel / parts.inv_mass[:, None], 0))
            dem.check_lists(st, sp, name)
            out[name] = (e0, e1, p0, p1, int(st.n_builds), float(st.max_disp), sp.skin)
    return out


def test_energy_conserved_without_damping(gas_runs):
    e0, e1, *_, builds, disp, skin = gas_runs["elastic"]
    assert builds > 3 and disp <= skin / 2  # rebuilt on displacement, never past skin / 2
    assert abs(e1 - e0) / e0 < 1e-3


def test_momentum_conserved_with_friction_and_damping(gas_runs):
    e0, e1, p0, p1, *_ = gas_runs["frictional"]
    assert e1 < 0.9 * e0  # dissipative: collisions did happen
    np.testing.assert_allclose(p1, p0, atol=1e-10 * np.abs(p0).sum())


def _pair_set(pairs, n):
    p = np.asarray(pairs)
    p = p[p[:, 0] < n]
    assert np.all(p[:, 0] < p[:, 1])  # half list: i < j
    return set(map(tuple, p))


def test_cell_list_matches_brute_force_and_history_follows_pairs():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        n, box = 300, 8.0
        pos = rng.uniform(0, box, (n, 3))
        pos[:, 1] = rng.uniform(0, 6.0, n)  # open along y
        radius = rng.uniform(0.45, 0.55, n)
        free = jnp.ones(n, bool)
        bl = jnp.array([box, 0.0, box])
        cap = neighbors.pair_capacity(n, 24)
        brute = jax.jit(neighbors.build_brute, static_argnums=(4, 5))
        cells = jax.jit(neighbors.build_cells, static_argnums=(4, 5, 6, 7, 8, 9))
        nb, cb = brute(jnp.asarray(pos), jnp.asarray(radius), free, bl, 0.3, cap)
        nc, cc, fill = cells(
            jnp.asarray(pos),
            jnp.asarray(radius),
            free,
            bl,
            0.3,
            cap,
            (0.0, -1.0, 0.0),
            (6, 7, 6),
            (box / 6, 1.4, box / 6),
            16,
        )
        assert int(cb) <= cap and int(fill) <= 16 and int(cc) == int(cb)
        assert _pair_set(nb, n) == _pair_set(nc, n)
        assert len(_pair_set(nb, n)) == int(cb) > 1.5 * n  # each pair once; not vacuous
        # Brute force agrees with the distance criterion pair by pair.
        d = pos[:, None] - pos[None]
        d[..., [0, 2]] -= box * np.round(d[..., [0, 2]] / box)
        close = np.linalg.norm(d, axis=-1) < radius[:, None] + radius[None] + 0.3
        assert _pair_set(nb, n) == {(a, b) for a, b in np.argwhere(close) if a < b}
        # History follows its pair through a reordering of the list (and a new pair is zero).
        hist = jnp.asarray(rng.normal(size=(3, cap)))
        k = int(cb)
        perm = np.concatenate([rng.permutation(k - 1), [cap - 1], np.arange(k, cap - 1)])
        old = np.asarray(nb).copy()
        old[k - 1] = n  # pair k-1 was not listed before
        moved = jax.jit(neighbors.remap_history, static_argnums=3)(
            jnp.asarray(np.asarray(nb)[perm]), jnp.asarray(old), hist, n
        )
        moved = np.asarray(moved)
        expect = np.where(perm < k - 1, np.asarray(hist)[:, perm], 0.0)
        np.testing.assert_array_equal(moved, expect)


def test_overflow_fails_loudly():
    with jax.enable_x64(True):
        pos, vel, radius = _gas()
        parts = dem.make_particles(radius, box_len=(5.0, 5.0, 5.0))
        model = contact.make_model("hooke", kn=1e4, kt=0.0, gamman=0.0, mu=0.0)
        sp = dem.SimParams(model=model, dt=1e-4, k_slots=1, skin=0.3)
        st = dem.init_state(pos, vel, np.zeros_like(pos), parts, sp)
        with pytest.raises(RuntimeError, match=r"^Neighbour overflow after setup: \d+ pairs"):
            dem.check_lists(st, sp, "setup")
        grid = ((0.0, 0.0, 0.0), (3, 3, 3), (5.0 / 3,) * 3, 1)  # one sphere per cell: too few
        sp = dem.SimParams(model=model, dt=1e-4, k_slots=16, skin=0.3, cells=grid)
        st = dem.init_state(pos, vel, np.zeros_like(pos), parts, sp)
        with pytest.raises(RuntimeError, match=r"^Cell overflow after setup"):
            dem.check_lists(st, sp, "setup")


def test_run_jit_no_retrace(gas_runs):
    # Same shapes and switches as the "elastic" gas run: the compiled function is reused, even
    # with different numbers (contact parameters and dt are traced leaves, not static).
    with jax.enable_x64(True):
        pos, vel, radius = _gas(seed=2)
        parts = dem.make_particles(radius, box_len=(5.0, 5.0, 5.0))
        sp = dem.SimParams(
            model=contact.make_model(kn=2e4, kt=0.0, gamman=10.0, mu=0.3, rolling=True),
            dt=3e-4,
            k_slots=16,
            skin=0.3,
        )
        st = dem.init_state(pos, vel, np.zeros_like(pos), parts, sp)
        before = dem.run._cache_size()
        st2, obs = dem.run(st, parts, sp, 800)
        st3, _ = dem.run(st, parts, sp, 800)
        assert dem.run._cache_size() == before
        assert obs.shape == (800, 6) and np.all(np.isfinite(np.asarray(st2.pos)))
        np.testing.assert_array_equal(np.asarray(st2.pos), np.asarray(st3.pos))
        assert st2.pos.dtype == jnp.float64
