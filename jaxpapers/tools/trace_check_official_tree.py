"""Compares TRACE's HRTree (trace_vidsgg.hrtree) with the official tree construction.

The official code is NOT part of this project. Point this tool at the user's copy of
MCG-NJU/TRACE ``lib/combine_tree/cluster_tree.py``; it extracts the NumPy-only methods of
``cluster_tree2D`` (node_cluster, cluster_algorithm, get_cluster, get_distance,
get_new_bbox_feat, get_A_and_link) with ``ast`` (no torch needed), runs them on random box
sets and compares layers, node boxes and link matrices with ``hrtree.build_layers_np`` and the
jitted ``hrtree.build_tree``.

    python -m jaxpapers.tools.trace_check_official_tree \
        --cluster_tree=/path/to/TRACE/lib/combine_tree/cluster_tree.py --trials=300

The file is executed (its extracted methods only): run it only on a checkout you trust.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import types

import numpy as np
from absl import flags

from jaxpapers.methods.trace_vidsgg import hrtree
from jaxpapers.tools import cli

_METHODS = (
    "node_cluster",
    "cluster_algorithm",
    "get_cluster",
    "get_distance",
    "get_new_bbox_feat",
    "get_A_and_link",
)


ARGSORTS = ("default", "stable", "introsort")


def load_official(path: str, argsort: str = "default") -> types.SimpleNamespace:
    """An object carrying the official tree methods, bound to max height 7 and partition 2.

    ``argsort``: the official code's ``np.argsort(score)`` as is ("default": this NumPy's, which
    may dispatch to a CPU-dependent SIMD sort), made stable ("stable"), or NumPy's introsort
    ("introsort": ``np.argsort`` of the scores as long double, for which NumPy has no SIMD sort,
    i.e. what NumPy before its SIMD sorts computed for float32 scores on every machine).
    """
    with open(path) as f:
        tree = ast.parse(f.read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "cluster_tree2D")
    funcs = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in _METHODS]
    missing = set(_METHODS) - {f.name for f in funcs}
    if missing:
        raise ValueError(f"{path} lacks cluster_tree2D methods {sorted(missing)}.")
    # The official file targets old NumPy (np.int); give it a namespace where that still works.
    np_shim = types.SimpleNamespace(
        **{k: getattr(np, k) for k in dir(np) if not k.startswith("__")}
    )
    np_shim.int = int
    if argsort == "stable":
        np_shim.argsort = lambda a, *args, **kw: np.argsort(a, kind="stable")
    elif argsort == "introsort":
        np_shim.argsort = lambda a, *args, **kw: np.argsort(np.asarray(a, np.longdouble))
    elif argsort != "default":
        raise ValueError(f"argsort must be one of {ARGSORTS}, got {argsort!r}.")
    namespace = {"np": np_shim, "math": math}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), path, "exec"), namespace)
    obj = types.SimpleNamespace(max_tree_height=7, cluster_num_partition=2)
    for name in _METHODS:
        setattr(obj, name, types.MethodType(namespace[name], obj))
    return obj


def official_tree(obj, boxes: np.ndarray):
    """Runs the official node_cluster + get_A_and_link on one frame's (n, 4) float32 boxes."""
    n = len(boxes)
    roi = np.concatenate([np.zeros((n, 1), np.float32), boxes], 1)
    layers, feat = obj.node_cluster(roi[:, 1:5], 1, [n], [0, n], add_batch_bbox_feat=None)
    _, _, link = obj.get_A_and_link(1, [len(feat)], layers, None)
    return layers[0], feat[:, 1:].astype(np.float32), link[0]


