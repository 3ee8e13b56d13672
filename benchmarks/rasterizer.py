"""Frames/s of the JAX rasteriser + guidance maps on the 468-vertex face mesh (not a test).

    python -m benchmarks.rasterizer --sizes=128,256 --batch=8 --out=/tmp/face3d/bench_raster.json
    python -m benchmarks.rasterizer --max_per_tile=1   # the dense all-triangles pass, for scale

Renders a batch of tracked carphone frames' meshes (or, without the tracker packages, a fixed
synthetic dome over the same topology) at each size with ``rasterize_batch`` alone and with the
full ``guidance_maps``; reports compile seconds, frames/s (wall) and CPU seconds per frame.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxpapers.layers import rasterizer
from jaxpapers.lib.face3d import render, topology

_SIZES = flags.DEFINE_list("sizes", ["128", "256"], "Square image sizes.")
_BATCH = flags.DEFINE_integer("batch", 8, "Meshes per call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per size.")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Triangles per scan step of the dense pass.")
_TILE = flags.DEFINE_integer("tile", 8, "Block side of the tiled pass.")
_CAP = flags.DEFINE_integer("max_per_tile", 128, "Tiled-pass capacity (1 forces the dense pass).")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")


def _meshes(batch: int) -> tuple[np.ndarray, str]:
    """[B, 468, 3] meshes in a unit box: tracked carphone frames when possible."""
    try:
        from jaxpapers.data import face_video

        frames = face_video.decode_video(face_video.builtin_clip_path(), max_frames=batch)
        from jaxpapers.lib.face3d.tracker import FaceMeshTracker

        lm, found = FaceMeshTracker().track_video(frames)
        if found.all():
            src = "carphone_pristine.mp4 (tracked)"
            _, lm = face_video.crop_face_video(frames, lm, 1)
            return lm.astype(np.float32), src
    except (ImportError, FileNotFoundError, ValueError):
        pass
    rng = np.random.default_rng(0)
    ang = rng.uniform(0, 2 * np.pi, topology.NUM_VERTICES)
    rad = np.sqrt(rng.uniform(0, 1, topology.NUM_VERTICES))
    one = np.stack(
        [
            0.5 + 0.33 * np.cos(ang) * rad,
            0.5 + 0.33 * np.sin(ang) * rad,
            -0.2 * np.sqrt(1 - rad**2),
        ],
        -1,
    )
    return np.repeat(one[None], batch, 0).astype(np.float32), "synthetic dome"


def _time(fn, arg, repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(arg))
    compile_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        jax.block_until_ready(fn(arg))
    return compile_s, time.perf_counter() - t0, time.process_time() - c0


def main(argv):
    del argv
    faces = jnp.asarray(topology.triangles())
    unit, source = _meshes(_BATCH.value)
    results = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "mesh": source,
        "triangles": int(faces.shape[0]),
        "batch": _BATCH.value,
        "sizes": {},
    }
    kw = {"chunk": _CHUNK.value, "tile": _TILE.value, "max_per_tile": _CAP.value}
    results.update(kw)
    for size in (int(s) for s in _SIZES.value):
        verts = jnp.asarray(unit * np.array([size, size, size], np.float32))
        ras = jax.jit(lambda v, s=size: rasterizer.rasterize_batch(v, faces, s, s, **kw).tri_id)
        gui = jax.jit(lambda v, s=size: render.guidance_maps(v, faces, s, s, **kw)["normal"])
        row = {}
        for name, fn in (("rasterize", ras), ("guidance_maps", gui)):
            comp, wall, cpu = _time(fn, verts, _REPEATS.value)
            n = _REPEATS.value * _BATCH.value
            row[name] = {
                "compile_s": round(comp, 2),
                "frames_per_s": round(n / wall, 2),
                "cpu_s_per_frame": round(cpu / n, 4),
            }
        coverage = float((ras(verts) >= 0).mean())
        row["face_coverage"] = round(coverage, 3)
        results["sizes"][str(size)] = row
        print(size, row, flush=True)
    text = json.dumps(results, indent=1)
    print(text)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            f.write(text)


if __name__ == "__main__":
    app.run(main)
