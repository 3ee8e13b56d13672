"""The Hierarchical Relation Tree (HRTree) of TRACE, as the official code builds it.

The rule (MCG-NJU/TRACE lib/combine_tree/cluster_tree.py ``node_cluster``/``cluster_algorithm``/
``get_cluster``/``get_new_bbox_feat``/``get_A_and_link`` and model_builder_rel.py ``get_lca``;
TRACE paper, arXiv 2108.08121), restated here without the official code:

* Leaves are the n boxes (x1, y1, x2, y2) of the key frame, node ids 0..n-1.
* Layer k (k = 0..max_tree_height-1) clusters the m nodes created last (ids l..r) into
  c = ceil(m / partition) parents; the loop stops once c <= 1. If more than one node is left
  after max_tree_height layers, one extra layer merges them all into a single root (c = 1).
* Clustering one layer: d_ab = squared Euclidean distance of the box 4-vectors (float32);
  score_a = -sum_b exp(-d_ab); nodes are sorted by score ascending; the sorted list is
  re-ordered as [even sorted positions..., odd sorted positions...]; its first c entries are the
  centres. Centre i gets the new id r+1+i; every other node joins the centre with the smallest
  distance (first centre on ties). The parent box is the union box of its children.
* ``link[v, j]`` is v's ancestor at level j (level 0 = leaves, level L = the root), -1 below
  v's own level. The LCA of leaves (s, o) is ``link[s, argmax((link[s] != link[o]) * link[s]) +
  1]`` — the lowest common ancestor (for s == o this gives the parent).

Sort ties: with pixel coordinates exp(-d) underflows for every pair but a node with itself, so
most scores tie exactly at -1, and near-duplicate boxes tie partially. The official code sorts
with NumPy's default ``np.argsort`` (kind 'quicksort'). In the NumPy of its time that is NumPy's
introsort (``npysort/quicksort.cpp`` ``aquicksort_``: median-of-3 quicksort partitions while a
segment has more than 16 elements, insertion sort below, heapsort once the depth limit
2*floor(log2 n) is spent), which orders ties deterministically but not stably above 16
elements. Newer NumPy builds dispatch float32/float64 argsort to SIMD sorts (x86-simd-sort on
AVX2/AVX-512 CPUs) whose tie order differs again and depends on the CPU. ``tie_order="numpy"``
(default) reproduces the introsort exactly, on the host (`introsort_argsort_np`) and inside jit
(`introsort_argsort`); NumPy itself still runs that algorithm for dtypes it has no SIMD sort for,
e.g. ``np.argsort(x.astype(np.longdouble))``, which the tests compare against.
``tie_order="stable"`` breaks ties by index (our order before; it equals the introsort whenever
a layer has at most 16 nodes or no two of its scores tie: even all-tied scores come out of an
introsort partition in another order).

``build_tree_np`` is the NumPy reference used by the tests; ``build_tree`` is the jittable
construction over a padded box set (fixed maximum number of boxes, nodes and levels, masks)
and gives identical integer structures.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MAX_TREE_HEIGHT = 7  # cfg.MSP_MAX_TREE_HEIGHT
PARTITION = 2  # cfg.CLUSTER_NUM_PARTITION
TIE_ORDERS = ("numpy", "stable")
SMALL_QUICKSORT = 15  # NumPy: segments with pr - pl <= 15 (<= 16 elements) are insertion-sorted


def _check_tie_order(tie_order: str) -> None:
    if tie_order not in TIE_ORDERS:
        raise ValueError(f"tie_order must be one of {TIE_ORDERS}, got {tie_order!r}.")


def layer_sizes(
    n: int, max_tree_height: int = MAX_TREE_HEIGHT, partition: int = PARTITION
) -> list[int]:
    """Number of parents created by each layer for n leaves (the official loop, no boxes needed)."""
    if n <= 0:
        return []
    sizes, c = [], n
    for _ in range(max_tree_height):
        c = int(math.ceil(c / partition))
        sizes.append(c)
        if c <= 1:
            break
    if c > 1:
        sizes.append(1)
    return sizes


def max_nodes(
    n_max: int, max_tree_height: int = MAX_TREE_HEIGHT, partition: int = PARTITION
) -> int:
    """Total node count for n_max leaves; monotone in n, so it bounds every smaller tree."""
    return n_max + sum(layer_sizes(n_max, max_tree_height, partition))


def max_layers(
    n_max: int, max_tree_height: int = MAX_TREE_HEIGHT, partition: int = PARTITION
) -> int:
    return len(layer_sizes(n_max, max_tree_height, partition))


# ----------------------------------------------------------------------------------------------
# NumPy's introsort argsort (the official code's np.argsort), on the host and inside jit.
# ----------------------------------------------------------------------------------------------


def _np_less(a: float, b: float) -> bool:
    """NumPy's float order: NaN after every number."""
    return a < b or (b != b and a == a)


