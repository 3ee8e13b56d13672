"""What both shear geometries share: units, contact law, chunk schedule, checkpointed record.

Units: mean diameter d = 1, density 6/pi (a d = 1 sphere has mass 1), normal load P = `pressure`
(1 by default), so stresses are in units of P and times in d sqrt(rho/P).

An experiment is a sequence of chunks (one `dem.run` call of ``n_blocks`` blocks of
``block_steps`` steps; the neighbour list is rebuilt on displacement inside the run):
``n_prep`` preparation chunks, then one chunk per "tomography scan" of the shear. The record
(`new_record`: DEM state, chunk counter, series and scans so far) is what `Store` checkpoints
through ``jaxpapers.checkpoint``; re-running with the same directory resumes and gives the
uninterrupted result bit for bit (the DEM has no random numbers after the seeded initial
packing, which is rebuilt from the seed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import checkpoint, stopping
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


def time_step(sim) -> float:
    """dt: the free-free Hooke contact time divided by ``steps_per_contact``."""
    tc = math.pi / math.sqrt(sim.kn / 0.5)
    return tc / sim.steps_per_contact


def shear_rate(sim) -> float:
    """gamma_dot from the inertial number I = gamma_dot d sqrt(rho/P) (d = 1)."""
    return sim.inertial_number / math.sqrt(DENSITY / sim.pressure)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Chunk counts of one experiment (see the module doc)."""

    dt: float
    block: int  # steps per block (Lees-Edwards growth: one radius update per block)
    n_blocks: int  # blocks per chunk
    n_prep: int  # preparation chunks
    n_scans: int  # shear chunks (one scan each)
    spp: int  # series samples per scan
    observe_every: int  # steps between observations (each sample averages several)

    @property
    def total(self) -> int:
        return self.n_prep + self.n_scans

    @property
    def steps(self) -> int:
        """Steps per chunk."""
        return self.n_blocks * self.block


def schedule(sim, dt: float, n_blocks: int) -> Schedule:
    block = sim.block_steps
    if sim.observe_every < 1 or sim.sample_every % sim.observe_every:
        raise ValueError(
            f"sim.sample_every={sim.sample_every} must be a multiple of "
            f"sim.observe_every={sim.observe_every} >= 1."
        )
    if (n_blocks * block) % sim.sample_every:
        raise ValueError(
            f"sim.sample_every={sim.sample_every} must divide the chunk of {n_blocks} x "
            f"{block} steps (sim.block_steps)."
        )
    return Schedule(
        dt=dt,
        block=block,
        n_blocks=n_blocks,
        n_prep=max(1, math.ceil(sim.prep_time / (dt * block * n_blocks))),
        n_scans=int(round(sim.total_strain / sim.scan_strain)),
        spp=n_blocks * block // sim.sample_every,
        observe_every=int(sim.observe_every),
    )


class Interrupted(stopping.Stopped):
    """Raised after saving the record, at the end of a chunk: on a stop request (SIGTERM/SIGINT
    under `jaxpapers.stopping`; ``signum`` says which) or at ``shear_experiment(stop_after=...)``
    (tests of the resume path; ``signum`` None)."""

    def __init__(self, msg: str, chunk: int, total: int, n_prep: int, signum: int | None = None):
        super().__init__(msg, signum)
        self.chunk, self.total, self.n_prep = chunk, total, n_prep


def fingerprint(sim, mu: float, mu_roll: float, seed: int) -> np.ndarray:
    """CRC of everything that determines the result (checkpoints of other runs are refused)."""
    cfg = {k: v for k, v in sim.to_dict().items() if k != "ckpt_every"}
    text = json.dumps([cfg, float(mu), float(mu_roll), int(seed)], sort_keys=True, default=str)
    return np.array(zlib.crc32(text.encode()), np.int64)


class Store:
    """Checkpoints of the experiment record (state + series so far) through jaxpapers.checkpoint.

    A record is saved after every ``every`` chunks and after the last one; a re-run with the same
    directory resumes from the latest. A missing directory or one without checkpoints starts
    afresh; an unreadable (truncated/corrupt) checkpoint or one written by other parameters
    raises `checkpoint.CheckpointError` naming the directory (never a silent restart).
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


def new_record(state, n_scans: int, spp: int, n_free: int, fp: np.ndarray) -> dict:
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


def advance(rec: dict, store: Store, total: int, n_prep: int, stop_after: int | None) -> None:
    """Counts the finished chunk, checkpoints when due, and stops (after saving) on a stop
    request (`jaxpapers.stopping`) or when ``stop_after`` chunks are done (tests).

    The end of a chunk is the one point where the record is consistent (state, counter, series
    and scans all describe the same instant), so this is where a signal takes effect.
    """
    c = int(rec["chunk"]) + 1
    rec["chunk"] = np.array(c, np.int64)
    store.maybe_save(rec, total)
    signum = stopping.requested()
    asked = stop_after is not None and c >= stop_after
    if (signum is not None or asked) and c < total:
        store.maybe_save(rec, total, force=True)
        saved = "checkpoint saved" if store.ck is not None else "no checkpoint directory"
        raise Interrupted(f"stopped after chunk {c} of {total}; {saved}", c, total, n_prep, signum)


def store_scan(rec: dict, s: int, obs: np.ndarray, spp: int, positions) -> None:
    """Scan ``s`` of the shear: the series samples (means over ``sample_every`` steps of the
    observations, ``spp`` per scan) and the positions."""
    rec["series"][s * spp : (s + 1) * spp] = obs.reshape(spp, -1, obs.shape[-1]).mean(axis=1)
    rec["scans"][s + 1] = np.asarray(positions)


def progress(log, s, n_scans, strain, stress, inertial, t0, pressure, done_here) -> None:
    el = time.time() - t0
    log(
        f"  scan {s + 1}/{n_scans}  strain {strain:.4f}  sigma/P {stress:.3f}  "
        f"P_n/P {pressure:.3f}  I {inertial:.2e}  {el:.0f}s elapsed, "
        f"ETA {el / max(done_here, 1) * (n_scans - s - 1):.0f}s"
    )


def report_due(s: int, n_scans: int) -> bool:
    """Progress is logged about ten times per shear and after the last scan."""
    return (s + 1) % max(1, n_scans // 10) == 0 or s == n_scans - 1


def check(state: dem.DEMState, sp: dem.SimParams, where: str) -> None:
    """Fails loudly on NaNs or a neighbour-list / cell overflow (`dem.check_lists`)."""
    if not np.all(np.isfinite(np.asarray(state.pos))):
        raise FloatingPointError(f"Non-finite positions after {where}: reduce dt or the load.")
    dem.check_lists(state, sp, where)
