"""Jitted 3D frictional DEM: spheres with translation + rotation, contact history, rough walls.

Integration mirrors LAMMPS ``fix nve/sphere`` (velocity Verlet; forces at x(t+dt) are evaluated
with the half-step velocities, which is also what the Cundall-Strack history integrates), so a
LAMMPS run of the same system is comparable step by step.

Shear cell (the experiment's geometry): periodic along x (shear) and z (vorticity), a bottom wall
and a top wall of glued spheres along y (gradient). The top wall is a rigid body carrying a
constant normal load P (servo on its height, viscous damping) and is driven along x either at a
fixed velocity or through a spring of stiffness ``k_drive`` pulled at that velocity; the spring
extension is the "force sensor" reading, as in a stress-controlled shear cell.

Lees-Edwards mode (``SimParams.lees_edwards``): no walls, a box periodic along x, y and z whose
y-images are displaced along x by the accumulated shear offset (integral of gamma_dot L_y dt,
kept modulo L_x) and move with +-gamma_dot L_y (`neighbors.min_image_le`; the relative
velocity of a pair across the boundary is corrected by n_y gamma_dot L_y). The ``wall`` slots
hold the image box: [offset, L_y - L_y0, gamma_dot L_y, dL_y/dt]. With ``servo`` the box
height is a piston of mass ``wall_mass`` driven by (P_yy - pressure) * area (damped by
``wall_damping``): constant normal stress, as in the wall cell; positions are remapped
affinely along y when L_y changes (velocities are not, like LAMMPS' ``remap x``). Without
``servo`` the volume is constant. Plain boundary-driven shear, not SLLOD: the equations of
motion are Newton's, the particles start on the streaming profile v_x = gamma_dot y and the
sheared images alone drive the flow. Positions are kept unwrapped (each particle is one
continuous image, so its stored velocity is that image's velocity and the streaming profile
holds with the unwrapped y); only the neighbour build wraps them internally. The stress is the
virial one, (sum_contacts r_ij f_ij + sum_i m_i v'_i v'_i) / V with the peculiar velocity
v' = v - gamma_dot y e_x (`stress_tensor`).

Neighbour list: a half list of pairs (i < j, `neighbors`), each contact evaluated once with +F on
i and -F on j, rebuilt inside the jitted step when needed, as LAMMPS' ``neigh_modify check yes``:
when twice the largest displacement since the last build, plus (Lees-Edwards) the change of the
image offset and of L_y, exceeds the skin, so no pair can come into contact unlisted. The list
and cell capacities are static; overflows are recorded in the state and `check_lists` raises on
the host.

Contact list: the contact law runs only on the listed pairs closer than R_i + R_j +
``contact_skin`` (a Verlet list of the Verlet list, LAMMPS has none: it skips non-touching
pairs pair by pair, which a vectorised law cannot), selected from the neighbour list (cumsum +
scatter) into C = N ``contact_slots`` / 2 slots, with the same displacement criterion against
``contact_skin``: a pair outside it cannot touch before the next selection. Its histories live
in the contact list, carried across selections by (i, j) key; a pair that drops out is not
touching, so its history is zero, as it would be on the full list. XLA:CPU evaluates the law as
tens of loops over all slots, so its cost follows C (a few times the touching pairs in a loose
packing) instead of P. With ``touch_slots`` the touching contacts are also packed every step
(N touch_slots / 2 slots) and the law runs on them only; overflows of either buffer are
recorded like the list's and raised by `check_lists`.

All arrays are float64: call the public functions inside ``with jax.enable_x64(True)`` (the
runner in ``simulate.py`` does), never by flipping the global flag.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxpapers.methods.granular_avalanche import neighbors
from jaxpapers.methods.granular_avalanche.contact import ContactModel, pair_forces_xyz

FREE, BOTTOM, TOP = 0, 1, 2


@struct.dataclass
class Particles:
    """Per-particle constants. Wall and frozen particles have inv_mass = 0."""

    radius: jax.Array  # (N,)
    inv_mass: jax.Array  # (N,)
    mass: jax.Array  # (N,) used for the effective mass when the other particle is a wall
    inv_inertia: jax.Array  # (N,) 0 locks rotation
    kind: jax.Array  # (N,) int32: FREE, BOTTOM, TOP
    ref_pos: jax.Array  # (N, 3) wall particles: position at zero wall displacement
    box_len: jax.Array  # (3,) periodic length, 0 = open axis


@struct.dataclass
class DEMState:
    """Dynamic state (a pytree; checkpointable as plain arrays)."""

    pos: jax.Array  # (N, 3) unwrapped positions
    vel: jax.Array
    omega: jax.Array
    force: jax.Array
    torque: jax.Array
    pairs: jax.Array  # (P, 2) int32 half list (i < j), sentinel (N, N); P = N k_slots / 2
    contacts: jax.Array  # (C, 2) int32 the listed pairs within the contact skin, same layout
    shear: jax.Array  # (3, C) tangential spring history of contact (i, j), i's side (x, y, z rows)
    roll: jax.Array  # (3, C) rolling torque history, i's side
    pos_build: jax.Array  # (N, 3) positions at the last neighbour build
    box_build: jax.Array  # (2,) Lees-Edwards image offset and L_y - L_y0 at the last build
    pos_contact: jax.Array  # (N, 3) positions at the last contact-list build
    box_contact: jax.Array  # (2,) image offset and L_y - L_y0 at the last contact-list build
    wall: jax.Array  # (4,) top wall [X, Y, VX, VY] displacement/velocity
    wall_force: jax.Array  # (3,) force of the particles on the top wall
    time: jax.Array  # scalar
    max_disp: jax.Array  # scalar: largest displacement since a build seen by a force evaluation
    max_count: jax.Array  # scalar int: largest pair count seen (overflow when > P)
    max_fill: jax.Array  # scalar int: fullest cell seen (overflow when > cell capacity)
    max_contacts: jax.Array  # scalar int: largest contact-list count seen (overflow when > C)
    max_touch: jax.Array  # scalar int: most touching contacts seen (touch_slots overflow)
    n_builds: jax.Array  # scalar int: neighbour builds so far
    n_contact_builds: jax.Array  # scalar int: contact-list builds so far (neighbour builds too)
    virial: jax.Array  # (3, 3) sum_contacts (x_i - x_j) (x) f_ij of the last step that asked for it


@struct.dataclass
class SimParams:
    """Simulation parameters: numbers are traced leaves, switches and sizes are static."""

    model: ContactModel
    dt: float
    # Pair-list capacity: k_slots neighbours per particle on average (N k_slots / 2 pairs).
    k_slots: int = struct.field(pytree_node=False, default=16)
    skin: float = struct.field(pytree_node=False, default=0.2)
    # Contact list (module doc): the listed pairs closer than R_i + R_j + contact_skin, N
    # contact_slots / 2 slots. None: contact_skin = skin and contact_slots = k_slots, so the
    # contact list is the neighbour list itself (no extra builds, no extra overflow).
    contact_skin: float | None = struct.field(pytree_node=False, default=None)
    contact_slots: int | None = struct.field(pytree_node=False, default=None)
    # Touching contacts packed every step (N touch_slots / 2 slots) before the law; None: the
    # law runs on the whole contact list.
    touch_slots: int | None = struct.field(pytree_node=False, default=None)
    gravity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Top wall: load, area, mass, damping, drive.
    pressure: float = 0.0
    area: float = 1.0
    wall_mass: float = 1.0
    wall_damping: float = 0.0  # viscous coefficient on the wall's y velocity
    shear_velocity: float = 0.0
    k_drive: float = 0.0
    servo: bool = struct.field(pytree_node=False, default=False)  # wall height follows the load
    driven: bool = struct.field(pytree_node=False, default=False)  # spring drive (else imposed)
    # Optional cell list (None: brute force): (lo, ncell, cell_size, capacity).
    cells: tuple | None = struct.field(pytree_node=False, default=None)
    # Lees-Edwards boundaries (all axes periodic, no walls) sheared at `shear_rate` along x/y.
    lees_edwards: bool = struct.field(pytree_node=False, default=False)
    shear_rate: float = 0.0


def _gather(a: jax.Array, idx: jax.Array) -> jax.Array:
    return jnp.take(a, idx, axis=0, mode="clip")


def le_shift(state: DEMState, sp: SimParams) -> jax.Array | None:
    """Lees-Edwards x offset of the image above, modulo L_x (None: not Lees-Edwards)."""
    return state.wall[0] if sp.lees_edwards else None


def box_now(state: DEMState, parts: Particles, sp: SimParams) -> jax.Array:
    """Current periodic lengths (the Lees-Edwards height L_y may move with the barostat)."""
    return parts.box_len.at[1].add(state.wall[1]) if sp.lees_edwards else parts.box_len


def _xyz(a: jax.Array, idx: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Components of the rows ``idx`` of an (N, 3) array, each of shape idx.shape."""
    return tuple(_gather(a[:, c], idx) for c in range(3))


