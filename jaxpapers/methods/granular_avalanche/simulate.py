"""The shear experiment in simulation: build, prepare under load, shear, record.

Two geometries (``sim.boundary``):
* 'walls' (default, the experiment's cell; ``shear_cell.py``): rough walls, compression under
  the constant normal load P, shear by the top wall; the sensor is the drive-spring extension.
* 'lees_edwards' (``lees_edwards.py``): periodic box with Lees-Edwards images, spheres grown to
  the pressure P, sheared at constant normal stress (barostat) or constant volume; the sensor is
  the virial shear stress.

Units, the chunk schedule and the checkpointed record are shared (``experiment.py``).

Checkpointing: with ``ckpt_dir`` the whole record (DEM state with contact history, neighbour
list and wall state, the chunk counter, the series and scans so far, the compressed gap or the
radius scale) is saved through ``jaxpapers.checkpoint`` every ``sim.ckpt_every`` chunks; re-running
with the same directory resumes and gives the uninterrupted result bit for bit.

Output (`shear_experiment`) is the same dictionary the track reader returns (see io.py): the
"tomography scans" (free-particle positions every `scan_strain` of imposed strain) and the dense
"force sensor" record (shear stress vs strain), so the analysis runs identically on real data.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxpapers.methods.granular_avalanche import experiment, lees_edwards, shear_cell


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
    experiment's cell) or 'lees_edwards' (periodic box). With ``ckpt_dir`` the run checkpoints
    every ``sim.ckpt_every`` chunks and resumes from that directory; ``stop_after`` (chunks)
    saves and raises `experiment.Interrupted`, to test the resume.
    """
    if sim.boundary not in ("walls", "lees_edwards"):
        raise ValueError(f"sim.boundary must be 'walls' or 'lees_edwards', got {sim.boundary!r}.")
    fp = experiment.fingerprint(sim, mu, mu_roll, seed)
    store = experiment.Store(ckpt_dir, sim.ckpt_every, fp)
    geometry = shear_cell if sim.boundary == "walls" else lees_edwards
    try:
        with jax.enable_x64(True):
            return geometry.experiment(sim, mu, mu_roll, seed, log, store, stop_after)
    finally:
        store.close()
