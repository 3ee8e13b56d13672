"""The half neighbour list + displacement-triggered rebuild against the full-list algorithm.

The reference below is the DEM as it was before the half list, written densely: every ordered
pair (i, j), i != j, is evaluated from i's side with its own history (N, N, 3) and the forces
are summed over j; no neighbour list at all. The production path (each pair once, +F on i and
-F on j, list rebuilt when a pair could close the skin) must follow the same trajectory to
rounding, in a periodic box and in a sheared Lees-Edwards box.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.granular_avalanche import contact, dem, neighbors

BOX = 5.0


def _gas(n=40, seed=0):
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    pos = (g + 0.5) * BOX / 4 + rng.uniform(-0.05, 0.05, (n, 3))
    return pos, rng.normal(0, 1.0, (n, 3)), rng.normal(0, 1.0, (n, 3)), rng.uniform(0.45, 0.6, n)


@functools.partial(jax.jit, static_argnames=("steps", "gdot"))
def _full_list_run(pos, vel, omega, parts, model, dt, steps, gdot):
    """Dense full-list velocity Verlet (nve/sphere); gdot > 0: Lees-Edwards shear."""
    n = pos.shape[0]
    box = parts.box_len
    eye = jnp.eye(n, dtype=bool)
    meff = 1.0 / (parts.inv_mass[:, None] + parts.inv_mass[None, :])
    rad_i = jnp.broadcast_to(parts.radius[:, None], (n, n))
    rad_j = jnp.broadcast_to(parts.radius[None, :], (n, n))

    def forces(pos, vel, omega, shear, roll, shift, update):
        dpos = pos[:, None] - pos[None]
        vr = vel[:, None] - vel[None]
        if gdot:
            dele, ny = neighbors.min_image_le(dpos, box, shift)
            vr = vr.at[..., 0].add(-ny * gdot * box[1])
        else:
            dele = neighbors.min_image(dpos, box)
        om_i = jnp.broadcast_to(omega[:, None], (n, n, 3))
        om_j = jnp.broadcast_to(omega[None], (n, n, 3))
        f, t, _, shear, roll, _ = contact.pair_forces(
            model, dt, dele, vr, om_i, om_j, rad_i, rad_j, meff, shear, roll, ~eye, update
        )
        return f.sum(1), t.sum(1), shear, roll

    zeros = jnp.zeros((n, n, 3))
    f, t, shear, roll = forces(pos, vel, omega, zeros, zeros, 0.0, False)

    def one(c, _):
        pos, vel, omega, f, t, shear, roll, shift = c
        vel = vel + 0.5 * dt * f * parts.inv_mass[:, None]
        omega = omega + 0.5 * dt * t * parts.inv_inertia[:, None]
        pos = pos + dt * vel
        shift = jnp.mod(shift + dt * gdot * box[1], box[0])
        f, t, shear, roll = forces(pos, vel, omega, shear, roll, shift, True)
        vel = vel + 0.5 * dt * f * parts.inv_mass[:, None]
        omega = omega + 0.5 * dt * t * parts.inv_inertia[:, None]
        return (pos, vel, omega, f, t, shear, roll, shift), None

    c = (pos, vel, omega, f, t, shear, roll, jnp.zeros(()))
    c, _ = jax.lax.scan(one, c, None, length=steps)
    return c[0], c[1], c[2]


@pytest.mark.parametrize(
    "gdot,contact_skin,contact_slots,touch_slots",
    [
        (0.0, None, None, None),
        (0.5, None, None, None),
        (0.0, 0.03, 4, None),
        (0.5, 0.03, 4, None),
        (0.5, 0.03, 4, 1),
    ],
)
def test_half_list_trajectory_equals_full_list(gdot, contact_skin, contact_slots, touch_slots):
    """With a contact skin the law runs on a contact list re-selected on displacement; with
    touch_slots on its touching pairs, packed every step."""
    steps = 600
    with jax.enable_x64(True):
        pos, vel, omega, radius = _gas()
        parts = dem.make_particles(radius, box_len=(BOX,) * 3)
        model = contact.make_model(
            "hooke", kn=1e3, kt=2e3 / 7, gamman=20.0, gammat=10.0, mu=0.5, mu_roll=0.1
        )
        sp = dem.SimParams(
            model=model,
            dt=1e-3,
            k_slots=16,
            skin=0.2,
            contact_skin=contact_skin,
            contact_slots=contact_slots,
            touch_slots=touch_slots,
            lees_edwards=gdot > 0,
            shear_rate=gdot,
        )
        st = dem.init_state(pos, vel, omega, parts, sp)
        st, _ = dem.run(st, parts, sp, steps)
        dem.check_lists(st, sp, "the test run")
        ref = _full_list_run(
            jnp.asarray(pos), jnp.asarray(vel), jnp.asarray(omega), parts, model, 1e-3, steps, gdot
        )
        builds, shear_max = int(st.n_builds), float(jnp.abs(st.shear).max())
        c_builds, c_cap = int(st.n_contact_builds), st.contacts.shape[0]
        got = (st.pos, st.vel, st.omega)
    assert builds > 5 and shear_max > 1e-4  # rebuilt on displacement; sticking contacts
    if contact_skin is None:  # the contact list is the neighbour list
        assert c_builds == builds and c_cap == st.pairs.shape[0]
    else:  # re-selected between neighbour builds, into a smaller buffer
        assert c_builds > 2 * builds and c_cap == len(pos) * contact_slots // 2
    for name, a, b in zip(("x", "v", "omega"), got, ref, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        err = np.abs(a - b).max() / np.abs(b).max()
        assert err < 1e-10, f"{name}: half list vs full list differ by {err:.1e}"


def test_contact_list_overflow_fails_loudly():
    with jax.enable_x64(True):
        pos, vel, omega, radius = _gas(seed=1)
        parts = dem.make_particles(radius, box_len=(BOX,) * 3)
        model = contact.make_model("hooke", kn=1e3, kt=2e3 / 7, gamman=20.0, gammat=10.0, mu=0.5)
        kw = dict(model=model, dt=1e-3, k_slots=16, skin=0.2, contact_skin=0.2)
        sp = dem.SimParams(**kw, contact_slots=1)  # 20 slots
        st = dem.init_state(pos, vel, omega, parts, sp)
        roomy = dem.init_state(pos, vel, omega, parts, dem.SimParams(**kw, contact_slots=16))
        with pytest.raises(RuntimeError, match=r"Contact-list overflow after setup: \d+ pairs"):
            dem.check_lists(st, sp, "setup")
    assert int(st.max_contacts) == int(roomy.max_contacts) > 20
    with jax.enable_x64(True):
        sp = dem.SimParams(**kw, contact_slots=16, touch_slots=0)  # 1 slot for the touching
        st, _ = dem.run(dem.init_state(pos, vel, omega, parts, sp), parts, sp, 300)
    assert int(st.max_touch) > 1
    with pytest.raises(RuntimeError, match="Touching-contact overflow after the run"):
        dem.check_lists(st, sp, "the run")


def test_trajectory_does_not_depend_on_the_skin():
    """The rebuild cadence follows the displacement; the physics does not see it."""
    with jax.enable_x64(True):
        pos, vel, omega, radius = _gas(seed=3)
        parts = dem.make_particles(radius, box_len=(BOX,) * 3)
        model = contact.make_model("hooke", kn=1e3, kt=2e3 / 7, gamman=20.0, gammat=10.0, mu=0.5)
        out = []
        for skin in (0.1, 0.6):
            sp = dem.SimParams(model=model, dt=1e-3, k_slots=24, skin=skin)
            st, _ = dem.run(dem.init_state(pos, vel, omega, parts, sp), parts, sp, 500)
            dem.check_lists(st, sp, f"skin {skin}")
            out.append((int(st.n_builds), np.asarray(st.pos), float(st.max_disp)))
    (b_small, x_small, d_small), (b_large, x_large, d_large) = out
    assert b_small > 2 * b_large and d_small <= 0.05 and d_large <= 0.3
    np.testing.assert_allclose(x_small, x_large, rtol=0, atol=1e-11)


def test_observables_at_a_cadence_equal_the_dense_record():
    with jax.enable_x64(True):
        pos, vel, omega, radius = _gas(seed=4)
        parts = dem.make_particles(radius, box_len=(BOX,) * 3)
        model = contact.make_model("hooke", kn=1e3, kt=2e3 / 7, gamman=20.0, gammat=10.0, mu=0.5)
        sp = dem.SimParams(
            model=model, dt=1e-3, k_slots=16, skin=0.3, lees_edwards=True, shear_rate=0.5
        )
        st = dem.init_state(pos, vel, omega, parts, sp)
        s1, dense = dem.run(st, parts, sp, 200)
        s10, sparse = dem.run(st, parts, sp, 200, 10)
    assert sparse.shape == (20, 6) and np.abs(np.asarray(dense)[:, 2]).max() > 0
    np.testing.assert_allclose(sparse, np.asarray(dense)[9::10], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s10.pos, s1.pos, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="multiple of observe_every"):
        dem.run(st, parts, sp, 200, 7)