def contact_capacity(n: int, sp: SimParams) -> int:
    """Static length C of the contact list (module doc)."""
    slots = sp.k_slots if sp.contact_slots is None else sp.contact_slots
    return neighbors.pair_capacity(n, slots)


def contact_skin(sp: SimParams) -> float:
    return sp.skin if sp.contact_skin is None else sp.contact_skin


def _pair_geometry(state: DEMState, parts: Particles, sp: SimParams, pairs=None):
    """Minimum-image x_i - x_j and v_i - v_j of the pairs (default: the contact list), as
    (x, y, z) component tuples of (P,) arrays (Lees-Edwards aware)."""
    pairs = state.contacts if pairs is None else pairs
    i, j = pairs[:, 0], pairs[:, 1]
    pi, pj, vi, vj = _xyz(state.pos, i), _xyz(state.pos, j), _xyz(state.vel, i), _xyz(state.vel, j)
    dpos = jnp.stack([a - b for a, b in zip(pi, pj, strict=True)], axis=-1)
    vr = tuple(a - b for a, b in zip(vi, vj, strict=True))
    if not sp.lees_edwards:
        dele = neighbors.min_image(dpos, parts.box_len)
        return tuple(dele[:, c] for c in range(3)), vr
    box = box_now(state, parts, sp)
    dele, ny = neighbors.min_image_le(dpos, box, le_shift(state, sp))
    vr = (vr[0] - ny * (sp.shear_rate * box[1]), vr[1], vr[2])
    return tuple(dele[:, c] for c in range(3)), vr


