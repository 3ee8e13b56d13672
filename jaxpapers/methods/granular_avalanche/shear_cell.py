"""The experiment's shear cell: rough walls, compression under the normal load P, wall shear.

Preparation: the free spheres, on a loose lattice between two walls of glued spheres, are
compressed under the constant normal load P at low friction (``mu_prep``; the drive spring
holds the top wall at x = 0). Shear: the stage moves at the constant velocity gamma_dot h (h: the
compressed gap) and drags the top wall through the drive spring; the sensor is the spring
extension (``k_drive`` > 0) or the wall's -F_x (rigid drive).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from jaxpapers.methods.granular_avalanche import dem
from jaxpapers.methods.granular_avalanche import experiment as ex


def build_cell(sim, seed: int) -> dict:
    """Rough walls of glued spheres + a loose polydisperse lattice of free spheres."""
    rng = np.random.default_rng(seed)
    lx = lz = float(sim.box)
    nw = max(3, int(round(lx / sim.wall_spacing)))
    gx, gz = np.meshgrid((np.arange(nw) + 0.5) * lx / nw, (np.arange(nw) + 0.5) * lz / nw)
    wall_xz = np.stack([gx.ravel(), gz.ravel()], -1)
    rw = 0.5 * sim.wall_diameter
    # Wall roughness: random heights of the glued spheres (asperities of order wall_jitter d).
    jit_b = rng.uniform(-sim.wall_jitter, sim.wall_jitter, len(wall_xz))
    jit_t = rng.uniform(-sim.wall_jitter, sim.wall_jitter, len(wall_xz))
    radius = rng.uniform(0.5 * (1 - sim.polydispersity), 0.5 * (1 + sim.polydispersity), sim.n)
    a = 2.0 * radius.max() * 1.05
    per_row = int(lx // a)
    if per_row < 2:
        raise ValueError(f"box={lx} is too small for the particle size; use box >= {2 * a}.")
    layers = math.ceil(sim.n / per_row**2)
    cells = np.stack(
        np.meshgrid(np.arange(per_row), np.arange(layers), np.arange(per_row), indexing="ij"), -1
    ).reshape(-1, 3)[: sim.n]
    free_pos = (cells + 0.5) * np.array([lx / per_row, a, lz / per_row])
    free_pos[:, 1] += rw + sim.wall_jitter + 0.1
    free_pos += rng.uniform(-0.02, 0.02, free_pos.shape)
    height = free_pos[:, 1].max() + radius.max() + rw + sim.wall_jitter + 0.1
    bottom = np.stack([wall_xz[:, 0], jit_b, wall_xz[:, 1]], -1)
    top = np.stack([wall_xz[:, 0], height + jit_t, wall_xz[:, 1]], -1)
    pos = np.concatenate([free_pos, bottom, top])
    rad = np.concatenate([radius, np.full(2 * len(wall_xz), rw)])
    kind = np.concatenate(
        [np.zeros(sim.n), np.full(len(wall_xz), dem.BOTTOM), np.full(len(wall_xz), dem.TOP)]
    ).astype(np.int32)
    return dict(pos=pos, radius=rad, kind=kind, box=(lx, 0.0, lz), height=height)


def cell_grid(sim, cell: dict, skin: float, height: float) -> tuple | None:
    """A static cell grid when the box is large enough, else None (brute force)."""
    size = 2.0 * float(np.max(cell["radius"])) + skin
    nx = int(cell["box"][0] // size)
    if sim.neighbor == "brute" or (sim.neighbor == "auto" and sim.n < 1500) or nx < 3:
        return None
    ny = int(math.ceil((height + 2.0) / size))
    cs = (cell["box"][0] / nx, size, cell["box"][2] / nx)
    return ((0.0, -1.0, 0.0), (nx, ny, nx), cs, int(sim.cell_capacity))


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything fixed before the first step: particles, parameters, chunk schedule."""

    cell: dict
    parts: dem.Particles
    free: np.ndarray  # bool mask of the free spheres
    area: float
    common: dict  # SimParams fields shared by compression and shear
    sp_prep: dem.SimParams
    k_drive: float
    gdot: float
    sched: ex.Schedule


def setup(sim, seed: int) -> Setup:
    cell = build_cell(sim, seed)
    lx, lz = cell["box"][0], cell["box"][2]
    area = lx * lz
    top = cell["kind"] == dem.TOP
    ref = np.where(top[:, None], cell["pos"], 0.0)
    parts = dem.make_particles(cell["radius"], cell["kind"], ex.DENSITY, ref, cell["box"])
    dt = ex.time_step(sim)
    wall_mass = sim.wall_mass_per_area * area
    k_drive = sim.k_drive * area * sim.pressure  # stiffness in units of P A / d
    common = dict(
        dt=dt,
        k_slots=sim.k_slots,
        skin=sim.skin,
        pressure=sim.pressure,
        area=area,
        wall_mass=wall_mass,
        wall_damping=sim.wall_damping * math.sqrt(wall_mass * sim.kn),
        cells=cell_grid(sim, cell, sim.skin, cell["height"]),
        servo=True,
        driven=k_drive > 0,
        k_drive=k_drive,
    )
    # Shear speed from the inertial number, with the loose gap as a first guess of the height;
    # it fixes the chunk length (blocks per scan), which is reused for the compression so that
    # one compiled `dem.run` serves the whole experiment.
    gdot = ex.shear_rate(sim)
    h_guess = 0.6 * (cell["height"] - sim.wall_diameter)
    block = sim.block_steps
    n_blocks = max(1, int(round(sim.scan_strain * h_guess / (gdot * h_guess * dt * block))))
    return Setup(
        cell=cell,
        parts=parts,
        free=cell["kind"] == dem.FREE,
        area=area,
        common=common,
        sp_prep=dem.SimParams(model=ex.contact_model(sim, sim.mu_prep, 0.0), **common),
        k_drive=k_drive,
        gdot=gdot,
        sched=ex.schedule(sim, dt, n_blocks),
    )


