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
from jaxpapers.methods.granular_avalanche.contact import ContactModel, pair_forces

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
    nbr: jax.Array  # (N, K) int32, sentinel N
    shear: jax.Array  # (N, K, 3) tangential spring history
    roll: jax.Array  # (N, K, 3) rolling torque history
    pos_build: jax.Array  # (N, 3) positions at the last neighbour build
    wall: jax.Array  # (4,) top wall [X, Y, VX, VY] displacement/velocity
    wall_force: jax.Array  # (3,) force of the particles on the top wall
    time: jax.Array  # scalar
    max_disp: jax.Array  # scalar: largest displacement between builds seen (skin check)
    max_count: jax.Array  # scalar int: largest neighbour candidate count seen (overflow check)
    virial: jax.Array  # (3, 3) configurational virial sum_contacts (x_i - x_j) (x) f_ij


@struct.dataclass
class SimParams:
    """Simulation parameters: numbers are traced leaves, switches and sizes are static."""

    model: ContactModel
    dt: float
    k_slots: int = struct.field(pytree_node=False, default=16)
    skin: float = struct.field(pytree_node=False, default=0.2)
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


def _pair_geometry(state: DEMState, parts: Particles, sp: SimParams):
    """Minimum-image x_i - x_j and v_i - v_j for every slot (Lees-Edwards aware)."""
    j = state.nbr
    dpos = state.pos[:, None, :] - _gather(state.pos, j)
    vr = state.vel[:, None, :] - _gather(state.vel, j)
    if not sp.lees_edwards:
        return neighbors.min_image(dpos, parts.box_len), vr
    box = box_now(state, parts, sp)
    dele, ny = neighbors.min_image_le(dpos, box, le_shift(state, sp))
    dv = sp.shear_rate * box[1]
    vr = vr.at[..., 0].add(-ny * dv)
    return dele, vr


def compute_forces(
    state: DEMState, parts: Particles, sp: SimParams, update_history: bool = True
) -> DEMState:
    """Pair forces/torques on every particle from its neighbour slots; updates the histories."""
    n = state.pos.shape[0]
    valid = state.nbr < n
    j = state.nbr
    dele, vr = _pair_geometry(state, parts, sp)
    om_i = jnp.broadcast_to(state.omega[:, None, :], dele.shape)
    rad_i = jnp.broadcast_to(parts.radius[:, None], j.shape)
    rad_j = _gather(parts.radius, j)
    im_i, im_j = parts.inv_mass[:, None], _gather(parts.inv_mass, j)
    # Effective mass; a wall partner (inv_mass 0) gives m* = m_other, as LAMMPS' fix freeze.
    meff = 1.0 / jnp.maximum(im_i + im_j, 1e-300)
    f, t, shear, roll, _ = pair_forces(
        sp.model,
        sp.dt,
        dele,
        vr,
        om_i,
        _gather(state.omega, j),
        rad_i,
        rad_j,
        meff,
        state.shear,
        state.roll,
        valid,
        update_history,
    )
    virial = 0.5 * jnp.einsum("nka,nkb->ab", dele, f)  # each contact is seen from both sides
    force = f.sum(axis=1)
    torque = t.sum(axis=1)
    top = parts.kind == TOP
    wall_force = jnp.sum(jnp.where(top[:, None], force, 0.0), axis=0)
    free = parts.kind == FREE
    grav = jnp.asarray(sp.gravity) / jnp.maximum(parts.inv_mass, 1e-300)[:, None]
    force = force + jnp.where(free[:, None], grav, 0.0)
    return state.replace(
        force=force, torque=torque, shear=shear, roll=roll, wall_force=wall_force, virial=virial
    )