def compute_forces(
    state: DEMState,
    parts: Particles,
    sp: SimParams,
    update_history: bool = True,
    virial: bool = True,
) -> DEMState:
    """Pair forces/torques (each pair once, +F on i, -F on j); updates the histories.

    ``virial`` (static) also sums the contact virial into ``state.virial``; without it the
    field keeps its previous value.
    """
    n = state.pos.shape[0]
    pairs, shear0, roll0, slot = state.contacts, state.shear, state.roll, None
    if sp.touch_slots is not None:  # the law on the touching contacts only, packed each step
        ci, cj = pairs[:, 0], pairs[:, 1]
        dc, _ = _pair_geometry(state, parts, sp, pairs)
        rs = _gather(parts.radius, ci) + _gather(parts.radius, cj)
        touch = (ci < n) & (dc[0] ** 2 + dc[1] ** 2 + dc[2] ** 2 < rs * rs)
        cap_t = neighbors.pair_capacity(n, sp.touch_slots)
        n_touch = jnp.sum(touch, dtype=jnp.int32)
        dest = jnp.where(touch, jnp.cumsum(touch, dtype=jnp.int32) - 1, cap_t)
        c = pairs.shape[0]
        slot = (
            jnp.full((cap_t,), c, jnp.int32)
            .at[dest]
            .set(jnp.arange(c, dtype=jnp.int32), mode="drop")
        )
        pairs = jnp.take(pairs, slot, axis=0, mode="fill", fill_value=n)
        shear0 = jnp.take(shear0, slot, axis=1, mode="fill", fill_value=0.0)
        roll0 = jnp.take(roll0, slot, axis=1, mode="fill", fill_value=0.0)
        state = state.replace(max_touch=jnp.maximum(state.max_touch, n_touch))
    i, j = pairs[:, 0], pairs[:, 1]
    valid = i < n
    dele, vr = _pair_geometry(state, parts, sp, pairs)
    rad_i, rad_j = _gather(parts.radius, i), _gather(parts.radius, j)
    # Effective mass; a wall partner (inv_mass 0) gives m* = m_other, as LAMMPS' fix freeze.
    meff = 1.0 / jnp.maximum(_gather(parts.inv_mass, i) + _gather(parts.inv_mass, j), 1e-300)
    f, t_i, t_j, shear, roll, _ = pair_forces_xyz(
        sp.model,
        sp.dt,
        dele,
        vr,
        _xyz(state.omega, i),
        _xyz(state.omega, j),
        rad_i,
        rad_j,
        meff,
        tuple(shear0),
        tuple(roll0),
        valid,
        update_history,
    )
    shear, roll = jnp.stack(shear), jnp.stack(roll)
    if slot is not None:  # back into the contact list; the others do not touch: zero history
        shear = jnp.zeros_like(state.shear).at[:, slot].set(shear, mode="drop")
        roll = jnp.zeros_like(state.roll).at[:, slot].set(roll, mode="drop")
    # One scatter-add of [F, torque] rows: +F on i, -F on j; the sentinel rows (N) are dropped.
    rows = jnp.concatenate(
        [jnp.stack([*f, *t_i], axis=-1), jnp.stack([*(-c for c in f), *t_j], axis=-1)]
    )
    acc = jnp.zeros((n, 6), rows.dtype).at[jnp.concatenate([i, j])].add(rows, mode="drop")
    force, torque = acc[:, :3], acc[:, 3:]
    top = parts.kind == TOP
    wall_force = jnp.sum(jnp.where(top[:, None], force, 0.0), axis=0)
    free = parts.kind == FREE
    grav = jnp.asarray(sp.gravity) / jnp.maximum(parts.inv_mass, 1e-300)[:, None]
    force = force + jnp.where(free[:, None], grav, 0.0)
    if virial:
        vir = jnp.stack([jnp.stack([jnp.sum(a * b) for b in f]) for a in dele])
    else:
        vir = state.virial
    return state.replace(
        force=force,
        torque=torque,
        shear=shear,
        roll=roll,
        wall_force=wall_force,
        virial=vir,
    )


