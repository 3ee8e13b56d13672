"""The shear-cell experiment in simulation: build, compress under load, shear, record.

Units: mean diameter d = 1, density 6/pi (a d = 1 sphere has mass 1), normal load P = `pressure`
(1 by default), so stresses are in units of P and times in d sqrt(rho/P).

Output (`shear_experiment`) is the same dictionary the track reader returns (see io.py): the
"tomography scans" (free-particle positions every `scan_strain` of imposed strain) and the dense
"force sensor" record (shear stress vs strain), so the analysis runs identically on real data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxpapers.methods.granular_avalanche import dem
from jaxpapers.methods.granular_avalanche.contact import (
    ContactModel,
    hertz_gamma_from_restitution,
    hooke_gamma_from_restitution,
    make_model,
)

DENSITY = 6.0 / math.pi


def contact_model(sim, mu: float, mu_roll: float) -> ContactModel:
    """ContactModel from a config block (kn, restitution, kt_ratio, normal) and friction."""
    meff = 0.5  # two mean spheres (mass 1): the damping is set for free-free contacts
    if sim.normal == "hooke":
        gn = hooke_gamma_from_restitution(sim.restitution, sim.kn, meff)
    else:
        gn = hertz_gamma_from_restitution(sim.restitution)
        # Hertz tangential damping (LAMMPS convention, times sqrt(R* delta)) uses 1/time units.
    gt = 0.5 * (
        gn if sim.normal == "hooke" else hooke_gamma_from_restitution(sim.restitution, sim.kn, meff)
    )
    return make_model(
        normal=sim.normal,
        kn=sim.kn,
        kt=sim.kt_ratio * sim.kn,
        gamman=gn,
        gammat=gt,
        mu=mu,
        mu_roll=mu_roll,
        limit_damping=sim.normal == "hertz",
        rolling=True,  # always compiled in (mu_roll = 0 gives no torque): one compilation
    )


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


def _cells_for(sim, cell: dict, skin: float, height: float) -> tuple | None:
    """A static cell grid when the box is large enough, else None (brute force)."""
    size = 2.0 * float(np.max(cell["radius"])) + skin
    nx = int(cell["box"][0] // size)
    if sim.neighbor == "brute" or (sim.neighbor == "auto" and sim.n < 1500) or nx < 3:
        return None
    ny = int(math.ceil((height + 2.0) / size))
    cs = (cell["box"][0] / nx, size, cell["box"][2] / nx)
    return ((0.0, -1.0, 0.0), (nx, ny, nx), cs, int(sim.cell_capacity))


def shear_experiment(
    sim, mu: float, mu_roll: float, seed: int, log: Callable[[str], None] = print
) -> dict:
    """Compress under load P, then shear at constant imposed velocity; returns tracks + series."""
    with jax.enable_x64(True):
        return _shear_experiment(sim, mu, mu_roll, seed, log)


def _shear_experiment(sim, mu, mu_roll, seed, log) -> dict:
    cell = build_cell(sim, seed)
    lx, lz = cell["box"][0], cell["box"][2]
    area = lx * lz
    free = cell["kind"] == dem.FREE
    top = cell["kind"] == dem.TOP
    ref = np.where(top[:, None], cell["pos"], 0.0)
    parts = dem.make_particles(cell["radius"], cell["kind"], DENSITY, ref, cell["box"])
    prep_model = contact_model(sim, sim.mu_prep, 0.0)
    tc = math.pi / math.sqrt(sim.kn / 0.5)
    dt = tc / sim.steps_per_contact
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
        cells=_cells_for(sim, cell, sim.skin, cell["height"]),
        servo=True,
        driven=k_drive > 0,
        k_drive=k_drive,
    )
    # Compression: the drive spring holds the top wall at x = 0 (stage at rest).
    sp = dem.SimParams(model=prep_model, **common)
    n_total = len(cell["radius"])
    state = dem.init_state(cell["pos"], np.zeros((n_total, 3)), np.zeros((n_total, 3)), parts, sp)
    block = sim.rebuild_every
    # Shear speed from the inertial number I = gamma_dot d sqrt(rho/P), with the loose gap as a
    # first guess of the height; it fixes the chunk length (blocks per scan), which is reused
    # for the compression so that one compiled `run_blocks` serves the whole experiment.
    gdot = sim.inertial_number / math.sqrt(DENSITY / sim.pressure)
    h_guess = 0.6 * (cell["height"] - sim.wall_diameter)
    n_blocks = max(1, int(round(sim.scan_strain * h_guess / (gdot * h_guess * dt * block))))
    # 1) Compression under the load with low friction (same protocol for rough and smooth).
    n_prep = max(1, math.ceil(sim.prep_time / (dt * block * n_blocks)))
    t0 = time.time()
    for _ in range(n_prep):
        state, obs = dem.run_blocks(state, parts, sp, n_blocks, block)
    h = float(state.wall[1]) + cell["height"] - 2 * 0.5 * sim.wall_diameter
    log(
        f"  compressed: gap {h:.3f} d, wall load {float(obs[-1, 5]) / area:.3f} P "
        f"({time.time() - t0:.1f}s)"
    )
    _check(state, sp, "compression")
    # 2) Shear at the imposed stage velocity gamma_dot * h (h: the compressed gap).
    vel = float(gdot * h)  # a Python float: same (weak) type as in the compression call
    sp = dem.SimParams(model=contact_model(sim, mu, mu_roll), shear_velocity=vel, **common)
    state = state.replace(time=state.time * 0.0, wall=state.wall.at[0].set(0.0).at[2].set(0.0))
    n_scans = int(round(sim.total_strain / sim.scan_strain))
    scans = [np.asarray(state.pos)[free]]
    scan_strain = [0.0]
    series = []
    t0 = time.time()
    for s in range(n_scans):
        state, obs = dem.run_blocks(state, parts, sp, n_blocks, block)
        obs = np.asarray(obs)
        series.append(obs.reshape(-1, sim.sample_every, obs.shape[-1]).mean(axis=1))
        scans.append(np.asarray(state.pos)[free])
        scan_strain.append(float(state.time) * vel / h)  # imposed (stage) strain
        if (s + 1) % max(1, n_scans // 10) == 0 or s == n_scans - 1:
            el = time.time() - t0
            log(
                f"  scan {s + 1}/{n_scans}  strain {scan_strain[-1]:.4f}  "
                f"sigma/P {_stress(obs[-1:], sp, area)[0] / sim.pressure:.3f}  "
                f"{el:.0f}s elapsed, ETA {el / (s + 1) * (n_scans - s - 1):.0f}s"
            )
        _check(state, sp, f"shear scan {s + 1}")
    ser = np.concatenate(series)
    stress = _stress(ser, sp, area) / sim.pressure
    return dict(
        ids=np.arange(int(free.sum())),
        radius=cell["radius"][free],
        positions=np.stack(scans),
        scan_strain=np.asarray(scan_strain),
        strain=ser[:, 1] / h,
        stress=stress,
        pressure=ser[:, 5] / area / sim.pressure,
        box=np.array([lx, 0.0, lz]),
        meta=dict(
            height=h,
            dt=dt,
            shear_velocity=vel,
            inertial_number=sim.inertial_number,
            mu=mu,
            mu_roll=mu_roll,
            k_drive=k_drive,
            n_free=int(free.sum()),
            steps=int(n_scans * n_blocks * block),
            max_disp=float(state.max_disp),
        ),
    )


def _stress(obs: np.ndarray, sp: dem.SimParams, area: float) -> np.ndarray:
    """Shear stress read by the sensor: spring extension (driven) or -F_x of the wall (rigid)."""
    if sp.driven:
        return sp.k_drive * (obs[:, 1] - obs[:, 2]) / area
    return -obs[:, 4] / area


def _check(state: dem.DEMState, sp: dem.SimParams, where: str) -> None:
    """Fails loudly on NaNs, neighbour-slot overflow or a too-small skin."""
    if not np.all(np.isfinite(np.asarray(state.pos))):
        raise FloatingPointError(f"Non-finite positions after {where}: reduce dt or the load.")
    if int(state.max_count) > sp.k_slots:
        raise RuntimeError(
            f"Neighbour overflow after {where}: {int(state.max_count)} candidates "
            f"> k_slots={sp.k_slots} (or a cell over capacity); raise them."
        )
    if float(state.max_disp) > 0.5 * sp.skin:
        raise RuntimeError(
            f"A particle moved {float(state.max_disp):.3f} > skin/2 between "
            f"neighbour builds ({where}); lower rebuild_every or raise skin."
        )
