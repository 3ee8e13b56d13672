"""HRTree: hand-checked trees, official outputs (fixture), NumPy == jitted JAX, LCA, RoIAlign."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.trace_vidsgg import hrtree as H
from jaxpapers.methods.trace_vidsgg.roi_align import roi_align

N_MAX = 130  # > 2**7 leaves, so the extra root layer after 7 halvings is exercised


@pytest.fixture(scope="module")
def build():
    return jax.jit(jax.vmap(H.build_tree))


def jax_tree(build, boxes):
    pad = np.zeros((N_MAX, 4), np.float32)
    pad[: len(boxes)] = boxes
    t = build(jnp.asarray(pad[None]), jnp.asarray([len(boxes)]))
    return jax.tree.map(lambda x: np.asarray(x[0]), t)


def test_hand_checked_three_boxes():
    # Far apart (pixels): every density score ties at -1 -> order [0, 1, 2] -> centres [0, 2]
    # (even sorted positions), node 1 joins the nearer centre 0. Then {3, 4} -> root 5.
    boxes = np.array([[0, 0, 10, 10], [100, 0, 110, 10], [300, 0, 310, 10]], np.float32)
    layers, nb = H.build_layers_np(boxes)
    assert layers == [{3: [0, 1], 4: [2]}, {5: [3, 4]}]
    np.testing.assert_array_equal(nb[3:], [[0, 0, 110, 10], [300, 0, 310, 10], [0, 0, 310, 10]])
    t = H.build_tree_np(boxes)
    np.testing.assert_array_equal(
        t.link[:6, :3], [[0, 3, 5], [1, 3, 5], [2, 4, 5], [-1, 3, 5], [-1, 4, 5], [-1, -1, 5]]
    )
    np.testing.assert_array_equal(
        H.lca_np(t.link, np.array([0, 0, 1, 0]), np.array([1, 2, 2, 0])), [3, 5, 5, 3]
    )  # (0, 0) -> its parent, as the official rule gives


def test_hand_checked_density_rule_picks_duplicates_first():
    # Boxes 1 and 2 coincide: their scores are -2 (< -1), so the sorted order is [1, 2, 0, 3];
    # evens first -> [1, 0, 2, 3]; centres 1 (id 4) and 0 (id 5); 2 joins 1, 3 joins 0.
    boxes = np.array(
        [[0, 0, 10, 10], [100, 100, 110, 110], [100, 100, 110, 110], [20, 0, 30, 10]], np.float32
    )
    layers, nb = H.build_layers_np(boxes)
    assert layers == [{4: [1, 2], 5: [0, 3]}, {6: [4, 5]}]
    np.testing.assert_array_equal(nb[4:], [[100, 100, 110, 110], [0, 0, 30, 10], [0, 0, 110, 110]])


def test_single_box_gets_a_root_and_sizes():
    layers, _ = H.build_layers_np(np.array([[1, 2, 3, 4]], np.float32))
    assert layers == [{1: [0]}]
    assert H.layer_sizes(5) == [3, 2, 1]
    assert H.layer_sizes(129) == [65, 33, 17, 9, 5, 3, 2, 1]  # 7 halvings + the extra root layer
    assert H.max_nodes(5) == 11 and H.max_layers(129) == 8


def test_matches_official_fixture(build):
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "trace_hrtree_official.json")
    with open(path) as f:
        cases = json.load(f)["cases"]
    stable_build = jax.jit(jax.vmap(functools.partial(H.build_tree, tie_order="stable")))
    assert sum(c["argsort"] == "introsort" and len(c["boxes"]) > 16 for c in cases) == 9
    for c in cases:
        tie_order = "stable" if c["argsort"] == "stable" else "numpy"
        boxes = np.asarray(c["boxes"], np.float32)
        layers, nb = H.build_layers_np(boxes, tie_order=tie_order)
        assert [{str(k): v for k, v in lay.items()} for lay in layers] == c["layers"]
        np.testing.assert_array_equal(nb, np.asarray(c["node_boxes"], np.float32))
        t = jax_tree(stable_build if tie_order == "stable" else build, boxes)
        total, levels = int(t.num_nodes), int(t.num_levels)
        np.testing.assert_array_equal(t.link[:total, : levels + 1], c["link"])
        np.testing.assert_array_equal(t.boxes[:total], np.asarray(c["node_boxes"], np.float32))


def _tied_keys(rng, n):
    """Scores with many exact ties (a few distinct values), some NaN and -0.0."""
    x = rng.integers(-2, 3, n).astype(np.float32) * np.float32(rng.choice([1.0, 0.5]))
    if n and rng.random() < 0.3:
        x[rng.integers(0, n, 2)] = np.nan
    return np.where(x == 0, np.float32(-0.0), x) if rng.random() < 0.3 else x


def test_introsort_equals_numpy_argsort_on_ties():
    # np.argsort of long double (and int16) runs NumPy's introsort on every machine (no SIMD
    # sort for those dtypes): the official code's order for float32 scores in NumPy < 1.25.
    rng = np.random.default_rng(0)
    differs = 0
    for _ in range(300):
        x = _tied_keys(rng, int(rng.integers(0, 90)))
        got = H.introsort_argsort_np(x)
        np.testing.assert_array_equal(got, np.argsort(x.astype(np.longdouble)))
        xi = np.nan_to_num(x, nan=9).astype(np.int16)
        np.testing.assert_array_equal(H.introsort_argsort_np(xi), np.argsort(xi))
        differs += not np.array_equal(got, np.argsort(x, kind="stable"))
    assert differs > 100  # ties above 16 elements: not the stable order


def _quicksort_adversary(n):
    """McIlroy's 'killer adversary' input for our introsort: makes it run out of depth."""
    val, gas, state = [n] * n, n, {"solid": 0, "candidate": 0}

    def less(x, y):
        if val[x] == gas and val[y] == gas:
            z = x if x == state["candidate"] else y
            val[z], state["solid"] = state["solid"], state["solid"] + 1
        if val[x] == gas:
            state["candidate"] = x
        elif val[y] == gas:
            state["candidate"] = y
        return val[x] < val[y]

    H._introsort(list(range(n)), less)
    return np.asarray(val, np.float32)


