"""Granular shear, particle-steps/s: the JAX DEM vs LAMMPS on the same packing, side by side.

    python -m benchmarks.granular_dem --steps=20000 --repeats=2 --out=/tmp/gran_dem.json

Workload (identical in both codes): 4000 spheres, d uniform in
[0.8, 1.2], density 6/pi, solid fraction 0.60 in a cubic periodic box, Hooke with history
(k_n 2000, k_t 2/7 k_n, gamma_n 50, gamma_t 25, mu 0.5), dt 0.001, neighbour skin 0.3 with the
list rebuilt on displacement (LAMMPS `neigh_modify delay 0 every 1 check yes`), Lees-Edwards
shear at gamma_dot 0.02 (LAMMPS: `fix deform xy erate 0.02 remap v`), thermo/stress every 1000
steps. The packing is grown once by the JAX DEM (frictionless growth of the radii to their
nominal values at fixed volume, then relaxation) and cached in --workdir; both codes start from
it (positions, radii, velocities on the streaming profile v_x = gamma_dot y), LAMMPS through a
data file and `benchmarks/reference/granular_shear.in`.

Each measurement is its own process, run alternately: JAX pinned to one core (`taskset -c 0`),
LAMMPS 1 rank (also pinned), JAX on all cores, LAMMPS `mpirun -np 2`; repeated --repeats times.
JAX time is the compiled `dem.run` call (compile excluded, AOT); LAMMPS time is its own loop
time. The JAX DEM runs its contact law on a contact list (`--contact_skin`, capacity from the
start's count times CONTACT_MARGIN; 0 = on the whole neighbour list), LAMMPS skips
non-touching pairs one by one. Every record holds the load average before/after and the process
CPU seconds. One JSON line per measurement, then a summary line with the median ratios.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.reference import lammps_dem
from jaxpapers.methods.granular_avalanche import contact, dem, lees_edwards

N, PHI, D_LO, D_HI, DENSITY = 4000, 0.60, 0.8, 1.2, 6.0 / math.pi
KN, GN, MU, DT, SKIN, GDOT = 2000.0, 50.0, 0.5, 1e-3, 0.3, 0.02
CELL_CAPACITY = 14
CONTACT_MARGIN = 1.5  # contact-list capacity over the start's count (the count fluctuates)

_STEPS = flags.DEFINE_integer("steps", 20000, "Timed shear steps per measurement.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Alternating rounds (JAX 1 core, LAMMPS 1, ...).")
_RANKS = flags.DEFINE_list("ranks", ["1", "2"], "Core counts / LAMMPS ranks to compare.")
_THERMO = flags.DEFINE_integer("thermo", 1000, "Steps between stress observations (both).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/granular_dem", "Packing cache and data file.")
_OUT = flags.DEFINE_string("out", "", "Also append the JSON lines to this file.")
_ROLE = flags.DEFINE_enum("role", "compare", ["compare", "jax"], "jax: one JAX measurement.")
_CONTACT_SKIN = flags.DEFINE_float(
    "contact_skin",
    0.01,
    "JAX contact-list skin (dem.SimParams.contact_skin); 0: the contact list is the whole "
    "neighbour list (the law on every listed pair).",
)
_TOUCH_MARGIN = flags.DEFINE_float(
    "touch_margin",
    0.0,
    "> 0: pack the touching contacts every step (dem.SimParams.touch_slots) into the start's "
    "touching count times this margin; 0: off.",
)


def model() -> contact.ContactModel:
    return contact.make_model("hooke", kn=KN, kt=2.0 / 7.0 * KN, gamman=GN, gammat=0.5 * GN, mu=MU)


def params(
    box: float,
    k_slots: int,
    gdot: float,
    mdl: contact.ContactModel,
    contact_skin: float | None = None,
    contact_slots: int | None = None,
) -> dem.SimParams:
    nc = int(box // (D_HI + SKIN))
    cells = ((0.0, 0.0, 0.0), (nc,) * 3, (box / nc,) * 3, CELL_CAPACITY)
    return dem.SimParams(
        model=mdl,
        dt=DT,
        k_slots=k_slots,
        skin=SKIN,
        contact_skin=contact_skin,
        contact_slots=contact_slots,
        cells=cells,
        lees_edwards=True,
        shear_rate=gdot,
    )


def packing(workdir: str, seed: int = 0) -> dict:
    """The shared start: radii grown on a lattice to solid fraction PHI, relaxed (cached)."""
    path = os.path.join(workdir, f"packing_{N}_{seed}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    rng = np.random.default_rng(seed)
    radius = 0.5 * rng.uniform(D_LO, D_HI, N)
    box = float((np.sum(np.pi / 6 * (2 * radius) ** 3) / PHI) ** (1 / 3))
    m = math.ceil(N ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[rng.permutation(len(grid))[:N]]
    pos = (grid + 0.5) * box / m
    s0 = 0.95 * (box / m) / (2 * radius.max())
    with jax.enable_x64(True):
        frictionless = model().replace(mu=0.0, kt=0.0, gammat=0.0)
        sp = params(box, 24, 0.0, frictionless)
        parts = dem.make_particles(radius, density=DENSITY, box_len=(box,) * 3)
        zeros = np.zeros((N, 3))
        st = dem.init_state(pos, zeros, zeros, parts.replace(radius=parts.radius * s0), sp)
        rate, block = 0.005, 50  # radii +0.5 % per 50 steps, far slower than a contact
        n_blocks = math.ceil(math.log(1 / s0) / math.log1p(rate)) + 1
        st, scale, _ = lees_edwards.grow_blocks(st, parts, sp, s0, 1e30, rate, n_blocks, block)
        if float(scale) != 1.0:
            raise RuntimeError(f"packing: growth stopped at radius scale {float(scale):.4f}.")
        st, _ = dem.run(st, parts, sp, 3000, 1000)  # relax at the final radii
        dem.check_lists(st, sp, "the packing preparation")
        pos = np.mod(np.asarray(st.pos), box)
        vel = np.array(st.vel)
        vel[:, 0] += GDOT * pos[:, 1]  # the streaming profile
        out = dict(pos=pos, vel=vel, omega=np.asarray(st.omega), radius=radius, box=box)
    os.makedirs(workdir, exist_ok=True)
    np.savez(path, **out)
    return out


def bench_jax(
    workdir: str, steps: int, thermo: int, contact_skin: float, touch_margin: float = 0.0
) -> dict:
    """One timed JAX run from the cached packing (this process; compile excluded)."""
    cskin = contact_skin if contact_skin > 0 else None
    pk = packing(workdir)
    box = float(pk["box"])
    load = os.getloadavg()
    with jax.enable_x64(True):
        parts = dem.make_particles(pk["radius"], density=DENSITY, box_len=(box,) * 3)
        # Pair-list capacity: the packing's pair count (skin 0.3) with a 25 % margin; contact
        # list: its count within the contact skin with CONTACT_MARGIN (overflows fail loudly).
        probe = dem.init_state(
            pk["pos"], pk["vel"], pk["omega"], parts, params(box, 24, GDOT, model(), cskin)
        )
        k_slots = math.ceil(2 * 1.25 * int(probe.max_count) / N)
        c_slots = None
        if cskin is not None:
            c_slots = math.ceil(2 * CONTACT_MARGIN * int(probe.max_contacts) / N)
        sp = params(box, k_slots, GDOT, model(), cskin, c_slots)
        if touch_margin > 0:
            probe = dem.init_state(
                pk["pos"], pk["vel"], pk["omega"], parts, sp.replace(touch_slots=24)
            )
            sp = sp.replace(touch_slots=math.ceil(2 * touch_margin * int(probe.max_touch) / N))
        st = dem.init_state(pk["pos"], pk["vel"], pk["omega"], parts, sp)
        t0 = time.perf_counter()
        run = dem.run.lower(st, parts, sp, steps, thermo).compile()
        compile_s = time.perf_counter() - t0
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        st, obs = run(st, parts, sp)
        obs = np.asarray(obs)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        dem.check_lists(st, sp, "the benchmark")
        vol = box**3
        return dict(
            code="jax",
            cores=len(os.sched_getaffinity(0)),
            steps=steps,
            n=N,
            loop_s=wall,
            particle_steps_per_s=N * steps / wall,
            process_cpu_s=(r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
            compile_s=compile_s,
            neighbor_builds=int(st.n_builds) - 1,  # the setup build is not part of the run
            pairs=int(st.max_count),
            pair_capacity=int(st.pairs.shape[0]),
            contact_skin=cskin,
            contacts=int(st.max_contacts),
            contact_capacity=int(st.contacts.shape[0]),
            contact_builds=int(st.n_contact_builds) - 1,
            touch_slots=sp.touch_slots,
            touching=int(st.max_touch),
            # observe_le's tau and P_yy include the (small) kinetic part, LAMMPS' `compute
            # pressure NULL virial` does not: a sanity check that both run the same system.
            mean_shear_stress=float(np.mean(obs[:, 2])),
            mean_pyy=float(np.mean(obs[:, 4])),
            box=box,
            volume=vol,
            load_before=[round(v, 2) for v in load],
            load_after=[round(v, 2) for v in os.getloadavg()],
            backend=jax.default_backend(),
        )


def _child(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _emit(rec: dict, out: str) -> None:
    line = json.dumps(rec)
    print(line, flush=True)
    if out:
        with open(out, "a") as fh:
            fh.write(line + "\n")


def compare(workdir: str, steps: int, repeats: int, ranks: list[int], thermo: int, out: str):
    pk = packing(workdir)
    data = os.path.join(workdir, f"packing_{N}.data")
    d = 2 * pk["radius"]
    box = float(pk["box"])
    lammps_dem.write_data(data, pk["pos"], pk["vel"], pk["omega"], d, DENSITY, (box,) * 3)
    have_mpi = shutil.which("mpirun") is not None
    taskset = shutil.which("taskset")
    me = [sys.executable, "-m", "benchmarks.granular_dem", "--role=jax", f"--workdir={workdir}"]
    me += [f"--steps={steps}", f"--thermo={thermo}", f"--contact_skin={_CONTACT_SKIN.value}"]
    me += [f"--touch_margin={_TOUCH_MARGIN.value}"]
    results = []
    for rnd in range(repeats):
        for k in ranks:
            pin = [taskset, "-c", ",".join(str(c) for c in range(k))] if taskset else []
            rec = dict(_child(pin + me), round=rnd, cores_requested=k, command=" ".join(pin + me))
            _emit(rec, out)
            results.append(rec)
            if k > 1 and not have_mpi:
                _emit(dict(code="lammps", ranks=k, skipped="mpirun not installed"), out)
                continue
            pin = pin if k == 1 else []  # LAMMPS on 2 ranks: mpirun places them
            rec = lammps_dem.run(data, steps, k, thermo, prefix=pin)
            rec = dict(rec, round=rnd, cores_requested=k)
            _emit(rec, out)
            results.append(rec)
    summary = {"summary": True, "steps": steps, "repeats": repeats}
    for k in ranks:
        j = [
            r["particle_steps_per_s"]
            for r in results
            if r["code"] == "jax" and r["cores_requested"] == k
        ]
        lm = [
            r["particle_steps_per_s"]
            for r in results
            if r["code"] == "lammps" and r.get("ranks") == k
        ]
        summary[f"jax_{k}"] = float(np.median(j)) if j else None
        summary[f"lammps_{k}"] = float(np.median(lm)) if lm else None
        summary[f"ratio_{k}"] = float(np.median(j) / np.median(lm)) if j and lm else None
    _emit(summary, out)


def main(argv) -> None:
    if len(argv) > 1:
        print(f"granular_dem: unexpected arguments {argv[1:]}; see --help.", file=sys.stderr)
        sys.exit(2)
    try:
        ranks = [int(v) for v in _RANKS.value]
    except ValueError:
        ranks = []
    steps, thermo = _STEPS.value, _THERMO.value
    if not ranks or min(ranks) < 1 or steps < 1 or thermo < 1 or steps % thermo:
        print(
            f"granular_dem: --ranks={','.join(_RANKS.value)}, --steps={steps} and "
            f"--thermo={thermo} must be positive integers, --thermo dividing --steps.",
            file=sys.stderr,
        )
        sys.exit(2)
    if _ROLE.value == "jax":
        rec = bench_jax(_WORKDIR.value, steps, thermo, _CONTACT_SKIN.value, _TOUCH_MARGIN.value)
        print(json.dumps(rec), flush=True)
        return
    compare(_WORKDIR.value, steps, _REPEATS.value, ranks, thermo, _OUT.value)


if __name__ == "__main__":
    app.run(main)
