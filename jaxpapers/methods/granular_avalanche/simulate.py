"""The shear experiment in simulation: build, prepare under load, shear, record.

Two geometries (``sim.boundary``):
* 'walls' (default, the experiment's cell): rough walls, compression under the constant normal
  load P, shear by the top wall; the sensor is the drive-spring extension.
* 'lees_edwards': periodic box with Lees-Edwards images. Preparation at constant volume: the
  spheres grow from a loose lattice (radius scale s, masses fixed) under pressure feedback
  towards the virial pressure P (low friction mu_prep, like the walls' compression); then the
  streaming profile v_x = gamma_dot y is imposed and the box is sheared at gamma_dot under
  **constant normal stress** P_yy = P (`sim.le_barostat`, the default: a damped piston on L_y
  with the walls' mass and damping) or at constant volume (`sim.le_barostat=False`).
  The sensor is the virial shear stress -P_xy (kinetic part included) over P.

Units: mean diameter d = 1, density 6/pi (a d = 1 sphere has mass 1), normal load P = `pressure`
(1 by default), so stresses are in units of P and times in d sqrt(rho/P). (Lees-Edwards: the
final radius scale s, close to 1, makes the mean diameter s d; it is in the meta and the tracks.)

Checkpointing: with ``ckpt_dir`` the whole record (DEM state with contact history, neighbour
list and wall state, the chunk counter, the series and scans so far, the compressed gap or the
radius scale) is saved through ``jaxpapers.checkpoint`` every ``sim.ckpt_every`` chunks; re-running
with the same directory resumes and gives the uninterrupted result bit for bit (the DEM has no
random numbers after the seeded initial packing, which is rebuilt from the seed).

Output (`shear_experiment`) is the same dictionary the track reader returns (see io.py): the
"tomography scans" (free-particle positions every `scan_strain` of imposed strain) and the dense
"force sensor" record (shear stress vs strain), so the analysis runs identically on real data.
"""

from __future__ import annotations

import functools
import json
import math
import time
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import checkpoint
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


def _cells_le(sim, radius: np.ndarray, box: tuple, skin: float) -> tuple | None:
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
        st = dem.rebuild(st, ps, sp)

        def inner(x, _):
            x = dem.step(x, ps, sp)
            return x, dem.observe_le(x, ps, sp)

        st, obs = jax.lax.scan(inner, st, None, length=block_steps)
        p = jnp.mean(obs[:, 3])
        s = jnp.minimum(s * (1.0 + rate * jnp.clip(1.0 - p / target_p, -1.0, 1.0)), 1.0)
        return (st, s), obs

    (state, scale), obs = jax.lax.scan(one, (state, scale), None, length=n_blocks)
    return state, scale, obs.reshape(n_blocks * block_steps, -1)


class Interrupted(RuntimeError):
    """Raised by `shear_experiment(stop_after=...)` after saving (tests of the resume path)."""

    def __init__(self, msg: str, chunk: int, total: int, n_prep: int):
        super().__init__(msg)
        self.chunk, self.total, self.n_prep = chunk, total, n_prep


def _fingerprint(sim, mu: float, mu_roll: float, seed: int) -> np.ndarray:
    cfg = {k: v for k, v in sim.to_dict().items() if k != "ckpt_every"}
    text = json.dumps([cfg, float(mu), float(mu_roll), int(seed)], sort_keys=True, default=str)
    return np.array(zlib.crc32(text.encode()), np.int64)