def test_introsort_jax_equals_numpy_including_heapsort_fallback():
    rng = np.random.default_rng(1)
    w = 48
    keys, ms = [], []
    for i in range(40):
        m = int(rng.integers(0, w + 1)) if i else w
        x = np.full(w, 5.0, np.float32)
        x[:m] = _tied_keys(rng, m)
        keys.append(x)
        ms.append(m)
    adv = _quicksort_adversary(w)  # the introsort falls back to heapsort on it
    heaps = []
    H._introsort(list(range(w)), lambda i, j: adv[i] < adv[j], lambda lo, hi: heaps.append(lo))
    assert heaps
    keys.append(adv)
    ms.append(w)
    got = np.asarray(
        jax.jit(jax.vmap(H.introsort_argsort))(jnp.asarray(np.stack(keys)), jnp.asarray(ms))
    )
    for x, m, g in zip(keys, ms, got, strict=True):
        want = np.argsort(x[:m].astype(np.longdouble))
        np.testing.assert_array_equal(g, np.concatenate([want, np.arange(m, w)]))


def test_tie_order_stable_differs_only_above_16_nodes():
    # Near-duplicate boxes: partial ties. Up to 16 boxes the two orders build the same tree.
    rng = np.random.default_rng(2)
    for n, same in ((12, True), (16, True), (40, False)):
        xy = np.round(rng.uniform(0, 4, (n, 2)))
        boxes = np.concatenate([xy, xy + 1], 1).astype(np.float32)
        a = H.build_layers_np(boxes, tie_order="numpy")[0]
        b = H.build_layers_np(boxes, tie_order="stable")[0]
        assert (a == b) == same, n
    with pytest.raises(ValueError, match="tie_order"):
        H.build_layers_np(boxes, tie_order="quick")


def test_jax_equals_numpy_reference(build):
    rng = np.random.default_rng(0)
    for trial in range(12):
        n = int(rng.integers(1, N_MAX + 1)) if trial else N_MAX
        scale = (600, 3, 6)[trial % 3]
        xy = rng.uniform(0, scale, (n, 2))
        if trial % 3 == 2:
            xy = np.round(xy)  # integer coordinates: many exact ties and duplicates
        boxes = np.concatenate([xy, xy + rng.uniform(0.5, scale / 3, (n, 2))], 1).astype(np.float32)
        ref = H.build_tree_np(boxes, N_MAX)
        got = jax_tree(build, boxes)
        for field in ("parent", "level", "mask", "link", "num_nodes", "num_levels"):
            np.testing.assert_array_equal(getattr(got, field), getattr(ref, field), err_msg=field)
        np.testing.assert_array_equal(got.boxes, ref.boxes)