def random_boxes(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "pixels":  # detector-like boxes: all density scores tie at -1
        xy, wh = rng.uniform(0, 600, (n, 2)), rng.uniform(10, 200, (n, 2))
    elif kind == "near_duplicates":  # some boxes within a few pixels of another: partial ties
        xy, wh = rng.uniform(0, 600, (n, 2)), rng.uniform(10, 200, (n, 2))
        k = n // 3
        src = rng.integers(0, n, k)
        xy[:k], wh[:k] = xy[src] + rng.uniform(-1, 1, (k, 2)), wh[src]
    else:  # "unit": coordinates of order 1, every score distinct
        xy, wh = rng.uniform(0, 3, (n, 2)), rng.uniform(0.1, 2, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def compare(path: str, trials: int, n_max: int, seed: int = 0) -> dict:
    import jax
    import jax.numpy as jnp

    results = {}
    for argsort in ARGSORTS:
        obj = load_official(path, argsort)
        tie_order = "stable" if argsort == "stable" else "numpy"
        build = jax.jit(functools.partial(hrtree.build_tree, tie_order=tie_order))
        for kind in ("pixels", "near_duplicates", "unit"):
            rng = np.random.default_rng(seed)
            same_ref = same_jax = 0
            for _ in range(trials):
                n = int(rng.integers(1, n_max + 1))
                boxes = random_boxes(rng, n, kind)
                layers, feat, link = official_tree(obj, boxes)
                ref_layers, ref_feat = hrtree.build_layers_np(boxes, tie_order=tie_order)
                ok = [
                    {k: list(map(int, v)) for k, v in lay.items()} for lay in layers
                ] == ref_layers and np.array_equal(feat, ref_feat)
                same_ref += ok
                pad = np.zeros((n_max, 4), np.float32)
                pad[:n] = boxes
                t = build(jnp.asarray(pad), n)
                total, levels = int(t.num_nodes), int(t.num_levels)
                same_jax += bool(
                    total == len(feat)
                    and np.array_equal(np.asarray(t.link)[:total, : levels + 1], link)
                    and np.array_equal(np.asarray(t.boxes)[:total], feat)
                )
            key = f"{kind}/official_{argsort}_argsort/ours_{tie_order}"
            results[key] = {"trials": trials, "ours_np_equal": same_ref, "ours_jax_equal": same_jax}
    return results


def write_fixture(path: str, out: str, seed: int = 1) -> None:
    """Official layers/boxes/link of 32 box sets as a JSON test fixture (field ``argsort``).

    24 small sets (1-18 boxes, all three kinds): the near-duplicate ones (partially tied density
    scores) with the official code's argsort made stable, the others with it run as NumPy's
    introsort (this NumPy's default argsort may be a CPU-dependent SIMD sort instead). 8 more
    near-duplicate sets of 17-40 boxes (where the introsort partitions, so its tie order is not
    the stable one) with the introsort.
    """
    objs = {a: load_official(path, a) for a in ARGSORTS}
    rng = np.random.default_rng(seed)
    cases = []

    def add(kind, sort, boxes):
        layers, feat, link = official_tree(objs[sort], boxes)
        cases.append(
            {
                "kind": kind,
                "argsort": sort,
                "boxes": boxes.tolist(),
                "layers": [{str(k): list(map(int, v)) for k, v in lay.items()} for lay in layers],
                "node_boxes": feat.tolist(),
                "link": link.tolist(),
            }
        )

    for i in range(24):
        kind = ("pixels", "near_duplicates", "unit")[i % 3]
        boxes = random_boxes(rng, int(rng.integers(1, 19)), kind)
        add(kind, "stable" if kind == "near_duplicates" else "introsort", boxes)
    rng = np.random.default_rng(seed + 1)
    for _ in range(8):
        add(
            "near_duplicates",
            "introsort",
            random_boxes(rng, int(rng.integers(17, 41)), "near_duplicates"),
        )
    with open(out, "w") as f:
        json.dump(
            {
                "source": "MCG-NJU/TRACE@23e7c89 lib/combine_tree/cluster_tree.py",
                "numpy": np.__version__,
                "cases": cases,
            },
            f,
        )


def define_flags() -> None:
    """Flags exist only when run as a program (importing the module defines none)."""
    flags.DEFINE_string(
        "cluster_tree", None, "The official TRACE lib/combine_tree/cluster_tree.py."
    )
    flags.DEFINE_integer("trials", 300, "Random box sets per kind and argsort order.")
    flags.DEFINE_integer("n_max", 40, "Largest number of boxes per set.")
    flags.DEFINE_string(
        "write_fixture", "", "Also save the official trees of 24 small box sets as JSON here."
    )


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    path = F.cluster_tree
    if not path:
        raise ValueError(
            "--cluster_tree is required (the official lib/combine_tree/cluster_tree.py)."
        )
    if not os.path.isfile(path):
        raise ValueError(f"--cluster_tree={path!r} is not a file.")
    if F.trials < 1 or F.n_max < 1:
        raise ValueError("--trials and --n_max must be positive.")
    try:
        if F.write_fixture:
            write_fixture(path, F.write_fixture)
        results = compare(path, F.trials, F.n_max)
    except (ValueError, SyntaxError, StopIteration) as e:
        raise ValueError(
            f"{path} is not a usable cluster_tree.py ({type(e).__name__}: {e})."
        ) from e
    print(json.dumps(results, indent=1))
    print("numpy", np.__version__)


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