def shear_params(su: Setup, sim, mu: float, mu_roll: float, h: float):
    """(stage velocity, SimParams) of the shear at gap h."""
    # A Python float: same (weak) type as in the compression call, so no recompilation.
    vel = float(su.gdot * h)
    return vel, dem.SimParams(
        model=ex.contact_model(sim, mu, mu_roll), shear_velocity=vel, **su.common
    )


def compress_chunk(rec: dict, c: int, su: Setup, sim, log, t0: float) -> None:
    """One compression chunk; after the last one the gap is measured and the clock reset."""
    sc = su.sched
    state, obs = dem.run(rec["state"], su.parts, su.sp_prep, sc.steps, sc.observe_every)
    rec["state"] = state
    if c + 1 != sc.n_prep:
        return
    h = float(state.wall[1]) + su.cell["height"] - 2 * 0.5 * sim.wall_diameter
    log(
        f"  compressed: gap {h:.3f} d, wall load {float(obs[-1, 5]) / su.area:.3f} P "
        f"({time.time() - t0:.1f}s)"
    )
    ex.check(state, su.sp_prep, "compression")
    rec["state"] = state.replace(
        time=state.time * 0.0, wall=state.wall.at[0].set(0.0).at[2].set(0.0)
    )
    rec["h"] = np.array(h)
    rec["scans"][0] = np.asarray(state.pos)[su.free]


def shear_chunk(rec, s, su: Setup, sim, mu, mu_roll, log, t0, done_here) -> None:
    """Shear scan ``s``: one chunk at the imposed stage velocity, its series and positions."""
    sc = su.sched
    vel, sp = shear_params(su, sim, mu, mu_roll, float(rec["h"]))
    h = float(rec["h"])
    state, obs = dem.run(rec["state"], su.parts, sp, sc.steps, sc.observe_every)
    rec["state"] = state
    obs = np.asarray(obs)
    ex.store_scan(rec, s, obs, sc.spp, np.asarray(state.pos)[su.free])
    rec["scan_strain"][s + 1] = float(state.time) * vel / h  # imposed (stage) strain
    if ex.report_due(s, sc.n_scans):
        p_meas = float(np.mean(obs[:, 5])) / su.area
        inertial = vel / h * math.sqrt(ex.DENSITY / max(p_meas, 1e-12))
        stress = sensor_stress(obs[-1:], sp, su.area)[0] / sim.pressure
        ex.progress(
            log,
            s,
            sc.n_scans,
            rec["scan_strain"][s + 1],
            stress,
            inertial,
            t0,
            p_meas / sim.pressure,
            done_here,
        )
    ex.check(state, sp, f"shear scan {s + 1}")


def tracks(rec: dict, su: Setup, sim, mu: float, mu_roll: float) -> dict:
    """The io.py dictionary (+ final state and meta) of a finished walls experiment."""
    state, h = rec["state"], float(rec["h"])
    vel, sp = shear_params(su, sim, mu, mu_roll, h)
    ser, sc = rec["series"], su.sched
    lx, lz = su.cell["box"][0], su.cell["box"][2]
    return dict(
        ids=np.arange(int(su.free.sum())),
        radius=su.cell["radius"][su.free],
        positions=rec["scans"],
        scan_strain=rec["scan_strain"],
        strain=ser[:, 1] / h,
        stress=sensor_stress(ser, sp, su.area) / sim.pressure,
        pressure=ser[:, 5] / su.area / sim.pressure,
        box=np.array([lx, 0.0, lz]),
        final_state=state,
        meta=dict(
            boundary="walls",
            height=h,
            dt=sc.dt,
            shear_velocity=vel,
            inertial_number=sim.inertial_number,
            mu=mu,
            mu_roll=mu_roll,
            k_drive=su.k_drive,
            n_free=int(su.free.sum()),
            steps=int(sc.n_scans * sc.n_blocks * sc.block),
            max_disp=float(state.max_disp),
        ),
    )


def experiment(sim, mu, mu_roll, seed, log, store: ex.Store, stop_after) -> dict:
    """Compress under load P, then shear at constant imposed velocity (the experiment's cell)."""
    su = setup(sim, seed)
    sc = su.sched
    n_total = len(su.cell["radius"])
    state = dem.init_state(
        su.cell["pos"], np.zeros((n_total, 3)), np.zeros((n_total, 3)), su.parts, su.sp_prep
    )
    rec = store.restore(ex.new_record(state, sc.n_scans, sc.spp, int(su.free.sum()), store.fp), log)
    t0, done_here = time.time(), 0
    while int(rec["chunk"]) < sc.total:
        c = int(rec["chunk"])
        if c < sc.n_prep:  # 1) compression under the load, low friction (same for both systems)
            compress_chunk(rec, c, su, sim, log, t0)
        else:  # 2) shear
            done_here += 1
            shear_chunk(rec, c - sc.n_prep, su, sim, mu, mu_roll, log, t0, done_here)
        ex.advance(rec, store, sc.total, sc.n_prep, stop_after)
    return tracks(rec, su, sim, mu, mu_roll)


def sensor_stress(obs: np.ndarray, sp: dem.SimParams, area: float) -> np.ndarray:
    """Shear stress read by the sensor: spring extension (driven) or -F_x of the wall (rigid)."""
    if sp.driven:
        return sp.k_drive * (obs[:, 1] - obs[:, 2]) / area
    return -obs[:, 4] / area
