"""Granular avalanches of rough vs smooth spheres (arXiv 2107.13927): DEM shear + analysis.

Presets and exact commands:
  default (CPU, ~10 min on 2 cores; 250 free spheres, rough mu=0.8 + rolling resistance vs smooth
  mu=0.1):
    python -m jaxpapers.main --config=configs/granular_avalanche.py --workdir=/tmp/gran
  large (GPU/TPU; 16k free spheres, cell list):
    python -m jaxpapers.main --config=configs/granular_avalanche.py:large --workdir=/tmp/gran_l
  tracks (analysis only of a real or saved track file, see io.py for the format):
    python -m jaxpapers.main --config=configs/granular_avalanche.py:tracks,data.path=FILE.npz \
        --workdir=/tmp/gran_t
  lees_edwards (the default system in a Lees-Edwards periodic box at constant normal stress
  P_yy = P instead of the wall-driven cell; stress from the virial):
    python -m jaxpapers.main --config=configs/granular_avalanche.py:lees_edwards \
        --workdir=/tmp/gran_le
  (any preset: sim.boundary=lees_edwards switches geometry; re-running a command with the same
  workdir resumes the DEM from its checkpoints, saved every sim.ckpt_every scans)
  smoke (tests: ~60 spheres, a few thousand steps):
    python -m jaxpapers.main --config=configs/granular_avalanche.py:smoke --workdir=/tmp/gran_s
Expected numbers for the default preset are in jaxpapers/methods/granular_avalanche/README.md.
"""

from __future__ import annotations

import ml_collections

from jaxpapers import config_lib

PRESETS = ("default", "large", "tracks", "smoke", "lees_edwards", "smoke_le")


def _sim() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.boundary = "walls"  # 'walls' (rough walls, constant load) | 'lees_edwards' (constant volume)
    s.n = 250  # free spheres
    s.box = 5.0  # periodic box length along x and z (in d)
    s.polydispersity = 0.1  # radii uniform in r (1 +- p)
    s.wall_diameter = 1.0
    s.wall_spacing = 1.0  # glued wall spheres on a square grid
    s.wall_jitter = 0.15  # random heights of the wall spheres (wall roughness, in d)
    s.normal = "hooke"  # 'hooke' | 'hertz'
    s.kn = 2e3  # kappa = k_n / (P d): overlaps ~5e-4 d, well below non-affine ~1e-2 d
    s.kt_ratio = 2.0 / 7.0
    s.restitution = 0.5
    s.pressure = 1.0
    s.steps_per_contact = 30  # dt = t_c / steps_per_contact
    s.k_slots = 16  # pair-list capacity: N k_slots / 2 pairs (overflow fails loudly)
    s.skin = 0.25  # neighbour list rebuilt when a pair may have closed the skin (LAMMPS check yes)
    s.block_steps = 50  # steps per block (chunks are whole blocks; LE growth: one update each)
    s.neighbor = "auto"  # 'auto' | 'brute' | 'cells'
    s.cell_capacity = 8
    s.wall_mass_per_area = 1.0
    s.wall_damping = 0.05  # times sqrt(M_wall k_n) on the wall's normal velocity
    s.mu_prep = 0.1  # friction during compression (same for rough and smooth)
    s.prep_time = 30.0
    s.inertial_number = 1e-3  # I = gamma_dot d sqrt(rho/P); warn above 1e-3
    s.k_drive = 5.0  # drive spring stiffness in P A / d (0 = rigid drive)
    s.total_strain = 0.3
    s.scan_strain = 0.005  # strain between "tomography scans"
    s.sample_every = 25  # force-sensor samples averaged over this many steps
    s.observe_every = 1  # steps between observations (divides sample_every)
    s.le_phi = 0.64  # Lees-Edwards: packing fraction of the nominal radii (sets L_y)
    s.le_barostat = True  # Lees-Edwards shear at constant P_yy = P (False: constant volume)
    # Checkpoint the DEM every this many scans (0 = no periodic saves; the end of each system and
    # a stop are saved either way).
    s.ckpt_every = 10
    return s


def _analysis() -> ml_collections.ConfigDict:
    a = ml_collections.ConfigDict()
    a.drop_threshold = 0.0  # absolute stress-drop threshold (units of P); 0 = from the noise
    a.noise_factor = 3.0  # threshold = noise_factor * robust std of the sensor increments
    a.large_drop_abs = 0.05  # "large" (quasi-periodic) drops: >= this (units of P); 0 = use:
    a.large_drop_fraction = 0.3  # ... >= this fraction of the largest drop
    a.d2min_cutoff = 1.5  # Falk-Langer neighbour cutoff (in d)
    a.corr_field = "nonaffine"  # 'nonaffine' (vector, global affine removed) | 'd2min'
    a.corr_rmax = 4.0
    a.corr_bins = 16
    a.wall_margin = 1.5  # exclude particles within this distance of the walls
    return a


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the locked config for `preset[,key=value,...]`."""
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("granular_avalanche")
    c.preset = preset
    c.sim = _sim()
    c.analysis = _analysis()
    c.surfaces = ml_collections.ConfigDict(
        {"rough_mu": 0.8, "rough_mu_roll": 0.05, "smooth_mu": 0.1, "smooth_mu_roll": 0.0}
    )
    c.data.name = "simulate"  # 'simulate' (run the DEM) | 'tracks' (read data.path)
    c.data.path = ""
    if preset == "large":
        c.sim.n = 16000
        c.sim.box = 20.0
        c.sim.kn = 1e4
        c.sim.steps_per_contact = 40
        c.sim.neighbor = "cells"
        c.sim.total_strain = 1.0
    elif preset == "tracks":
        c.data.name = "tracks"
    elif preset == "lees_edwards":
        c.sim.boundary = "lees_edwards"
        c.analysis.wall_margin = 0.75  # no walls: only trims the unwrapped y edges
    elif preset == "smoke_le":
        c.sim.boundary = "lees_edwards"
        c.analysis.wall_margin = 0.75
        c.sim.n = 60
        c.sim.box = 3.5
        c.sim.prep_time = 6.0
        c.sim.total_strain = 0.006
        c.sim.scan_strain = 0.002
        c.sim.inertial_number = 1e-2
    elif preset == "smoke":
        c.sim.n = 60
        c.sim.box = 4.0
        c.sim.prep_time = 4.0
        c.sim.total_strain = 0.006
        c.sim.scan_strain = 0.002
        c.sim.inertial_number = 1e-2
    return config_lib.finalize(c, overrides)