def _introsort(a: list, less, on_heapsort=None) -> None:
    """NumPy's ``aquicksort_`` on the index list ``a`` in place; ``less(i, j)`` compares items."""
    pl, pr = 0, len(a) - 1
    if pr < 1:
        return
    stack = []  # (pl, pr, depth) of the larger partitions still to sort
    cdepth = 2 * (len(a).bit_length() - 1)  # npy_get_msb(n) * 2
    while True:
        if cdepth < 0:  # not enough progress on this segment: heapsort it
            if on_heapsort is not None:
                on_heapsort(pl, pr)
            _heapsort(a, pl, pr - pl + 1, less)
        else:
            while pr - pl > SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)  # median of three to a[pm]
                if less(a[pm], a[pl]):
                    a[pm], a[pl] = a[pl], a[pm]
                if less(a[pr], a[pm]):
                    a[pr], a[pm] = a[pm], a[pr]
                if less(a[pm], a[pl]):
                    a[pm], a[pl] = a[pl], a[pm]
                vp = a[pm]
                pi, pj = pl, pr - 1
                a[pm], a[pj] = a[pj], a[pm]  # pivot parked at pr - 1 (a sentinel for pi)
                while True:
                    pi += 1
                    while less(a[pi], vp):
                        pi += 1
                    pj -= 1
                    while less(vp, a[pj]):
                        pj -= 1
                    if pi >= pj:
                        break
                    a[pi], a[pj] = a[pj], a[pi]
                a[pi], a[pr - 1] = a[pr - 1], a[pi]  # pivot to its final place
                cdepth -= 1
                if pi - pl < pr - pi:  # keep the larger side for later, go on with the smaller
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            for i in range(pl + 1, pr + 1):  # insertion sort of the small segment
                vi, j = a[i], i
                while j > pl and less(vi, a[j - 1]):
                    a[j] = a[j - 1]
                    j -= 1
                a[j] = vi
        if not stack:
            return
        pl, pr, cdepth = stack.pop()


def _heapsort(a: list, start: int, n: int, less) -> None:
    """NumPy's ``aheapsort_`` of ``a[start:start + n]`` (1-based heap positions k -> start+k-1)."""

    def sift(tmp, i, n):
        j = 2 * i
        while j <= n:
            if j < n and less(a[start + j - 1], a[start + j]):
                j += 1
            if not less(tmp, a[start + j - 1]):
                break
            a[start + i - 1] = a[start + j - 1]
            i, j = j, 2 * j
        a[start + i - 1] = tmp

    for l in range(n >> 1, 0, -1):  # noqa: E741
        sift(a[start + l - 1], l, n)
    while n > 1:
        tmp = a[start + n - 1]
        a[start + n - 1] = a[start]
        n -= 1
        sift(tmp, 1, n)


