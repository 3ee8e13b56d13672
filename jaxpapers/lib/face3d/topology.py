"""Topology of MediaPipe's 468-vertex face mesh: triangles, face outline, facial regions.

Where the numbers come from (see README.md beside this file): MediaPipe's canonical face mesh
topology, read from the Python source ``mediapipe/python/solutions/face_mesh_connections.py``
of the ``mediapipe==0.10.14`` wheel (Apache-2.0, copyright The MediaPipe Authors; licence text
in ``LICENSE_MEDIAPIPE.md`` beside this file). ``FACEMESH_TESSELATION`` is written there as a
set of directed edges, three per triangle, in triangle order ``(a,b),(b,c),(c,a)``; this module
recovers the 852 triangles from that order with ``ast`` (no mediapipe import, no code copied)
and stores them, the ordered face oval and the region vertex sets as integer arrays in
``face_mesh_topology.npz``. Regenerate that file (only needed if it is lost) with

    pip download --no-deps mediapipe==0.10.14 --python-version 3.11 --only-binary=:all: -d /tmp/mp
    python -m jaxpapers.tools.face_topology --wheel '/tmp/mp/mediapipe-0.10.14-*.whl'

Vertex conventions used elsewhere: 33/263 are the right/left outer eye corners (subject's
right/left), 10 the top of the forehead, 152 the chin, 1 the nose tip.
"""

from __future__ import annotations

import ast
import functools
import glob
import os
import zipfile

import numpy as np

NUM_VERTICES = 468
TOPOLOGY_FILE = os.path.join(os.path.dirname(__file__), "face_mesh_topology.npz")
_SOURCE_IN_WHEEL = "mediapipe/python/solutions/face_mesh_connections.py"
_REGIONS = {
    # region name -> the edge-set names in MediaPipe's source that make it up.
    "lips": ("FACEMESH_LIPS",),
    "left_eye": ("FACEMESH_LEFT_EYE",),
    "right_eye": ("FACEMESH_RIGHT_EYE",),
    "left_eyebrow": ("FACEMESH_LEFT_EYEBROW",),
    "right_eyebrow": ("FACEMESH_RIGHT_EYEBROW",),
    "nose": ("FACEMESH_NOSE",),
}
REGION_NAMES = ("face", *_REGIONS)
# Landmarks with a fixed anatomical meaning (used to frontalise a reference shape).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER, FOREHEAD, CHIN, NOSE_TIP = 33, 263, 10, 152, 1


def _edge_lists(source: str) -> dict[str, list[tuple[int, int]]]:
    """Edge tuples of every ``NAME = frozenset([...])`` literal, in source order."""
    out: dict[str, list[tuple[int, int]]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        name = getattr(node.targets[0], "id", "")
        call = node.value
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "frozenset"):
            continue
        if len(call.args) != 1 or not isinstance(call.args[0], ast.List):
            continue  # unions of other sets (CONTOURS, IRISES) are not needed
        out[name] = [tuple(ast.literal_eval(e)) for e in call.args[0].elts]
    return out


def _ordered_loop(edges: list[tuple[int, int]]) -> np.ndarray:
    """Vertices of a closed polyline given as undirected edges, in walking order."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    if any(len(v) != 2 for v in nbrs.values()):
        raise ValueError("face oval edges do not form a simple closed loop")
    start = min(nbrs)
    loop, prev, cur = [start], None, start
    while True:
        nxt = [v for v in nbrs[cur] if v != prev][0] if prev is not None else nbrs[cur][0]
        if nxt == start:
            break
        loop.append(nxt)
        prev, cur = cur, nxt
    if len(loop) != len(nbrs):
        raise ValueError("face oval edges form more than one loop")
    return np.asarray(loop, np.int32)


def parse_connections_source(source: str) -> dict[str, np.ndarray]:
    """Triangles, oval and regions from the text of MediaPipe's face_mesh_connections.py."""
    lists = _edge_lists(source)
    tess = lists.get("FACEMESH_TESSELATION")
    if not tess or len(tess) % 3:
        raise ValueError("FACEMESH_TESSELATION not found or not a multiple of three edges")
    tris = []
    for k in range(0, len(tess), 3):
        (a, b), (b2, c), (c2, a2) = tess[k : k + 3]
        if (b, c, a) != (b2, c2, a2):
            raise ValueError(
                f"edges {tess[k : k + 3]} at {k} are not one triangle (a,b),(b,c),(c,a)"
            )
        tris.append((a, b, c))
    out = {
        "triangles": np.asarray(tris, np.int32),
        "face_oval": _ordered_loop(lists["FACEMESH_FACE_OVAL"]),
    }
    for region, names in _REGIONS.items():
        verts = sorted({v for n in names for e in lists[n] for v in e})
        out[region] = np.asarray(verts, np.int32)
    return out


def build_topology_file(wheel: str, out_path: str = TOPOLOGY_FILE) -> dict[str, np.ndarray]:
    """Reads the mediapipe 0.10.14 wheel (a .whl path or glob) and writes the topology .npz."""
    paths = sorted(glob.glob(wheel))
    if not paths:
        raise FileNotFoundError(f"no wheel matches {wheel!r}; see this module's docstring.")
    with zipfile.ZipFile(paths[0]) as z:
        source = z.read(_SOURCE_IN_WHEEL).decode("utf-8")
    topo = parse_connections_source(source)
    np.savez_compressed(out_path, **topo)
    return topo


@functools.cache
def _load() -> dict[str, np.ndarray]:
    if not os.path.isfile(TOPOLOGY_FILE):
        raise FileNotFoundError(
            f"{TOPOLOGY_FILE} is missing; rebuild it from the mediapipe==0.10.14 wheel with "
            "`python -m jaxpapers.tools.face_topology --wheel <path to the .whl>`."
        )
    with np.load(TOPOLOGY_FILE) as f:
        topo = {k: f[k].astype(np.int32) for k in f.files}
    for v in topo.values():
        v.setflags(write=False)
    return topo


def triangles() -> np.ndarray:
    """int32 ``[852, 3]`` triangles of the 468-vertex face mesh (consistent winding)."""
    return _load()["triangles"]


def face_oval() -> np.ndarray:
    """int32 ``[36]`` vertex indices of the face outline, in order around the face."""
    return _load()["face_oval"]


def region_vertices(name: str) -> np.ndarray:
    """Sorted vertex indices of a region: 'face' (all 468), 'left_eye', 'right_eye', 'lips',
    'left_eyebrow', 'right_eyebrow', 'nose' (MediaPipe's contour sets; left = subject's left)."""
    if name == "face":
        return np.arange(NUM_VERTICES, dtype=np.int32)
    if name not in _REGIONS:
        raise ValueError(f"unknown face region {name!r}; expected one of {REGION_NAMES}.")
    return _load()[name]