def rebuild(state: DEMState, parts: Particles, sp: SimParams) -> DEMState:
    """New neighbour list; histories follow their pairs."""
    free = parts.kind == FREE
    shift = le_shift(state, sp)
    box = box_now(state, parts, sp)
    if sp.cells is None:
        nbr, count = neighbors.build_brute(
            state.pos, parts.radius, free, box, sp.skin, sp.k_slots, shift
        )
    else:
        lo, ncell, cell_size, cap = sp.cells
        nbr, count, fill = neighbors.build_cells(
            state.pos,
            parts.radius,
            free,
            box,
            sp.skin,
            sp.k_slots,
            lo,
            ncell,
            cell_size,
            cap,
            shift,
        )
        # A cell fuller than its capacity silently loses candidates: flag it as an overflow.
        count = jnp.where(fill > cap, sp.k_slots + 10**6, count)
    shear = neighbors.remap_history(nbr, state.nbr, state.shear)
    roll = neighbors.remap_history(nbr, state.nbr, state.roll)
    return state.replace(
        nbr=nbr,
        shear=shear,
        roll=roll,
        pos_build=state.pos,
        max_count=jnp.maximum(state.max_count, count),
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


def _step_le(state: DEMState, parts: Particles, sp: SimParams) -> DEMState:
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
    state = compute_forces(state, parts, sp)
    vel = state.vel + 0.5 * dt * state.force * parts.inv_mass[:, None]
    omega = state.omega + 0.5 * dt * state.torque * parts.inv_inertia[:, None]
    state = state.replace(vel=vel, omega=omega)
    vy = vy + 0.5 * dt * _box_accel(state, parts, sp)
    disp = jnp.max(jnp.sum((state.pos - state.pos_build) ** 2, axis=-1))
    return state.replace(
        wall=state.wall.at[3].set(vy), max_disp=jnp.maximum(state.max_disp, jnp.sqrt(disp))
    )


def step(state: DEMState, parts: Particles, sp: SimParams) -> DEMState:
    """One velocity-Verlet step (LAMMPS nve/sphere ordering)."""
    if sp.lees_edwards:
        return _step_le(state, parts, sp)
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
    state = compute_forces(state, parts, sp)

    vel = state.vel + 0.5 * dt * state.force * parts.inv_mass[:, None]
    omega = state.omega + 0.5 * dt * state.torque * parts.inv_inertia[:, None]
    ax, ay = _wall_accel(state, sp)
    vx = wall[2] + 0.5 * dt * ax if sp.driven else wall[2]
    vy = wall[3] + 0.5 * dt * ay if sp.servo else wall[3]
    vel = jnp.where(top, jnp.stack([vx, vy, 0.0]), vel)
    disp = jnp.max(jnp.sum((state.pos - state.pos_build) ** 2, axis=-1))
    return state.replace(
        vel=vel,
        omega=omega,
        wall=jnp.stack([wall[0], wall[1], vx, vy]),
        max_disp=jnp.maximum(state.max_disp, jnp.sqrt(disp)),
    )


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
    k = sp.k_slots
    f64 = jnp.float64
    st = DEMState(
        pos=jnp.asarray(pos, f64),
        vel=jnp.asarray(vel, f64),
        omega=jnp.asarray(omega, f64),
        force=jnp.zeros((n, 3), f64),
        torque=jnp.zeros((n, 3), f64),
        nbr=jnp.full((n, k), n, jnp.int32),
        shear=jnp.zeros((n, k, 3), f64),
        roll=jnp.zeros((n, k, 3), f64),
        pos_build=jnp.asarray(pos, f64),
        wall=jnp.zeros(4, f64),  # Lees-Edwards: set below
        wall_force=jnp.zeros(3, f64),
        time=jnp.asarray(time, f64),
        max_disp=jnp.zeros((), f64),
        max_count=jnp.zeros((), jnp.int32),
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


@functools.partial(jax.jit, static_argnames=("n_blocks", "block_steps"))
def run_blocks(
    state: DEMState, parts: Particles, sp: SimParams, n_blocks: int, block_steps: int
) -> tuple[DEMState, jax.Array]:
    """n_blocks x (neighbour rebuild + block_steps steps).

    Returns the final state and the per-step observables of `observe` (`observe_le` in
    Lees-Edwards mode), shape (n_blocks * block_steps, 6): the dense "force sensor" record.
    """

    def one(st, _):
        st = rebuild(st, parts, sp)

        def inner(s, _):
            s = step(s, parts, sp)
            return s, (observe_le(s, parts, sp) if sp.lees_edwards else observe(s, sp))

        st, obs = jax.lax.scan(inner, st, None, length=block_steps)
        return st, obs

    state, obs = jax.lax.scan(one, state, None, length=n_blocks)
    return state, obs.reshape(n_blocks * block_steps, -1)


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
    """Normal + tangential spring energy (Hooke only), each contact counted once."""
    if sp.model.normal != "hooke":  # static field
        raise ValueError("elastic_energy is written for the Hooke model only.")
    n = state.pos.shape[0]
    j = state.nbr
    dele, _ = _pair_geometry(state, parts, sp)
    r = jnp.sqrt(jnp.sum(dele**2, -1))
    overlap = jnp.maximum(parts.radius[:, None] + _gather(parts.radius, j) - r, 0.0)
    overlap = jnp.where(j < n, overlap, 0.0)
    e_n = 0.5 * sp.model.kn * overlap**2
    e_t = 0.5 * sp.model.kt * jnp.sum(state.shear**2, -1)
    return 0.5 * jnp.sum(e_n + e_t)


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