def introsort_argsort_np(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys)`` as NumPy's introsort computes it (no SIMD dispatch), on the host.

    Equals ``np.argsort(keys.astype(np.longdouble))`` on every machine (NumPy has no SIMD sort for
    long double); differs from the stable order only on ties in segments of more than 16 items.
    """
    keys = np.asarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"keys must be 1-D, got shape {keys.shape}.")
    v = keys.tolist()
    a = list(range(len(v)))
    _introsort(a, lambda i, j: _np_less(v[i], v[j]))
    return np.asarray(a, np.int64)


class _SortState(NamedTuple):
    a: jax.Array  # (w,) the index permutation being sorted
    cut: jax.Array  # (w + 1,) True before every position that starts a final segment
    stack: jax.Array  # (w, 3) pushed (pl, pr, depth)
    sp: jax.Array
    pl: jax.Array
    pr: jax.Array
    cdepth: jax.Array
    popped: jax.Array  # the depth check runs only after a pop (and at the start), as in NumPy
    done: jax.Array


def introsort_argsort(keys: jax.Array, m: jax.Array) -> jax.Array:
    """Jittable `introsort_argsort_np` of ``keys[:m]``; entries m.. of the result stay in place.

    The partitions (and the rare heapsort) run step by step in ``lax.while_loop``s, as NumPy
    does. Insertion sort of a segment is a stable sort of it, and the segments are disjoint and
    final once cut, so all of them are sorted at the end by one stable ``lax.sort`` keyed by
    (segment, key): the same permutation with one vectorised sort instead of O(n^2) steps.
    """
    w = keys.shape[0]
    idx = jnp.arange(w, dtype=jnp.int32)
    m = jnp.clip(jnp.asarray(m, jnp.int32), 0, w)

    def less(x, y):
        return (x < y) | (jnp.isnan(y) & ~jnp.isnan(x))

    def swap(a, i, j, do):
        ai, aj = a[i], a[j]
        return a.at[i].set(jnp.where(do, aj, ai)).at[j].set(jnp.where(do, ai, aj))

    def partition(s: _SortState, go):
        a, pl, pr = s.a, s.pl, s.pr
        pm = pl + ((pr - pl) >> 1)
        a = swap(a, pm, pl, go & less(keys[a[pm]], keys[a[pl]]))
        a = swap(a, pr, pm, go & less(keys[a[pr]], keys[a[pm]]))
        a = swap(a, pm, pl, go & less(keys[a[pm]], keys[a[pl]]))
        vp = keys[a[pm]]
        a = swap(a, pm, pr - 1, go)

        def scan(c):  # one pass of NumPy's inner for(;;): advance pi and pj, swap or stop
            a, pi, pj, _ = c
            v = keys[a]
            pi = jnp.argmax((idx > pi) & ~less(v, vp)).astype(jnp.int32)  # first not < vp
            hit = (idx < pj) & ~less(vp, v)  # last not > vp
            pj = (w - 1 - jnp.argmax(hit[::-1])).astype(jnp.int32)
            stop = pi >= pj
            return swap(a, pi, pj, ~stop), pi, pj, stop

        a, pi, _, _ = jax.lax.while_loop(lambda c: ~c[3], scan, (a, pl, pr - 1, ~go))
        a = swap(a, pi, pr - 1, go)
        cut = s.cut.at[jnp.where(go, pi, w + 1)].set(True, mode="drop")
        cut = cut.at[jnp.where(go, pi + 1, w + 1)].set(True, mode="drop")
        cdepth = s.cdepth - 1
        left_small = pi - pl < pr - pi
        push = jnp.where(
            left_small, jnp.stack([pi + 1, pr, cdepth]), jnp.stack([pl, pi - 1, cdepth])
        )
        stack = s.stack.at[jnp.where(go, s.sp, w)].set(push, mode="drop")
        pick = lambda new, old: jnp.where(go, new, old)  # noqa: E731
        return s._replace(
            a=pick(a, s.a),
            cut=cut,
            stack=stack,
            sp=pick(s.sp + 1, s.sp),
            pl=pick(jnp.where(left_small, pl, pi + 1), pl),
            pr=pick(jnp.where(left_small, pi - 1, pr), pr),
            cdepth=pick(cdepth, s.cdepth),
            popped=pick(False, s.popped),
        )

    def finish_segment(s: _SortState, go, heap):
        a = _heapsort_jax(s.a, keys, s.pl, jnp.where(heap & go, s.pr - s.pl + 1, 0), less)
        cut = s.cut.at[jnp.where(go, s.pl, w + 1)].set(True, mode="drop")
        cut = cut.at[jnp.where(go, s.pr + 1, w + 1)].set(True, mode="drop")
        empty = s.sp == 0
        top = s.stack[jnp.maximum(s.sp - 1, 0)]
        pop = go & ~empty
        pick = lambda new, old: jnp.where(pop, new, old)  # noqa: E731
        return s._replace(
            a=a,
            cut=cut,
            sp=pick(s.sp - 1, s.sp),
            pl=pick(top[0], s.pl),
            pr=pick(top[1], s.pr),
            cdepth=pick(top[2], s.cdepth),
            popped=s.popped | pop,
            done=s.done | (go & empty),
        )

    def body(s: _SortState) -> _SortState:
        heap = s.popped & (s.cdepth < 0)
        part = ~heap & (s.pr - s.pl > SMALL_QUICKSORT)
        s = partition(s, part)
        return finish_segment(s, ~part, heap)

    init = _SortState(
        a=idx,
        cut=jnp.zeros((w + 1,), bool),
        stack=jnp.zeros((w, 3), jnp.int32),
        sp=jnp.int32(0),
        pl=jnp.int32(0),
        pr=m - 1,
        cdepth=2 * (31 - jax.lax.clz(jnp.maximum(m, 1))),  # npy_get_msb(m) * 2
        popped=jnp.bool_(True),
        done=m < 2,
    )
    s = jax.lax.while_loop(lambda s: ~s.done, body, init)
    # The insertion sorts: one stable sort within the segments between cuts (items m.. alone).
    cut = s.cut[:w] | (idx >= m) | (idx == 0)
    segment = jnp.cumsum(cut.astype(jnp.int32))
    v = keys[s.a]
    v = jnp.where(jnp.isnan(v), jnp.nan, jnp.where(v == 0, 0.0, v))  # NumPy's order: -0 == 0
    v = jnp.where(idx < m, v, 0.0)
    _, _, order = jax.lax.sort((segment, v, idx), num_keys=3)
    return s.a[order]


def _heapsort_jax(a, keys, start, n, less):
    """`_heapsort` of ``a[start:start + n]`` in ``lax.while_loop``s (n = 0: nothing)."""
    w = a.shape[0]
    half = n >> 1
    at = lambda k: jnp.clip(start + k - 1, 0, w - 1)  # noqa: E731  (1-based heap position)

    def call(c):  # sift call number k: the n // 2 heap-building sifts, then the n - 1 extractions
        a, k = c
        build = k < half
        l = half - k  # noqa: E741
        top = n - (k - half)  # heap size before this extraction
        tmp = jnp.where(build, a[at(l)], a[at(top)])
        a = jnp.where(build, a, a.at[at(top)].set(a[at(1)]))
        lim = jnp.where(build, n, top - 1)

        def step(c):
            a, i, j, _ = c
            j = jnp.where((j < lim) & less(keys[a[at(j)]], keys[a[at(j + 1)]]), j + 1, j)
            move = less(keys[tmp], keys[a[at(j)]])
            a = jnp.where(move, a.at[at(i)].set(a[at(j)]), a)
            return a, jnp.where(move, j, i), jnp.where(move, 2 * j, j), move

        i0 = jnp.where(build, l, 1)
        a, i, _, _ = jax.lax.while_loop(
            lambda c: c[3] & (c[2] <= lim), step, (a, i0, 2 * i0, jnp.bool_(True))
        )
        return a.at[at(i)].set(tmp), k + 1

    calls = half + jnp.maximum(n - 1, 0)
    a, _ = jax.lax.while_loop(lambda c: c[1] < calls, call, (a, jnp.int32(0)))
    return a


# ----------------------------------------------------------------------------------------------
# NumPy reference.
# ----------------------------------------------------------------------------------------------


def _cluster_layer_np(
    feat: np.ndarray, ids: np.ndarray, c: int, first_new: int, tie_order: str = "numpy"
) -> dict[int, list[int]]:
    """One clustering layer over nodes ``ids``; returns {new_id: [centre, joined...]}."""
    x = feat[ids]
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    score = -np.sum(np.exp(-d), axis=1)
    if tie_order == "numpy":
        order = ids[introsort_argsort_np(score)]
    else:
        order = ids[np.argsort(score, kind="stable")]
    order = np.concatenate([order[0::2], order[1::2]])
    centres, others = order[:c], order[c:]
    layer = {first_new + i: [int(centres[i])] for i in range(c)}
    if len(others):
        dc = ((feat[centres][:, None, :] - feat[others][None, :, :]) ** 2).sum(-1)  # (c, m - c)
        for j, a in enumerate(np.argmin(dc, axis=0)):
            layer[first_new + int(a)].append(int(others[j]))
    return layer


def build_layers_np(
    boxes: np.ndarray,
    max_tree_height: int = MAX_TREE_HEIGHT,
    partition: int = PARTITION,
    tie_order: str = "numpy",
) -> tuple[list[dict[int, list[int]]], np.ndarray]:
    """The official structure: a list of layers {parent_id: [child ids]} and all node boxes.

    Args:
      boxes: (n, 4) boxes (x1, y1, x2, y2); computed in float32 like the official code.
      tie_order: "numpy" (the official np.argsort's introsort order) or "stable" (module doc).
    Returns:
      (layers, node_boxes) with node_boxes (num_nodes, 4) float32.
    """
    _check_tie_order(tie_order)
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (n, 4) (x1, y1, x2, y2); got shape {boxes.shape}.")
    n = len(boxes)
    feat, layers = boxes.copy(), []
    l, r = 0, n - 1  # noqa: E741  (l..r: the ids of the last level, as in the official code)
    for c in layer_sizes(n, max_tree_height, partition):
        layer = _cluster_layer_np(feat, np.arange(l, r + 1), c, r + 1, tie_order)
        layers.append(layer)
        new = np.stack(
            [
                np.concatenate([feat[ch, :2].min(0), feat[ch, 2:].max(0)])
                for ch in (layer[p] for p in sorted(layer))
            ]
        ).astype(np.float32)
        feat = np.concatenate([feat, new])
        l, r = r + 1, r + c  # noqa: E741  (l..r: the ids of the last level, as in the official code)
    return layers, feat


class TreeArrays(NamedTuple):
    """Dense integer structures of one tree (NumPy or JAX; padded in the JAX version).

    Attributes:
      boxes: (M, 4) node boxes; leaves first, then each level in id order.
      parent: (M,) parent id, -1 for the root and padding.
      level: (M,) level (0 = leaf), -1 for padding.
      mask: (M,) True for real nodes.
      link: (M, Lmax + 1) ancestor of each node at each level, -1 where undefined.
      num_nodes: () number of real nodes.
      num_levels: () L, the root's level (number of layers).
    """

    boxes: np.ndarray | jax.Array
    parent: np.ndarray | jax.Array
    level: np.ndarray | jax.Array
    mask: np.ndarray | jax.Array
    link: np.ndarray | jax.Array
    num_nodes: np.ndarray | jax.Array
    num_levels: np.ndarray | jax.Array


def layers_to_arrays(
    layers: list[dict[int, list[int]]], node_boxes: np.ndarray, n: int, m_pad: int, l_pad: int
) -> TreeArrays:
    """Converts the official layer-list form to dense arrays padded to m_pad nodes, l_pad layers."""
    total = len(node_boxes)
    if total > m_pad or len(layers) > l_pad:
        raise ValueError(f"Tree with {total} nodes/{len(layers)} layers exceeds {m_pad}/{l_pad}.")
    parent = -np.ones(m_pad, np.int32)
    level = -np.ones(m_pad, np.int32)
    level[:n] = 0
    for k, layer in enumerate(layers):
        for p, ch in layer.items():
            parent[ch] = p
            level[p] = k + 1
    # The official get_A_and_link walks the layers top-down filling link[son, j:] from the parent.
    link = -np.ones((m_pad, l_pad + 1), np.int32)
    if total:
        link[total - 1, len(layers)] = total - 1
    for j in range(len(layers) - 1, -1, -1):
        for p, ch in layers[j].items():
            link[ch, j + 1 :] = link[p, j + 1 :]
            link[ch, j] = ch
    boxes = np.zeros((m_pad, 4), np.float32)
    boxes[:total] = node_boxes
    return TreeArrays(
        boxes, parent, level, level >= 0, link, np.int32(total), np.int32(len(layers))
    )


def build_tree_np(
    boxes: np.ndarray,
    n_max: int | None = None,
    max_tree_height: int = MAX_TREE_HEIGHT,
    partition: int = PARTITION,
    tie_order: str = "numpy",
) -> TreeArrays:
    """NumPy reference tree of ``boxes`` (n, 4), padded as ``build_tree`` pads for ``n_max``."""
    n = len(boxes)
    n_max = n if n_max is None else n_max
    layers, node_boxes = build_layers_np(boxes, max_tree_height, partition, tie_order)
    return layers_to_arrays(
        layers,
        node_boxes,
        n,
        max_nodes(n_max, max_tree_height, partition),
        max_layers(n_max, max_tree_height, partition),
    )


def lca_np(link: np.ndarray, s: np.ndarray, o: np.ndarray) -> np.ndarray:
    """The official ``get_lca`` rule (model_builder_rel.py) on leaf index arrays s, o."""
    ls, lo = link[s], link[o]
    pos = ((ls != lo) * ls).argmax(1) + 1
    return ls[np.arange(len(pos)), pos]


# ----------------------------------------------------------------------------------------------
# JAX (jittable) construction over a padded box set.
# ----------------------------------------------------------------------------------------------


def build_tree(
    boxes: jax.Array,
    num_boxes: jax.Array,
    max_tree_height: int = MAX_TREE_HEIGHT,
    partition: int = PARTITION,
    tie_order: str = "numpy",
) -> TreeArrays:
    """Jittable HRTree of the first ``num_boxes`` rows of ``boxes`` (n_max, 4).

    All shapes are static: M = max_nodes(n_max) node slots, max_layers(n_max) layers, each layer
    processed over a window of n_max slots with masks. Rows of ``boxes`` beyond ``num_boxes`` are
    ignored. Use ``jax.vmap`` for a batch. ``tie_order``: see the module docstring.
    """
    _check_tie_order(tie_order)
    n_max = boxes.shape[0]
    m_pad = max_nodes(n_max, max_tree_height, partition)
    l_pad = max_layers(n_max, max_tree_height, partition)
    w = n_max  # every level has at most n_max nodes
    n = jnp.asarray(num_boxes, jnp.int32)
    slots = jnp.arange(w)
    feat = jnp.zeros((m_pad + w, 4), jnp.float32).at[:n_max].set(boxes.astype(jnp.float32))
    feat = jnp.where((jnp.arange(m_pad + w) < n)[:, None], feat, 0.0)
    parent = -jnp.ones((m_pad,), jnp.int32)
    level = jnp.where(jnp.arange(m_pad) < n, 0, -1).astype(jnp.int32)
    q_even = slots // 2

    def layer(k, carry):
        feat, parent, level, l, r, m, done, num_levels = carry  # noqa: E741
        # Layers 0..max_tree_height-1 halve; the extra last layer merges the rest into one root.
        c = jnp.where(k == max_tree_height, 1, (m + partition - 1) // partition).astype(jnp.int32)
        active = ~done
        valid = (slots < m) & active
        x = jax.lax.dynamic_slice_in_dim(feat, l, w, axis=0)
        d = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
        score = -jnp.sum(jnp.where(valid[None, :], jnp.exp(-d), 0.0), axis=1)
        if tie_order == "numpy":  # the valid slots are the prefix 0..m-1 of the window
            perm = introsort_argsort(score, jnp.where(active, m, 0))
        else:
            perm = jnp.argsort(jnp.where(valid, score, jnp.inf), stable=True)  # window slots
        # Interleaved rank of sorted position p: even positions first, then odd ones.
        q_sorted = jnp.where(slots % 2 == 0, q_even, (m + 1) // 2 + q_even)
        q = jnp.zeros((w,), jnp.int32).at[perm].set(q_sorted)  # rank of each window slot
        is_centre = valid & (q < c)
        centre_slot = (
            jnp.zeros((w,), jnp.int32).at[jnp.where(is_centre, q, w)].set(slots, mode="drop")
        )
        dc = jnp.where((slots < c)[None, :], d[:, centre_slot], jnp.inf)  # (slot, centre i)
        assign = jnp.where(is_centre, q, jnp.argmin(dc, axis=1)).astype(jnp.int32)
        parent = parent.at[jnp.where(valid, l + slots, m_pad)].set(r + 1 + assign, mode="drop")
        member = valid[:, None] & (assign[:, None] == slots[None, :])  # (child slot, new node)
        lo = jnp.min(jnp.where(member[:, :, None], x[:, None, :2], jnp.inf), axis=0)
        hi = jnp.max(jnp.where(member[:, :, None], x[:, None, 2:], -jnp.inf), axis=0)
        new_ok = (slots < c) & active
        feat = feat.at[jnp.where(new_ok, r + 1 + slots, m_pad + w)].set(
            jnp.concatenate([lo, hi], axis=1), mode="drop"
        )
        level = level.at[jnp.where(new_ok, r + 1 + slots, m_pad)].set(k + 1, mode="drop")
        num_levels = jnp.where(active, k + 1, num_levels)
        l, r, m = jnp.where(active, r + 1, l), jnp.where(active, r + c, r), jnp.where(active, c, m)  # noqa: E741
        return feat, parent, level, l, r, m, done | (c <= 1), num_levels

    carry = (feat, parent, level, jnp.int32(0), n - 1, n, n <= 0, jnp.int32(0))
    feat, parent, level, *_, num_levels = jax.lax.fori_loop(0, l_pad, layer, carry)
    mask = level >= 0
    num_nodes = jnp.sum(mask).astype(jnp.int32)
    link = ancestor_table(parent, level, l_pad)
    return TreeArrays(
        jnp.where(mask[:, None], feat[:m_pad], 0.0),
        parent,
        level,
        mask,
        link,
        num_nodes,
        num_levels,
    )


def ancestor_table(parent: jax.Array, level: jax.Array, l_pad: int) -> jax.Array:
    """link[v, j] = ancestor of v at level j (v itself at its own level), -1 below its level."""
    m_pad = parent.shape[0]
    v = jnp.arange(m_pad, dtype=jnp.int32)
    cols, cur = [], jnp.where(level == 0, v, -1)
    for j in range(l_pad + 1):
        if j > 0:
            up = jnp.where(cur >= 0, parent[jnp.clip(cur, 0, m_pad - 1)], -1)
            cur = jnp.where(level == j, v, jnp.where((level >= 0) & (level < j), up, -1))
        cols.append(cur)
    return jnp.stack(cols, axis=1).astype(jnp.int32)


def lca(link: jax.Array, s: jax.Array, o: jax.Array) -> jax.Array:
    """The official ``get_lca`` rule for leaf indices s, o (any matching shapes)."""
    ls, lo = link[s], link[o]
    pos = jnp.argmax((ls != lo) * ls, axis=-1) + 1
    return jnp.take_along_axis(ls, pos[..., None], axis=-1)[..., 0]


def flat_tree(num_boxes: jax.Array, boxes: jax.Array, m_pad: int, l_pad: int) -> TreeArrays:
    """The "full graph" ablation: every leaf is a child of one whole-scene root (node n).

    The official FULL_GRAPH_MSP switch is only partly wired (it still builds the HRTree); this
    flat tree is our reading of "no hierarchy": every object exchanges context with all others
    through one node, and the LCA of every pair is the whole scene.
    """
    n_max = boxes.shape[0]
    n = jnp.asarray(num_boxes, jnp.int32)
    idx = jnp.arange(m_pad)
    is_leaf = idx < n
    leaf_ok = (jnp.arange(n_max) < n)[:, None]
    lo = jnp.min(jnp.where(leaf_ok, boxes[:, :2], jnp.inf), axis=0)
    hi = jnp.max(jnp.where(leaf_ok, boxes[:, 2:], -jnp.inf), axis=0)
    node_boxes = jnp.zeros((m_pad, 4), jnp.float32).at[:n_max].set(jnp.where(leaf_ok, boxes, 0.0))
    node_boxes = node_boxes.at[n].set(jnp.concatenate([lo, hi]))
    parent = jnp.where(is_leaf, n, -1).astype(jnp.int32)
    level = jnp.where(is_leaf, 0, jnp.where((idx == n) & (n > 0), 1, -1)).astype(jnp.int32)
    mask = level >= 0
    return TreeArrays(
        node_boxes,
        parent,
        level,
        mask,
        ancestor_table(parent, level, l_pad),
        jnp.sum(mask).astype(jnp.int32),
        jnp.int32(1),
    )