def rebuild(state: DEMState, parts: Particles, sp: SimParams) -> DEMState:
    """New half neighbour list, then a new contact list from it (histories follow)."""
    cap = state.pairs.shape[0]
    free = parts.kind == FREE
    shift = le_shift(state, sp)
    box = box_now(state, parts, sp)
    fill = jnp.zeros((), jnp.int32)
    if sp.cells is None:
        pairs, count = neighbors.build_brute(
            state.pos, parts.radius, free, box, sp.skin, cap, shift
        )
    else:
        lo, ncell, cell_size, cell_cap = sp.cells
        pairs, count, fill = neighbors.build_cells(
            state.pos,
            parts.radius,
            free,
            box,
            sp.skin,
            cap,
            lo,
            ncell,
            cell_size,
            cell_cap,
            shift,
        )
    state = state.replace(
        pairs=pairs,
        pos_build=state.pos,
        box_build=state.wall[:2],
        max_count=jnp.maximum(state.max_count, count),
        max_fill=jnp.maximum(state.max_fill, fill.astype(jnp.int32)),
        n_builds=state.n_builds + 1,
    )
    return rebuild_contacts(state, parts, sp)


def rebuild_contacts(state: DEMState, parts: Particles, sp: SimParams) -> DEMState:
    """New contact list: the listed pairs closer than R_i + R_j + contact_skin (module doc).

    Histories are carried by (i, j) key from the previous contact list; a pair new to it was
    beyond the skin since the last selection, so not touching: zero history.
    """
    n = state.pos.shape[0]
    i, j = state.pairs[:, 0], state.pairs[:, 1]
    dele, _ = _pair_geometry(state, parts, sp, state.pairs)
    cut = _gather(parts.radius, i) + _gather(parts.radius, j) + contact_skin(sp)
    near = (i < n) & (dele[0] ** 2 + dele[1] ** 2 + dele[2] ** 2 < cut * cut)
    contacts, count = neighbors.select_pairs(near, state.pairs, state.contacts.shape[0], n)
    hist = jnp.concatenate([state.shear, state.roll])  # one key match for both histories
    hist = neighbors.remap_history(contacts, state.contacts, hist, n)
    return state.replace(
        contacts=contacts,
        shear=hist[:3],
        roll=hist[3:],
        pos_contact=state.pos,
        box_contact=state.wall[:2],
        max_contacts=jnp.maximum(state.max_contacts, count),
        n_contact_builds=state.n_contact_builds + 1,
    )