def test_lca_is_lowest_common_ancestor_and_contains_both(build):
    rng = np.random.default_rng(3)
    n = 23
    xy = rng.uniform(0, 500, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 100, (n, 2))], 1).astype(np.float32)
    t = jax_tree(build, boxes)
    s, o = np.nonzero(~np.eye(n, dtype=bool))
    got = np.asarray(H.lca(jnp.asarray(t.link), jnp.asarray(s), jnp.asarray(o)))
    np.testing.assert_array_equal(got, H.lca_np(t.link, s, o))

    def ancestors(v):
        out = [v]
        while t.parent[out[-1]] >= 0:
            out.append(int(t.parent[out[-1]]))
        return out

    for a, b, c in zip(s, o, got, strict=False):
        common = [v for v in ancestors(a) if v in ancestors(b)]
        assert c == common[0]  # the deepest common ancestor
        assert np.all(t.boxes[c, :2] <= np.minimum(boxes[a, :2], boxes[b, :2]))
        assert np.all(t.boxes[c, 2:] >= np.maximum(boxes[a, 2:], boxes[b, 2:]))


def test_flat_tree_puts_every_pair_under_the_scene_root():
    boxes = jnp.asarray([[0, 0, 2, 2], [5, 5, 9, 9], [1, 7, 3, 8], [0, 0, 0, 0]], jnp.float32)
    t = H.flat_tree(jnp.int32(3), boxes, H.max_nodes(4), H.max_layers(4))
    np.testing.assert_array_equal(np.asarray(t.parent[:4]), [3, 3, 3, -1])
    np.testing.assert_array_equal(np.asarray(t.boxes[3]), [0, 0, 9, 9])
    lca = H.lca(t.link, jnp.asarray([0, 1, 2]), jnp.asarray([1, 2, 0]))
    np.testing.assert_array_equal(np.asarray(lca), [3, 3, 3])


def naive_roi_align(feat, box, out, scale, sr):
    h, w, _ = feat.shape
    x1, y1, x2, y2 = [v * scale for v in box]
    bw, bh = max(x2 - x1, 1.0) / out, max(y2 - y1, 1.0) / out
    res = np.zeros((out, out, feat.shape[2]))
    for py in range(out):
        for px in range(out):
            acc = 0.0
            for iy in range(sr):
                for ix in range(sr):
                    y = y1 + py * bh + (iy + 0.5) * bh / sr
                    x = x1 + px * bw + (ix + 0.5) * bw / sr
                    if y < -1 or y > h or x < -1 or x > w:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    yl, xl = int(y), int(x)
                    yh, xh = min(yl + 1, h - 1), min(xl + 1, w - 1)
                    if yl >= h - 1:
                        yl = yh = h - 1
                        y = float(yl)
                    if xl >= w - 1:
                        xl = xh = w - 1
                        x = float(xl)
                    ly, lx = y - yl, x - xl
                    acc = acc + (
                        (1 - ly) * (1 - lx) * feat[yl, xl]
                        + (1 - ly) * lx * feat[yl, xh]
                        + ly * (1 - lx) * feat[yh, xl]
                        + ly * lx * feat[yh, xh]
                    )
            res[py, px] = acc / (sr * sr)
    return res


def test_roi_align_matches_naive_bilinear():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(1, 7, 9, 3)).astype(np.float32)
    boxes = np.array(
        [[[2, 3, 20, 25], [-6, -2, 10, 8], [30, 20, 40, 30], [4, 4, 4.5, 4.2]]], np.float32
    )
    got = np.asarray(roi_align(jnp.asarray(feat), jnp.asarray(boxes), 3, 0.25, 2))
    for r in range(boxes.shape[1]):
        np.testing.assert_allclose(
            got[0, r], naive_roi_align(feat[0], boxes[0, r], 3, 0.25, 2), atol=1e-5
        )


def test_check_official_tree_tool_help_and_bad_input(tmp_path):
    def run(*args):
        cmd = [sys.executable, "-m", "jaxpapers.tools.trace_check_official_tree", *args]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert run("--help").returncode == 0
    missing = run(f"--cluster_tree={tmp_path / 'absent.py'}")
    assert missing.returncode == 2 and "is not a file" in missing.stderr
    wrong = tmp_path / "cluster_tree.py"
    wrong.write_text("class cluster_tree2D:\n    def node_cluster(self):\n        pass\n")
    bad = run(f"--cluster_tree={wrong}", "--trials=1")
    assert bad.returncode == 2 and "not a usable cluster_tree.py" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