class _Store:
    """Checkpoints of the experiment record (state + series so far) through jaxpapers.checkpoint.

    A record is saved after every ``every`` chunks (one chunk = one `run_blocks` call of
    n_blocks neighbour-rebuild blocks) and after the last one; a re-run with the same directory
    resumes from the latest. A missing directory or one without checkpoints starts afresh; an
    unreadable (truncated/corrupt) checkpoint or one written by other parameters raises
    `checkpoint.CheckpointError` naming the directory (never a silent restart).
    """

    def __init__(self, directory: str | None, every: int, fingerprint: np.ndarray):
        self.every = int(every)
        self.fp = fingerprint
        self.ck = None
        if directory:
            self.ck = checkpoint.Checkpointer(directory, keep=2, async_save=False)

    def restore(self, rec: dict, log) -> dict:
        if self.ck is None or self.ck.latest_step() is None:
            return rec
        got = self.ck.restore(rec)
        if int(got["fingerprint"]) != int(self.fp):
            raise checkpoint.CheckpointError(
                f"Checkpoint in {self.ck.directory} was written with other simulation "
                "parameters (sim config, friction or seed differ); delete it or use another "
                "workdir."
            )
        got = dict(got, state=jax.tree.map(jnp.asarray, got["state"]))
        got.update({k: np.array(v) for k, v in got.items() if k != "state"})
        log(f"  resumed from {self.ck.directory} at chunk {int(got['chunk'])}")
        return got

    def maybe_save(self, rec: dict, total: int, force: bool = False) -> None:
        c = int(rec["chunk"])
        if self.ck is None or self.ck.latest_step() == c:
            return
        if force or c == total or (self.every and c % self.every == 0):
            self.ck.save(c, rec, force=True)
            self.ck.wait()

    def close(self) -> None:
        if self.ck is not None:
            self.ck.close()


def shear_experiment(
    sim,
    mu: float,
    mu_roll: float,
    seed: int,
    log: Callable[[str], None] = print,
    ckpt_dir: str | None = None,
    stop_after: int | None = None,
) -> dict:
    """Prepares a packing, shears it, returns tracks + series (the io.py dictionary + meta).

    ``sim.boundary`` selects the geometry: 'walls' (rough walls, constant normal load, the
    experiment's cell) or 'lees_edwards' (periodic box, constant volume). With ``ckpt_dir``
    the run checkpoints every ``sim.ckpt_every`` chunks and resumes from that directory;
    ``stop_after`` (chunks) saves and raises `Interrupted`, to test the resume.
    """
    if sim.boundary not in ("walls", "lees_edwards"):
        raise ValueError(f"sim.boundary must be 'walls' or 'lees_edwards', got {sim.boundary!r}.")
    store = _Store(ckpt_dir, sim.ckpt_every, _fingerprint(sim, mu, mu_roll, seed))
    try:
        with jax.enable_x64(True):
            if sim.boundary == "walls":
                return _walls_experiment(sim, mu, mu_roll, seed, log, store, stop_after)
            return _le_experiment(sim, mu, mu_roll, seed, log, store, stop_after)
    finally:
        store.close()


def _record(state, n_scans: int, spp: int, n_free: int, fp: np.ndarray) -> dict:
    """The checkpointed record: everything a resumed run needs besides the config."""
    return dict(
        state=state,
        chunk=np.array(0, np.int64),
        series=np.zeros((n_scans * spp, 6)),
        scans=np.zeros((n_scans + 1, n_free, 3)),
        scan_strain=np.zeros(n_scans + 1),
        h=np.array(0.0),  # walls: compressed gap; Lees-Edwards: radius scale during growth
        fingerprint=fp,
    )


def _advance(rec: dict, store: _Store, total: int, n_prep: int, stop_after: int | None) -> None:
    c = int(rec["chunk"]) + 1
    rec["chunk"] = np.array(c, np.int64)
    store.maybe_save(rec, total)
    if stop_after is not None and c >= stop_after and c < total:
        store.maybe_save(rec, total, force=True)
        raise Interrupted(
            f"stopped after chunk {c} of {total} (checkpoint saved)", c, total, n_prep
        )