def _displacement(state: DEMState, parts: Particles, sp: SimParams, pos_build, box_build):
    """(largest displacement since a build, the drift bound that triggers a rebuild).

    Two particles that each moved at most d changed their separation by at most 2 d; across the
    sheared y boundary the image offset and L_y add their own changes (like LAMMPS, which adds
    the motion of the deforming box's corners to its `check yes` criterion).
    """
    disp = jnp.sqrt(jnp.max(jnp.sum((state.pos - pos_build) ** 2, axis=-1)))
    drift = 2.0 * disp
    if sp.lees_edwards:
        lx = parts.box_len[0]
        ds = state.wall[0] - box_build[0]  # offset kept modulo L_x: nearest change
        drift = drift + jnp.abs(ds - lx * jnp.round(ds / lx))
        drift = drift + jnp.abs(state.wall[1] - box_build[1])
    return disp, drift


def maybe_rebuild(state: DEMState, parts: Particles, sp: SimParams) -> DEMState:
    """Rebuilds the neighbour list when a pair could otherwise reach contact unlisted, else the
    contact list when a pair could reach contact outside it (module doc)."""
    disp, drift = _displacement(state, parts, sp, state.pos_build, state.box_build)
    need = drift > sp.skin
    if sp.contact_skin is None:  # the contact list is the neighbour list
        branch = need.astype(jnp.int32) * 2
    else:
        _, cdrift = _displacement(state, parts, sp, state.pos_contact, state.box_contact)
        branch = jnp.where(need, 2, (cdrift > sp.contact_skin).astype(jnp.int32))
    state = jax.lax.switch(
        branch,
        [
            lambda s: s,
            lambda s: rebuild_contacts(s, parts, sp),
            lambda s: rebuild(s, parts, sp),
        ],
        state,
    )
    return state.replace(max_disp=jnp.maximum(state.max_disp, jnp.where(need, 0.0, disp)))


def check_lists(state: DEMState, sp: SimParams, where: str) -> None:
    """Host check after a run: raises a one-line error if a list or a cell overflowed."""
    cap = state.pairs.shape[0]
    if int(state.max_count) > cap:
        raise RuntimeError(
            f"Neighbour overflow after {where}: {int(state.max_count)} pairs > capacity {cap} "
            f"(N k_slots / 2, k_slots={sp.k_slots}); raise k_slots."
        )
    ccap = state.contacts.shape[0]
    if int(state.max_contacts) > ccap:
        raise RuntimeError(
            f"Contact-list overflow after {where}: {int(state.max_contacts)} pairs within the "
            f"contact skin > capacity {ccap} (N contact_slots / 2, contact_slots="
            f"{sp.contact_slots}); raise contact_slots or lower contact_skin."
        )
    if sp.touch_slots is not None:
        tcap = neighbors.pair_capacity(state.pos.shape[0], sp.touch_slots)
        if int(state.max_touch) > tcap:
            raise RuntimeError(
                f"Touching-contact overflow after {where}: {int(state.max_touch)} touching "
                f"pairs > capacity {tcap} (N touch_slots / 2, touch_slots={sp.touch_slots}); "
                "raise touch_slots."
            )
    if sp.cells is not None and int(state.max_fill) > sp.cells[3]:
        raise RuntimeError(
            f"Cell overflow after {where}: {int(state.max_fill)} particles in a cell > "
            f"capacity {sp.cells[3]}; raise the cell capacity."
        )


def _wall_accel(state: DEMState, sp: SimParams) -> tuple[jax.Array, jax.Array]:
    fx, fy = state.wall_force[0], state.wall_force[1]
    ay = (fy - sp.pressure * sp.area - sp.wall_damping * state.wall[3]) / sp.wall_mass
    stage = sp.shear_velocity * state.time
    ax = (fx + sp.k_drive * (stage - state.wall[0])) / sp.wall_mass
    return ax, ay


def _box_accel(state: DEMState, parts: Particles, sp: SimParams) -> jax.Array:
    """Lees-Edwards barostat: acceleration of L_y from (P_yy - P) A - damping dL_y/dt."""
    if not sp.servo:
        return jnp.zeros((), state.pos.dtype)
    conf, kin = stress_tensor(state, parts, sp)
    pyy = conf[1, 1] + kin[1, 1]
    return ((pyy - sp.pressure) * sp.area - sp.wall_damping * state.wall[3]) / sp.wall_mass


