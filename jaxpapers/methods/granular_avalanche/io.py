"""Track files: the documented exchange format between the DEM, real tomography and the analysis.

NPZ format (one file, all arrays float64 unless noted):
  ids          (N,)  int    particle ids (the same particles in every scan)
  radius       (N,)         particle radii (length unit of the positions)
  positions    (S, N, 3)    positions per scan; x = shear, y = gradient, z = vorticity direction;
                            unwrapped or wrapped (displacements use the minimum image along
                            periodic axes)
  scan_strain  (S,)         imposed shear strain at each scan (increasing)
  strain       (T,)         force-sensor series: strain ...
  stress       (T,)         ... and shear stress (any unit; the README uses units of the load P)
  box          (3,)         optional: periodic box lengths, 0 = open axis (default: all open)

CSV format (two files):
  tracks CSV with header ``scan,scan_strain,id,x,y,z,radius`` (one row per particle per scan;
  particles missing from any scan are dropped, with a count in the returned ``meta``), and
  force CSV with header ``strain,stress``.
"""

from __future__ import annotations

import csv
import os

import numpy as np

REQUIRED = ("ids", "radius", "positions", "scan_strain", "strain", "stress")


def save_tracks(path: str, data: dict) -> str:
    """Writes the NPZ format (validated first) and returns the path."""
    validate(data)
    arrays = {k: np.asarray(data[k]) for k in REQUIRED}
    arrays["box"] = np.asarray(data.get("box", np.zeros(3)), np.float64)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def validate(data: dict) -> dict:
    """Checks keys, shapes and finiteness; raises ValueError saying what is wrong."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValueError(
            f"Track data lacks {missing}; the format needs {list(REQUIRED)} "
            "(see jaxpapers/methods/granular_avalanche/io.py)."
        )
    pos = np.asarray(data["positions"])
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[0] < 2:
        raise ValueError(f"positions must be (scans >= 2, N, 3), got {pos.shape}.")
    n = pos.shape[1]
    for k in ("ids", "radius"):
        if np.asarray(data[k]).shape != (n,):
            raise ValueError(
                f"{k} must have shape ({n},) to match positions, got {np.asarray(data[k]).shape}."
            )
    if np.asarray(data["scan_strain"]).shape != (pos.shape[0],):
        raise ValueError(f"scan_strain must have one value per scan ({pos.shape[0]}).")
    if np.any(np.diff(np.asarray(data["scan_strain"], np.float64)) <= 0):
        raise ValueError("scan_strain must be strictly increasing.")
    strain, stress = np.asarray(data["strain"]), np.asarray(data["stress"])
    if strain.ndim != 1 or strain.shape != stress.shape or strain.size < 3:
        raise ValueError(
            f"strain/stress must be equal 1-D series, got {strain.shape}, {stress.shape}."
        )
    for k in ("positions", "radius", "scan_strain", "strain", "stress"):
        if not np.all(np.isfinite(np.asarray(data[k], np.float64))):
            raise ValueError(f"{k} contains NaN or inf.")
    if len(np.unique(data["ids"])) != n:
        raise ValueError("ids must be unique.")
    box = np.asarray(data.get("box", np.zeros(3)), np.float64)
    if box.shape != (3,) or np.any(box < 0):
        raise ValueError(f"box must be 3 non-negative lengths (0 = open), got {box}.")
    return data


def load_tracks(path: str, force_path: str = "", box: tuple = (0.0, 0.0, 0.0)) -> dict:
    """Reads an NPZ file, or a tracks CSV plus a force CSV (`force_path`)."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(f"Track file {path!r} not found (set data.path).")
    if path.endswith(".npz"):
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
        data.setdefault("box", np.asarray(box, np.float64))
        data["meta"] = {"dropped": 0, "source": path}
        return validate(data)
    if path.endswith(".csv"):
        if not force_path or not os.path.exists(force_path):
            raise FileNotFoundError(
                f"A tracks CSV needs the force CSV (strain,stress); got {force_path!r}."
            )
        data = _read_tracks_csv(path)
        fs = _read_csv(force_path, ("strain", "stress"))
        data.update(strain=fs["strain"], stress=fs["stress"], box=np.asarray(box, np.float64))
        return validate(data)
    raise ValueError(f"Unknown track file type {path!r}: expected .npz or .csv.")


def _read_csv(path: str, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in columns):
            raise ValueError(
                f"{path}: header must contain {list(columns)}, got {reader.fieldnames}."
            )
        rows = list(reader)
    try:
        return {c: np.array([float(r[c]) for r in rows]) for c in columns}
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value ({e}).") from e


def _read_tracks_csv(path: str) -> dict:
    t = _read_csv(path, ("scan", "scan_strain", "id", "x", "y", "z", "radius"))
    scans = np.unique(t["scan"].astype(int))
    ids_per = [set(t["id"][t["scan"] == s].astype(int)) for s in scans]
    common = np.array(sorted(set.intersection(*ids_per)), int)
    if common.size == 0:
        raise ValueError(f"{path}: no particle id is present in every scan.")
    n_all = len(set.union(*ids_per))
    pos = np.zeros((len(scans), common.size, 3))
    strain = np.zeros(len(scans))
    radius = np.zeros(common.size)
    for k, s in enumerate(scans):
        m = t["scan"].astype(int) == s
        ids = t["id"][m].astype(int)
        order = np.argsort(ids)
        sel = order[np.searchsorted(ids[order], common)]
        xyz = np.stack([t["x"][m], t["y"][m], t["z"][m]], -1)
        pos[k] = xyz[sel]
        radius = t["radius"][m][sel]
        strain[k] = t["scan_strain"][m][0]
    return dict(
        ids=common,
        radius=radius,
        positions=pos,
        scan_strain=strain,
        meta={"dropped": n_all - common.size, "source": path},
    )
