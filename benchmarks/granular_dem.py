"""Particle-steps per second of the JAX DEM vs LAMMPS on the same frictional system.

    python -m benchmarks.granular_dem --n=1000,4000,16000 --steps=500

System: N spheres (d in [0.9, 1.1]) on a jittered cubic lattice at volume fraction 0.4 in a
periodic cube, Gaussian velocities and spins, pair_style gran/hooke/history (k_n = 1000,
mu = 0.5, damped), dt = 1e-3, neighbour skin 0.3. JAX uses the cell list and rebuilds every 25
steps; LAMMPS uses its binned list with `check yes`. Prints one JSON line per N.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from jaxpapers.methods.granular_avalanche import contact, dem

KN, KT, GN, GT, MU, DT, SKIN = 1e3, 2e3 / 7, 20.0, 10.0, 0.5, 1e-3, 0.3

_N = flags.DEFINE_list("n", ["1000", "4000", "16000"], "System sizes (spheres), comma-separated.")
_STEPS = flags.DEFINE_integer("steps", 500, "Timed DEM steps per system.")


def system(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Positions, velocities, spins, radii and box length of the benchmark gas."""
    rng = np.random.default_rng(seed)
    side = math.ceil(n ** (1 / 3))
    a = (math.pi / 6 / 0.4) ** (1 / 3)
    g = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    pos = (g + 0.5) * a + rng.uniform(-0.02, 0.02, (n, 3))
    return (
        pos,
        rng.normal(0, 0.3, (n, 3)),
        rng.normal(0, 0.3, (n, 3)),
        rng.uniform(0.45, 0.55, n),
        side * a,
    )


def bench_jax(n: int, steps: int, block: int = 25) -> float:
    """Particle-steps per second (compile excluded)."""
    with jax.enable_x64(True):
        pos, vel, om, rad, box = system(n)
        parts = dem.make_particles(rad, box_len=(box, box, box))
        size = 1.1 + SKIN
        nc = max(3, int(box // size))
        cells = ((0.0, 0.0, 0.0), (nc, nc, nc), (box / nc,) * 3, 12) if nc > 3 else None
        model = contact.make_model("hooke", kn=KN, kt=KT, gamman=GN, gammat=GT, mu=MU)
        sp = dem.SimParams(model=model, dt=DT, k_slots=16, skin=SKIN, cells=cells)
        st = dem.init_state(pos, vel, om, parts, sp)
        nb = max(1, steps // block)
        st, obs = dem.run_blocks(st, parts, sp, nb, block)
        obs.block_until_ready()
        t0 = time.perf_counter()
        st, obs = dem.run_blocks(st, parts, sp, nb, block)
        obs.block_until_ready()
        return n * nb * block / (time.perf_counter() - t0)


def bench_lammps(n: int, steps: int) -> float | None:
    """Particle-steps per second of `lmp` (its own loop time), or None without LAMMPS."""
    lmp = shutil.which("lmp") or shutil.which("lmp_serial")
    if lmp is None:
        return None
    pos, vel, om, rad, box = system(n)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            f"{i + 1} 1 {2 * rad[i]:.17g} {6 / math.pi:.17g} "
            + " ".join(f"{x:.17g}" for x in pos[i])
            for i in range(n)
        ]
        vrows = [f"{i + 1} " + " ".join(f"{x:.17g}" for x in (*vel[i], *om[i])) for i in range(n)]
        hdr = ["bench", "", f"{n} atoms", "1 atom types", ""] + [
            f"0 {box:.17g} {a}lo {a}hi" for a in "xyz"
        ]
        text = hdr + ["", "Atoms # sphere", ""] + rows + ["", "Velocities", ""] + vrows
        with open(os.path.join(tmp, "data.txt"), "w") as fh:
            fh.write("\n".join(text) + "\n")
        script = [
            "units lj",
            "atom_style sphere",
            "boundary p p p",
            "newton off",
            "comm_modify vel yes",
            "read_data data.txt",
            f"pair_style gran/hooke/history {KN} {KT} {GN} {GT} {MU} 1",
            "pair_coeff * *",
            f"neighbor {SKIN} bin",
            "neigh_modify delay 0 every 1 check yes",
            f"timestep {DT}",
            "fix 1 all nve/sphere",
            "run 10",
            f"run {steps}",
        ]
        with open(os.path.join(tmp, "in.bench"), "w") as fh:
            fh.write("\n".join(script) + "\n")
        out = subprocess.run(
            [lmp, "-in", "in.bench", "-log", "none"],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        ).stdout
    loops = [line for line in out.splitlines() if line.startswith("Loop time of")]
    seconds = float(loops[-1].split()[3])
    return n * steps / seconds


def main(argv) -> None:
    if len(argv) > 1:
        print(f"granular_dem: unexpected arguments {argv[1:]}; see --help.", file=sys.stderr)
        sys.exit(2)
    try:
        sizes = [int(v) for v in _N.value]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or _STEPS.value < 1:
        print(
            f"granular_dem: --n={','.join(_N.value)} and --steps={_STEPS.value} must be "
            "positive integers.",
            file=sys.stderr,
        )
        sys.exit(2)
    for n in sizes:
        j = bench_jax(n, _STEPS.value)
        lam = bench_lammps(n, _STEPS.value)
        print(
            json.dumps(
                dict(
                    n=n,
                    steps=_STEPS.value,
                    device=jax.devices()[0].platform,
                    jax_particle_steps_per_s=j,
                    lammps_particle_steps_per_s=lam,
                    jax_over_lammps=None if lam is None else j / lam,
                )
            ),
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