def _step_le(state: DEMState, parts: Particles, sp: SimParams, virial: bool) -> DEMState:
    """Velocity-Verlet step in the Lees-Edwards box (image offset and optional barostat)."""
    dt = sp.dt
    free = (parts.kind == FREE)[:, None]
    ly0, lx = parts.box_len[1], parts.box_len[0]
    vy = state.wall[3] + 0.5 * dt * _box_accel(state, parts, sp)
    vel = state.vel + 0.5 * dt * state.force * parts.inv_mass[:, None]
    omega = state.omega + 0.5 * dt * state.torque * parts.inv_inertia[:, None]
    pos = state.pos + dt * jnp.where(free, vel, 0.0)
    ly_old = ly0 + state.wall[1]
    ly = ly_old + dt * vy
    if sp.servo:  # affine remap of y with the box height
        pos = pos.at[:, 1].multiply(ly / ly_old)
    vimg = sp.shear_rate * ly
    wall = jnp.stack([jnp.mod(state.wall[0] + dt * vimg, lx), ly - ly0, vimg, vy])
    state = state.replace(pos=pos, vel=vel, omega=omega, wall=wall, time=state.time + dt)
    state = maybe_rebuild(state, parts, sp)
    state = compute_forces(state, parts, sp, virial=virial or sp.servo)  # the barostat reads it
    vel = state.vel + 0.5 * dt * state.force * parts.inv_mass[:, None]
    omega = state.omega + 0.5 * dt * state.torque * parts.inv_inertia[:, None]
    state = state.replace(vel=vel, omega=omega)
    vy = vy + 0.5 * dt * _box_accel(state, parts, sp)
    return state.replace(wall=state.wall.at[3].set(vy))


def step(state: DEMState, parts: Particles, sp: SimParams, virial: bool = False) -> DEMState:
    """One velocity-Verlet step (LAMMPS nve/sphere ordering): move, rebuild the list if needed
    (LAMMPS' neighbor decide), forces, second half-kick. ``virial`` (static) also sums the
    contact virial into ``state.virial`` (always done under the Lees-Edwards barostat)."""
    if sp.lees_edwards:
        return _step_le(state, parts, sp, virial)
    dt = sp.dt
    free = (parts.kind == FREE)[:, None]
    top = (parts.kind == TOP)[:, None]
    vel = state.vel + 0.5 * dt * state.force * parts.inv_mass[:, None]
    omega = state.omega + 0.5 * dt * state.torque * parts.inv_inertia[:, None]
    pos = state.pos + dt * jnp.where(free, vel, 0.0)

    ax, ay = _wall_accel(state, sp)
    vx = state.wall[2] + 0.5 * dt * ax if sp.driven else sp.shear_velocity + 0.0 * ax
    vy = state.wall[3] + 0.5 * dt * ay if sp.servo else 0.0 * state.wall[3]
    wall = jnp.stack([state.wall[0] + dt * vx, state.wall[1] + dt * vy, vx, vy])
    wall_off = jnp.stack([wall[0], wall[1], 0.0])
    wall_vel = jnp.stack([vx, vy, 0.0])
    pos = jnp.where(top, parts.ref_pos + wall_off, pos)
    vel = jnp.where(top, wall_vel, jnp.where(free, vel, 0.0))

    state = state.replace(pos=pos, vel=vel, omega=omega, wall=wall, time=state.time + dt)
    state = maybe_rebuild(state, parts, sp)
    state = compute_forces(state, parts, sp, virial=virial)

    vel = state.vel + 0.5 * dt * state.force * parts.inv_mass[:, None]
    omega = state.omega + 0.5 * dt * state.torque * parts.inv_inertia[:, None]
    ax, ay = _wall_accel(state, sp)
    vx = wall[2] + 0.5 * dt * ax if sp.driven else wall[2]
    vy = wall[3] + 0.5 * dt * ay if sp.servo else wall[3]
    vel = jnp.where(top, jnp.stack([vx, vy, 0.0]), vel)
    return state.replace(vel=vel, omega=omega, wall=jnp.stack([wall[0], wall[1], vx, vy]))


