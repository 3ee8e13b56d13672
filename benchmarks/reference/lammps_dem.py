"""LAMMPS side of the granular-shear benchmark: data file, `lmp` run, parsed timings.

    python benchmarks/reference/lammps_dem.py --data DATA --steps 20000 --ranks 2

Runs ``granular_shear.in`` (next to this file) on a LAMMPS data file written by
`write_data` (``benchmarks.granular_dem`` writes it from the shared packing), with ``mpirun -np
RANKS`` when RANKS > 1, one OpenMP thread per rank. Prints one JSON line: LAMMPS' own loop
time, particle-steps/s, neighbour builds, the mean virial shear stress, and the wall and CPU
seconds of the whole process (children included). Needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = os.path.join(HERE, "granular_shear.in")


def write_data(path: str, pos, vel, omega, diameter, density: float, box) -> None:
    """LAMMPS `atom_style sphere` data file of a triclinic box [0, L) with zero tilt."""
    f = repr
    rows = [
        f"{i + 1} 1 {f(float(diameter[i]))} {f(density)} " + " ".join(f(float(x)) for x in pos[i])
        for i in range(len(pos))
    ]
    vrows = [
        f"{i + 1} " + " ".join(f(float(x)) for x in (*vel[i], *omega[i])) for i in range(len(pos))
    ]
    head = ["granular shear benchmark", "", f"{len(pos)} atoms", "1 atom types", ""]
    head += [f"0.0 {f(float(b))} {a}lo {a}hi" for b, a in zip(box, "xyz", strict=True)]
    head += ["0.0 0.0 0.0 xy xz yz"]
    text = head + ["", "Atoms # sphere", ""] + rows + ["", "Velocities", ""] + vrows + [""]
    with open(path, "w") as fh:
        fh.write("\n".join(text))


def command(data: str, steps: int, ranks: int, thermo: int, prefix=()) -> list[str]:
    """The `lmp` (or `mpirun -np RANKS lmp`) command line, after ``prefix`` (e.g. taskset)."""
    lmp = shutil.which("lmp") or shutil.which("lmp_serial")
    if lmp is None:
        raise FileNotFoundError("LAMMPS (lmp) is not installed: apt-get install lammps.")
    cmd = [lmp, "-in", INPUT, "-var", "data", data, "-var", "steps", str(steps)]
    cmd += ["-var", "thermo", str(thermo), "-log", "none", "-nocite"]
    if ranks > 1:
        mpirun = shutil.which("mpirun")
        if mpirun is None:
            raise FileNotFoundError("mpirun is not installed: LAMMPS can only run on 1 rank.")
        extra = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        cmd = [mpirun, *extra, "--oversubscribe", "--bind-to", "none", "-np", str(ranks), *cmd]
    return [*prefix, *cmd]


def run(data: str, steps: int, ranks: int, thermo: int = 1000, prefix=()) -> dict:
    """Runs LAMMPS once; returns its timings and the thermo averages (see module doc)."""
    cmd = command(data, steps, ranks, thermo, prefix)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.abspath(data)),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = out.splitlines()
    loop = [ln for ln in lines if ln.startswith("Loop time of")][-1].split()
    seconds, natoms = float(loop[3]), int(loop[-2])
    start = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["Step"])
    thermo_rows = []
    for ln in lines[start + 1 :]:
        parts = ln.split()
        if not parts or not parts[0].isdigit():
            break
        thermo_rows.append([float(x) for x in parts])
    builds = [ln for ln in lines if ln.startswith("Neighbor list builds")]
    return dict(
        code="lammps",
        ranks=ranks,
        steps=steps,
        n=natoms,
        loop_s=seconds,
        particle_steps_per_s=natoms * steps / seconds,
        process_wall_s=wall,
        process_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        neighbor_builds=int(builds[-1].split()[-1]) if builds else None,
        # Thermo rows after step 0: -P_xy (shear stress) and P_yy, configurational virial.
        mean_shear_stress=-sum(r[1] for r in thermo_rows[1:]) / max(1, len(thermo_rows) - 1),
        mean_pyy=sum(r[2] for r in thermo_rows[1:]) / max(1, len(thermo_rows) - 1),
        load_before=[round(v, 2) for v in load],
        load_after=[round(v, 2) for v in os.getloadavg()],
        command=" ".join(cmd),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="LAMMPS data file (atom_style sphere)")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--thermo", type=int, default=1000)
    a = ap.parse_args()
    if a.steps < 1 or a.ranks < 1 or a.thermo < 1 or not os.path.isfile(a.data):
        print(
            "lammps_dem: --steps/--ranks/--thermo must be >= 1 and --data a file.", file=sys.stderr
        )
        sys.exit(2)
    print(json.dumps(run(a.data, a.steps, a.ranks, a.thermo)), flush=True)


if __name__ == "__main__":
    main()
