"""The Lees-Edwards geometry: a periodic box sheared through its images, no walls.

Preparation at constant volume: the spheres grow from a loose lattice (radius scale s, masses
fixed) under pressure feedback towards the virial pressure P (low friction ``mu_prep``, like the
walls' compression). Then the streaming profile v_x = gamma_dot y is imposed and the box is
sheared at gamma_dot under **constant normal stress** P_yy = P (``sim.le_barostat``, the default:
a damped piston on L_y with the walls' mass and damping) or at constant volume
(``sim.le_barostat=False``). The sensor is the virial shear stress -P_xy (kinetic part
included) over P. The final radius scale s, close to 1, makes the mean diameter s d; it is in
the meta and the tracks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.methods.granular_avalanche import dem
from jaxpapers.methods.granular_avalanche import experiment as ex


def cell_grid(sim, radius: np.ndarray, box: tuple, skin: float) -> tuple | None:
    """Static cell grid of a Lees-Edwards box (every axis periodic, >= 3 cells each)."""
    size = 2.0 * float(np.max(radius)) + skin
    nc = tuple(int(b // size) for b in box)
    if sim.neighbor == "brute" or (sim.neighbor == "auto" and sim.n < 1500) or min(nc) < 3:
        return None
    return (
        (0.0, 0.0, 0.0),
        nc,
        tuple(b / c for b, c in zip(box, nc, strict=True)),
        int(sim.cell_capacity),
    )


def build_le_box(sim, seed: int) -> dict:
    """Polydisperse spheres on a loose lattice in a periodic box sized for `le_phi`.

    L_x = L_z = box, L_y from the packing fraction of the nominal radii. The lattice only fits
    shrunken spheres: the returned radius scale ``s0`` is what the preparation grows from.
    """
    rng = np.random.default_rng(seed)
    radius = rng.uniform(0.5 * (1 - sim.polydispersity), 0.5 * (1 + sim.polydispersity), sim.n)
    lx = lz = float(sim.box)
    vol_p = float(np.sum(4.0 / 3.0 * math.pi * radius**3))
    ly = vol_p / (sim.le_phi * lx * lz)
    # Smallest lattice spacing that holds n sites in the box.
    a = (lx * ly * lz / sim.n) ** (1.0 / 3.0)
    while True:
        nx, ny, nz = (max(1, int(b // a)) for b in (lx, ly, lz))
        if nx * ny * nz >= sim.n:
            break
        a *= 0.98
    cells = np.stack(
        np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1
    ).reshape(-1, 3)
    cells = cells[rng.permutation(len(cells))[: sim.n]]
    spacing = np.array([lx / nx, ly / ny, lz / nz])
    pos = (cells + 0.5) * spacing + rng.uniform(-0.01, 0.01, (sim.n, 3))
    s0 = 0.95 * float(spacing.min()) / (2.0 * float(radius.max()))
    if min(lx, ly, lz) < 2.0 * (2.0 * radius.max() + sim.skin):
        raise ValueError(
            f"Lees-Edwards box {lx:.2f} x {ly:.2f} x {lz:.2f} is too small for the minimum "
            "image (each length must exceed twice the neighbour cutoff): raise sim.box or n."
        )
    return dict(
        pos=pos,
        radius=radius,
        kind=np.zeros(sim.n, np.int32),
        box=(lx, ly, lz),
        s0=min(s0, 1.0),
    )


@functools.partial(jax.jit, static_argnames=("n_blocks", "block_steps"))
def grow_blocks(
    state: dem.DEMState,
    parts: dem.Particles,
    sp: dem.SimParams,
    scale: jax.Array,
    target_p: float,
    rate: float,
    n_blocks: int,
    block_steps: int,
) -> tuple[dem.DEMState, jax.Array, jax.Array]:
    """Lees-Edwards preparation: radius growth under pressure feedback (box fixed, no shear).

    Each block runs at radii ``scale * R``; after it the scale changes by a factor
    1 + rate * clip(1 - p / target_p, -1, 1) (p: the block's mean virial pressure), capped at 1.
    Masses stay those of the nominal radii. Returns (state, scale, observables).
    """
    r0 = parts.radius

    def one(carry, _):
        st, s = carry
        ps = parts.replace(radius=r0 * s)
        st = dem.rebuild(st, ps, sp)  # the radii changed: the skin criterion does not see it

        def inner(x, _):
            x = dem.step(x, ps, sp, virial=True)
            return x, dem.observe_le(x, ps, sp)

        st, obs = jax.lax.scan(inner, st, None, length=block_steps)
        p = jnp.mean(obs[:, 3])
        s = jnp.minimum(s * (1.0 + rate * jnp.clip(1.0 - p / target_p, -1.0, 1.0)), 1.0)
        return (st, s), obs

    (state, scale), obs = jax.lax.scan(one, (state, scale), None, length=n_blocks)
    return state, scale, obs.reshape(n_blocks * block_steps, -1)


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything fixed before the first step: particles, parameters, chunk schedule."""

    box: dict
    parts: dem.Particles  # nominal radii (the growth scales them)
    sp_prep: dem.SimParams
    sp: dem.SimParams
    gdot: float
    rate: float  # growth rate of the radius scale per block
    sched: ex.Schedule


def setup(sim, seed: int, mu: float, mu_roll: float) -> Setup:
    box = build_le_box(sim, seed)
    lx, ly, lz = box["box"]
    parts = dem.make_particles(box["radius"], box["kind"], ex.DENSITY, None, box["box"])
    dt = ex.time_step(sim)
    gdot = ex.shear_rate(sim)  # d = 1 (nominal)
    n_blocks = max(1, int(round(sim.scan_strain / (gdot * dt * sim.block_steps))))
    sched = ex.schedule(sim, dt, n_blocks)
    common = dict(
        dt=dt,
        k_slots=sim.k_slots,
        skin=sim.skin,
        cells=cell_grid(sim, box["radius"], box["box"], sim.skin),
        lees_edwards=True,
    )
    area = lx * lz
    wall_mass = sim.wall_mass_per_area * area
    sp = dem.SimParams(
        model=ex.contact_model(sim, mu, mu_roll),
        shear_rate=gdot,
        servo=bool(sim.le_barostat),
        pressure=sim.pressure,
        area=area,
        wall_mass=wall_mass,
        wall_damping=sim.wall_damping * math.sqrt(wall_mass * sim.kn),
        **common,
    )
    return Setup(
        box=box,
        parts=parts,
        sp_prep=dem.SimParams(
            model=ex.contact_model(sim, sim.mu_prep, 0.0), shear_rate=0.0, **common
        ),
        sp=sp,
        gdot=gdot,
        # From s0 to 1 within about half the preparation if the pressure stayed low.
        rate=2.0 * math.log(1.0 / box["s0"]) / (sched.n_prep * n_blocks),
        sched=sched,
    )


def grow_chunk(rec: dict, c: int, su: Setup, sim, log, t0: float) -> None:
    """One growth chunk; after the last one the shear starts (streaming profile, t = 0)."""
    sc, box = su.sched, su.box
    state, scale, obs = grow_blocks(
        rec["state"],
        su.parts,
        su.sp_prep,
        jnp.asarray(rec["h"]),
        sim.pressure,
        su.rate,
        sc.n_blocks,
        sc.block,
    )
    rec["state"], rec["h"] = state, np.asarray(scale)
    if c + 1 != sc.n_prep:
        return
    lx, ly, lz = box["box"]
    s_fin = float(rec["h"])
    phi = float(np.sum(4.0 / 3.0 * math.pi * (box["radius"] * s_fin) ** 3)) / (lx * ly * lz)
    p_end = float(np.mean(np.asarray(obs)[-sc.block :, 3]))
    log(
        f"  grown: radius scale {s_fin:.4f}, phi {phi:.4f}, "
        f"p {p_end / sim.pressure:.3f} P ({time.time() - t0:.1f}s)"
    )
    ex.check(state, su.sp_prep, "growth")
    # Shear start: wrap into the box, streaming profile v_x += gamma_dot y, t = 0.
    pos = jnp.mod(state.pos, jnp.asarray(box["box"]))
    vel = state.vel.at[:, 0].add(su.gdot * pos[:, 1])
    wall = jnp.stack([0.0, 0.0, su.gdot * ly, 0.0]).astype(state.wall.dtype)
    # Whole periods (offset 0): the lists stay valid; their build positions move alike, so the
    # displacement since each build is kept (resetting it could miss a rebuild).
    wrap = pos - state.pos
    rec["state"] = state.replace(
        pos=pos,
        pos_build=state.pos_build + wrap,
        pos_contact=state.pos_contact + wrap,
        vel=vel,
        time=0.0 * state.time,
        wall=wall,
    )
    rec["scans"][0] = np.asarray(pos)


def shear_chunk(rec: dict, s: int, su: Setup, sim, log, t0: float, done_here: int) -> None:
    """Shear scan ``s``: one chunk of Lees-Edwards shear, its series and positions."""
    sc = su.sched
    ps = su.parts.replace(radius=su.parts.radius * jnp.asarray(rec["h"]))
    state, obs = dem.run(rec["state"], ps, su.sp, sc.steps, sc.observe_every)
    rec["state"] = state
    obs = np.asarray(obs)
    ex.store_scan(rec, s, obs, sc.spp, state.pos)
    rec["scan_strain"][s + 1] = float(state.time) * su.gdot
    if ex.report_due(s, sc.n_scans):
        p_meas = float(np.mean(obs[:, 4]))  # P_yy, the normal stress
        d_mean = 2.0 * float(np.mean(su.box["radius"])) * float(rec["h"])
        inertial = su.gdot * d_mean * math.sqrt(ex.DENSITY / max(p_meas, 1e-12))
        ex.progress(
            log,
            s,
            sc.n_scans,
            rec["scan_strain"][s + 1],
            float(np.mean(obs[:, 2])) / sim.pressure,
            inertial,
            t0,
            p_meas / sim.pressure,
            done_here,
        )
    ex.check(state, su.sp, f"shear scan {s + 1}")
    check_box(state, ps, su.sp, f"shear scan {s + 1}")


def tracks(rec: dict, su: Setup, sim, mu: float, mu_roll: float) -> dict:
    """The io.py dictionary (+ final state and meta) of a finished Lees-Edwards experiment."""
    state, scale, sc, box = rec["state"], float(rec["h"]), su.sched, su.box
    lx, ly, lz = box["box"]
    ly_end = ly + float(state.wall[1])
    ser = rec["series"]
    return dict(
        ids=np.arange(sim.n),
        radius=box["radius"] * scale,
        positions=rec["scans"],
        scan_strain=rec["scan_strain"],
        strain=ser[:, 1],
        stress=ser[:, 2] / sim.pressure,
        pressure=ser[:, 4] / sim.pressure,  # P_yy: the normal stress (held at P by the barostat)
        # y is periodic with a shift: the analysis treats it as open on the unwrapped tracks.
        box=np.array([lx, 0.0, lz]),
        final_state=state,
        meta=dict(
            boundary="lees_edwards",
            height=ly_end,
            box=(lx, ly_end, lz),
            barostat=bool(sim.le_barostat),
            radius_scale=scale,
            phi=float(np.sum(4.0 / 3.0 * math.pi * (box["radius"] * scale) ** 3))
            / (lx * ly_end * lz),
            dt=sc.dt,
            shear_rate=su.gdot,
            inertial_number=sim.inertial_number,
            mu=mu,
            mu_roll=mu_roll,
            n_free=sim.n,
            steps=int(sc.n_scans * sc.n_blocks * sc.block),
            max_disp=float(state.max_disp),
        ),
    )


def experiment(sim, mu, mu_roll, seed, log, store: ex.Store, stop_after) -> dict:
    """Lees-Edwards shear of a packing grown to pressure P (module doc)."""
    su = setup(sim, seed, mu, mu_roll)
    sc, s0, n = su.sched, su.box["s0"], sim.n
    state = dem.init_state(
        su.box["pos"],
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        su.parts.replace(radius=su.parts.radius * s0),
        su.sp_prep,
    )
    rec = ex.new_record(state, sc.n_scans, sc.spp, n, store.fp)
    rec["h"] = np.array(s0)
    rec = store.restore(rec, log)
    t0, done_here = time.time(), 0
    while int(rec["chunk"]) < sc.total:
        c = int(rec["chunk"])
        if c < sc.n_prep:  # 1) radius growth to pressure P, low friction, no shear
            grow_chunk(rec, c, su, sim, log, t0)
        else:  # 2) Lees-Edwards shear
            done_here += 1
            shear_chunk(rec, c - sc.n_prep, su, sim, log, t0, done_here)
        ex.advance(rec, store, sc.total, sc.n_prep, stop_after)
    return tracks(rec, su, sim, mu, mu_roll)


def check_box(state: dem.DEMState, parts: dem.Particles, sp: dem.SimParams, where: str):
    """The barostat may not shrink L_y below the minimum-image / cell-list limits."""
    box = np.asarray(dem.box_now(state, parts, sp))
    cut = 2.0 * float(np.max(np.asarray(parts.radius))) + sp.skin
    ly_min = 2.0 * cut if sp.cells is None else max(2.0 * cut, sp.cells[1][1] * cut)
    if box[1] < ly_min:
        raise RuntimeError(
            f"Lees-Edwards box height {box[1]:.3f} fell below {ly_min:.3f} after {where} "
            "(minimum image / cell size): use a larger system or a stiffer packing."
        )