def init_state(
    pos: np.ndarray,
    vel: np.ndarray,
    omega: np.ndarray,
    parts: Particles,
    sp: SimParams,
    time: float = 0.0,
) -> DEMState:
    """State with a fresh neighbour list and setup forces (no history increment, as LAMMPS).

    ``time`` sets the clock (and so the Lees-Edwards offset gamma_dot L_y t).
    """
    n = pos.shape[0]
    cap = neighbors.pair_capacity(n, sp.k_slots)
    ccap = contact_capacity(n, sp)
    f64 = jnp.float64
    st = DEMState(
        pos=jnp.asarray(pos, f64),
        vel=jnp.asarray(vel, f64),
        omega=jnp.asarray(omega, f64),
        force=jnp.zeros((n, 3), f64),
        torque=jnp.zeros((n, 3), f64),
        pairs=jnp.full((cap, 2), n, jnp.int32),
        contacts=jnp.full((ccap, 2), n, jnp.int32),
        shear=jnp.zeros((3, ccap), f64),
        roll=jnp.zeros((3, ccap), f64),
        pos_build=jnp.asarray(pos, f64),
        box_build=jnp.zeros(2, f64),
        pos_contact=jnp.asarray(pos, f64),
        box_contact=jnp.zeros(2, f64),
        wall=jnp.zeros(4, f64),  # Lees-Edwards: set below
        wall_force=jnp.zeros(3, f64),
        time=jnp.asarray(time, f64),
        max_disp=jnp.zeros((), f64),
        max_count=jnp.zeros((), jnp.int32),
        max_fill=jnp.zeros((), jnp.int32),
        max_contacts=jnp.zeros((), jnp.int32),
        max_touch=jnp.zeros((), jnp.int32),
        n_builds=jnp.zeros((), jnp.int32),
        n_contact_builds=jnp.zeros((), jnp.int32),
        virial=jnp.zeros((3, 3), f64),
    )
    if sp.lees_edwards:
        vimg = sp.shear_rate * parts.box_len[1]
        off = jnp.mod(vimg * st.time, parts.box_len[0])
        st = st.replace(wall=jnp.stack([off, 0.0 * off, vimg + 0.0 * off, 0.0 * off]))
    return _setup(st, parts, sp)


@jax.jit
def _setup(st: DEMState, parts: Particles, sp: SimParams) -> DEMState:
    st = rebuild(st, parts, sp)
    return compute_forces(st, parts, sp, update_history=False)


def stress_tensor(state: DEMState, parts: Particles, sp: SimParams) -> tuple[jax.Array, jax.Array]:
    """(configurational, kinetic) pressure tensors (3, 3) of a Lees-Edwards box.

    P = (sum_contacts r_ij (x) f_ij + sum_i m_i v'_i (x) v'_i) / V with v' = v - gamma_dot y e_x
    (the unwrapped y, so every image gives the same v'). Compression is positive; the shear
    stress resisting a positive shear rate is -P_xy.
    """
    box = box_now(state, parts, sp)
    vol = box[0] * box[1] * box[2]
    vp = state.vel.at[:, 0].add(-sp.shear_rate * state.pos[:, 1])
    m = jnp.where(parts.kind == FREE, 1.0 / jnp.maximum(parts.inv_mass, 1e-300), 0.0)
    kin = jnp.einsum("n,na,nb->ab", m, vp, vp)
    return state.virial / vol, kin / vol


def observe_le(state: DEMState, parts: Particles, sp: SimParams) -> jax.Array:
    """Lees-Edwards observables: [time, strain, tau, p, P_yy, L_y].

    tau = -(P_xy + P_yx) / 2, p = tr P / 3 and P_yy of the full (configurational + kinetic)
    virial pressure tensor P.
    """
    conf, kin = stress_tensor(state, parts, sp)
    tot = conf + kin
    return jnp.stack(
        [
            state.time,
            sp.shear_rate * state.time,
            -0.5 * (tot[0, 1] + tot[1, 0]),
            jnp.trace(tot) / 3.0,
            tot[1, 1],
            parts.box_len[1] + state.wall[1],
        ]
    )


def observe(state: DEMState, sp: SimParams) -> jax.Array:
    """Per-step observables: [time, stage x, wall X, wall Y, wall Fx, wall Fy]."""
    stage = sp.shear_velocity * state.time
    return jnp.stack(
        [
            state.time,
            stage,
            state.wall[0],
            state.wall[1],
            state.wall_force[0],
            state.wall_force[1],
        ]
    )