def _progress(log, s, n_scans, strain, stress, inertial, t0, pressure, done_here) -> None:
    el = time.time() - t0
    log(
        f"  scan {s + 1}/{n_scans}  strain {strain:.4f}  sigma/P {stress:.3f}  "
        f"P_n/P {pressure:.3f}  I {inertial:.2e}  {el:.0f}s elapsed, "
        f"ETA {el / max(done_here, 1) * (n_scans - s - 1):.0f}s"
    )


def _walls_experiment(sim, mu, mu_roll, seed, log, store, stop_after) -> dict:
    """Compress under load P, then shear at constant imposed velocity (the experiment's cell)."""
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
    sp_prep = dem.SimParams(model=prep_model, **common)
    n_total = len(cell["radius"])
    state = dem.init_state(
        cell["pos"], np.zeros((n_total, 3)), np.zeros((n_total, 3)), parts, sp_prep
    )
    block = sim.rebuild_every
    # Shear speed from the inertial number I = gamma_dot d sqrt(rho/P), with the loose gap as a
    # first guess of the height; it fixes the chunk length (blocks per scan), which is reused
    # for the compression so that one compiled `run_blocks` serves the whole experiment.
    gdot = sim.inertial_number / math.sqrt(DENSITY / sim.pressure)
    h_guess = 0.6 * (cell["height"] - sim.wall_diameter)
    n_blocks = max(1, int(round(sim.scan_strain * h_guess / (gdot * h_guess * dt * block))))
    n_prep = max(1, math.ceil(sim.prep_time / (dt * block * n_blocks)))
    n_scans = int(round(sim.total_strain / sim.scan_strain))
    spp = n_blocks * block // sim.sample_every
    total = n_prep + n_scans
    rec = store.restore(_record(state, n_scans, spp, int(free.sum()), store.fp), log)

    def shear_params(h):
        # Shear at the imposed stage velocity gamma_dot * h (h: the compressed gap); a Python
        # float: same (weak) type as in the compression call, so no recompilation.
        vel = float(gdot * h)
        return vel, dem.SimParams(
            model=contact_model(sim, mu, mu_roll), shear_velocity=vel, **common
        )

    t0, done_here = time.time(), 0
    while int(rec["chunk"]) < total:
        c = int(rec["chunk"])
        if c < n_prep:  # 1) compression under the load, low friction (same for both systems)
            state, obs = dem.run_blocks(rec["state"], parts, sp_prep, n_blocks, block)
            rec["state"] = state
            if c + 1 == n_prep:
                h = float(state.wall[1]) + cell["height"] - 2 * 0.5 * sim.wall_diameter
                log(
                    f"  compressed: gap {h:.3f} d, wall load {float(obs[-1, 5]) / area:.3f} P "
                    f"({time.time() - t0:.1f}s)"
                )
                _check(state, sp_prep, "compression")
                rec["state"] = state.replace(
                    time=state.time * 0.0, wall=state.wall.at[0].set(0.0).at[2].set(0.0)
                )
                rec["h"] = np.array(h)
                rec["scans"][0] = np.asarray(state.pos)[free]
        else:  # 2) shear
            s = c - n_prep
            vel, sp = shear_params(float(rec["h"]))
            h = float(rec["h"])
            state, obs = dem.run_blocks(rec["state"], parts, sp, n_blocks, block)
            rec["state"] = state
            obs = np.asarray(obs)
            rec["series"][s * spp : (s + 1) * spp] = obs.reshape(
                -1, sim.sample_every, obs.shape[-1]
            ).mean(axis=1)
            rec["scans"][s + 1] = np.asarray(state.pos)[free]
            rec["scan_strain"][s + 1] = float(state.time) * vel / h  # imposed (stage) strain
            done_here += 1
            if (s + 1) % max(1, n_scans // 10) == 0 or s == n_scans - 1:
                p_meas = float(np.mean(obs[:, 5])) / area
                inertial = vel / h * math.sqrt(DENSITY / max(p_meas, 1e-12))
                stress = _stress(obs[-1:], sp, area)[0] / sim.pressure
                _progress(
                    log,
                    s,
                    n_scans,
                    rec["scan_strain"][s + 1],
                    stress,
                    inertial,
                    t0,
                    p_meas / sim.pressure,
                    done_here,
                )
            _check(state, sp, f"shear scan {s + 1}")
        _advance(rec, store, total, n_prep, stop_after)
    state, h = rec["state"], float(rec["h"])
    vel, sp = shear_params(h)
    ser = rec["series"]
    stress = _stress(ser, sp, area) / sim.pressure
    return dict(
        ids=np.arange(int(free.sum())),
        radius=cell["radius"][free],
        positions=rec["scans"],
        scan_strain=rec["scan_strain"],
        strain=ser[:, 1] / h,
        stress=stress,
        pressure=ser[:, 5] / area / sim.pressure,
        box=np.array([lx, 0.0, lz]),
        final_state=state,
        meta=dict(
            boundary="walls",
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


def _le_experiment(sim, mu, mu_roll, seed, log, store, stop_after) -> dict:
    """Lees-Edwards shear at constant volume of a packing grown to pressure P."""
    box = build_le_box(sim, seed)
    lx, ly, lz = box["box"]
    parts = dem.make_particles(box["radius"], box["kind"], DENSITY, None, box["box"])
    r0 = parts.radius
    tc = math.pi / math.sqrt(sim.kn / 0.5)
    dt = tc / sim.steps_per_contact
    block = sim.rebuild_every
    gdot = sim.inertial_number / math.sqrt(DENSITY / sim.pressure)  # d = 1 (nominal)
    n_blocks = max(1, int(round(sim.scan_strain / (gdot * dt * block))))
    n_prep = max(1, math.ceil(sim.prep_time / (dt * block * n_blocks)))
    n_scans = int(round(sim.total_strain / sim.scan_strain))
    spp = n_blocks * block // sim.sample_every
    total = n_prep + n_scans
    common = dict(
        dt=dt,
        k_slots=sim.k_slots,
        skin=sim.skin,
        cells=_cells_le(sim, box["radius"], box["box"], sim.skin),
        lees_edwards=True,
    )
    sp_prep = dem.SimParams(model=contact_model(sim, sim.mu_prep, 0.0), shear_rate=0.0, **common)
    area = lx * lz
    wall_mass = sim.wall_mass_per_area * area
    sp = dem.SimParams(
        model=contact_model(sim, mu, mu_roll),
        shear_rate=gdot,
        servo=bool(sim.le_barostat),
        pressure=sim.pressure,
        area=area,
        wall_mass=wall_mass,
        wall_damping=sim.wall_damping * math.sqrt(wall_mass * sim.kn),
        **common,
    )
    s0 = box["s0"]
    n = sim.n
    state = dem.init_state(
        box["pos"], np.zeros((n, 3)), np.zeros((n, 3)), parts.replace(radius=r0 * s0), sp_prep
    )
    rec = _record(state, n_scans, spp, n, store.fp)
    rec["h"] = np.array(s0)
    rec = store.restore(rec, log)
    # Growth rate: from s0 to 1 within about half the preparation if the pressure stayed low.
    rate = 2.0 * math.log(1.0 / s0) / (n_prep * n_blocks)
    vol = lx * ly * lz
    t0, done_here = time.time(), 0
    while int(rec["chunk"]) < total:
        c = int(rec["chunk"])
        if c < n_prep:  # 1) radius growth to pressure P, low friction, no shear
            state, scale, obs = grow_blocks(
                rec["state"],
                parts,
                sp_prep,
                jnp.asarray(rec["h"]),
                sim.pressure,
                rate,
                n_blocks,
                block,
            )
            rec["state"], rec["h"] = state, np.asarray(scale)
            if c + 1 == n_prep:
                s_fin = float(rec["h"])
                phi = float(np.sum(4.0 / 3.0 * math.pi * (box["radius"] * s_fin) ** 3)) / vol
                p_end = float(np.mean(np.asarray(obs)[-block:, 3]))
                log(
                    f"  grown: radius scale {s_fin:.4f}, phi {phi:.4f}, "
                    f"p {p_end / sim.pressure:.3f} P ({time.time() - t0:.1f}s)"
                )
                _check(state, sp_prep, "growth")
                # Shear start: wrap into the box, streaming profile v_x += gamma_dot y, t = 0.
                pos = jnp.mod(state.pos, jnp.asarray(box["box"]))
                vel = state.vel.at[:, 0].add(gdot * pos[:, 1])
                wall = jnp.stack([0.0, 0.0, gdot * ly, 0.0]).astype(state.wall.dtype)
                rec["state"] = state.replace(
                    pos=pos, pos_build=pos, vel=vel, time=0.0 * state.time, wall=wall
                )
                rec["scans"][0] = np.asarray(pos)
        else:  # 2) Lees-Edwards shear at constant volume
            s = c - n_prep
            ps = parts.replace(radius=r0 * jnp.asarray(rec["h"]))
            state, obs = dem.run_blocks(rec["state"], ps, sp, n_blocks, block)
            rec["state"] = state
            obs = np.asarray(obs)
            rec["series"][s * spp : (s + 1) * spp] = obs.reshape(
                -1, sim.sample_every, obs.shape[-1]
            ).mean(axis=1)
            rec["scans"][s + 1] = np.asarray(state.pos)
            rec["scan_strain"][s + 1] = float(state.time) * gdot
            done_here += 1
            if (s + 1) % max(1, n_scans // 10) == 0 or s == n_scans - 1:
                p_meas = float(np.mean(obs[:, 4]))  # P_yy, the normal stress
                d_mean = 2.0 * float(np.mean(box["radius"])) * float(rec["h"])
                inertial = gdot * d_mean * math.sqrt(DENSITY / max(p_meas, 1e-12))
                _progress(
                    log,
                    s,
                    n_scans,
                    rec["scan_strain"][s + 1],
                    float(np.mean(obs[:, 2])) / sim.pressure,
                    inertial,
                    t0,
                    p_meas / sim.pressure,
                    done_here,
                )
            _check(state, sp, f"shear scan {s + 1}")
            _check_le_box(state, ps, sp, f"shear scan {s + 1}")
        _advance(rec, store, total, n_prep, stop_after)
    state, scale = rec["state"], float(rec["h"])
    ly_end = ly + float(state.wall[1])
    ser = rec["series"]
    return dict(
        ids=np.arange(n),
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
            dt=dt,
            shear_rate=gdot,
            inertial_number=sim.inertial_number,
            mu=mu,
            mu_roll=mu_roll,
            n_free=n,
            steps=int(n_scans * n_blocks * block),
            max_disp=float(state.max_disp),
        ),
    )


def _stress(obs: np.ndarray, sp: dem.SimParams, area: float) -> np.ndarray:
    """Shear stress read by the sensor: spring extension (driven) or -F_x of the wall (rigid)."""
    if sp.driven:
        return sp.k_drive * (obs[:, 1] - obs[:, 2]) / area
    return -obs[:, 4] / area


def _check_le_box(state: dem.DEMState, parts: dem.Particles, sp: dem.SimParams, where: str):
    """The barostat may not shrink L_y below the minimum-image / cell-list limits."""
    box = np.asarray(dem.box_now(state, parts, sp))
    cut = 2.0 * float(np.max(np.asarray(parts.radius))) + sp.skin
    ly_min = 2.0 * cut if sp.cells is None else max(2.0 * cut, sp.cells[1][1] * cut)
    if box[1] < ly_min:
        raise RuntimeError(
            f"Lees-Edwards box height {box[1]:.3f} fell below {ly_min:.3f} after {where} "
            "(minimum image / cell size): use a larger system or a stiffer packing."
        )


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