@functools.partial(jax.jit, static_argnames=("steps", "observe_every"))
def run(
    state: DEMState, parts: Particles, sp: SimParams, steps: int, observe_every: int = 1
) -> tuple[DEMState, jax.Array]:
    """``steps`` steps (neighbour list rebuilt on displacement, checked every step).

    Returns the final state and the observables of `observe` (`observe_le` in Lees-Edwards mode)
    after every ``observe_every``-th step, shape (steps // observe_every, 6): with 1, the dense
    "force sensor" record. The steps between samples skip the virial (Lees-Edwards without the
    barostat), like LAMMPS' thermo output every N steps.
    """
    if steps % observe_every:
        raise ValueError(f"steps={steps} must be a multiple of observe_every={observe_every}.")

    def sample(st, _):
        if observe_every > 1:
            st, _ = jax.lax.scan(
                lambda s, _: (step(s, parts, sp), None), st, None, length=observe_every - 1
            )
        st = step(st, parts, sp, virial=sp.lees_edwards)
        return st, (observe_le(st, parts, sp) if sp.lees_edwards else observe(st, sp))

    return jax.lax.scan(sample, state, None, length=steps // observe_every)


def kinetic_energy(state: DEMState, parts: Particles) -> jax.Array:
    """Translational + rotational kinetic energy of the free particles."""
    free = parts.kind == FREE
    m = jnp.where(free, 1.0 / jnp.maximum(parts.inv_mass, 1e-300), 0.0)
    rot = free & (parts.inv_inertia > 0)
    inertia = jnp.where(rot, 1.0 / jnp.maximum(parts.inv_inertia, 1e-300), 0.0)
    return 0.5 * jnp.sum(m * jnp.sum(state.vel**2, -1)) + 0.5 * jnp.sum(
        inertia * jnp.sum(state.omega**2, -1)
    )


def elastic_energy(state: DEMState, parts: Particles, sp: SimParams) -> jax.Array:
    """Normal + tangential spring energy (Hooke only) of the contact list."""
    if sp.model.normal != "hooke":  # static field
        raise ValueError("elastic_energy is written for the Hooke model only.")
    n = state.pos.shape[0]
    i, j = state.contacts[:, 0], state.contacts[:, 1]
    dele, _ = _pair_geometry(state, parts, sp)
    r = jnp.sqrt(dele[0] ** 2 + dele[1] ** 2 + dele[2] ** 2)
    overlap = jnp.maximum(_gather(parts.radius, i) + _gather(parts.radius, j) - r, 0.0)
    overlap = jnp.where(i < n, overlap, 0.0)
    e_n = 0.5 * sp.model.kn * overlap**2
    e_t = 0.5 * sp.model.kt * jnp.sum(state.shear**2, 0)
    return jnp.sum(e_n + e_t)


def make_particles(
    radius: np.ndarray,
    kind: np.ndarray | None = None,
    density: float = 6.0 / np.pi,
    ref_pos: np.ndarray | None = None,
    box_len: tuple[float, float, float] = (0.0, 0.0, 0.0),
    lock_rotation: np.ndarray | None = None,
) -> Particles:
    """Builds `Particles` (float64) from radii; density 6/pi gives mass 1 for diameter 1.

    Wall particles (kind != FREE) get inv_mass = inv_inertia = 0 but keep their nominal mass
    (used only if both partners were walls, which the neighbour list excludes).
    """
    radius = np.asarray(radius, np.float64)
    if radius.ndim != 1 or np.any(radius <= 0):
        raise ValueError(f"radius must be a 1-D array of positive values, got {radius.shape}.")
    n = radius.shape[0]
    kind = np.zeros(n, np.int32) if kind is None else np.asarray(kind, np.int32)
    if kind.shape != (n,):
        raise ValueError(f"kind must have shape ({n},), got {kind.shape}.")
    mass = density * 4.0 / 3.0 * np.pi * radius**3
    inertia = 0.4 * mass * radius**2
    free = kind == FREE
    inv_mass = np.where(free, 1.0 / mass, 0.0)
    inv_inertia = np.where(free, 1.0 / inertia, 0.0)
    if lock_rotation is not None:
        inv_inertia = np.where(np.asarray(lock_rotation, bool), 0.0, inv_inertia)
    ref = np.zeros((n, 3)) if ref_pos is None else np.asarray(ref_pos, np.float64)
    f64 = jnp.float64
    return Particles(
        radius=jnp.asarray(radius, f64),
        inv_mass=jnp.asarray(inv_mass, f64),
        mass=jnp.asarray(mass, f64),
        inv_inertia=jnp.asarray(inv_inertia, f64),
        kind=jnp.asarray(kind, jnp.int32),
        ref_pos=jnp.asarray(ref, f64),
        box_len=jnp.asarray(box_len, f64),
    )
