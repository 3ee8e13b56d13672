"""Fixed-capacity half neighbour lists (brute force and cell list) with contact-history remapping.

A list is an int32 array ``pairs`` of shape (P, 2): each unordered pair within
``R_i + R_j + skin`` appears once, as (i, j) with i < j, packed at the front (row-major in i);
the unused slots hold the sentinel (N, N). Pairs of two non-free particles (wall-wall) are
dropped. P is static (`pair_capacity`); the builders return the true pair count so that the
caller can fail loudly when it exceeds P. Boxes are periodic along the axes where ``box_len``
is > 0 (minimum image on unwrapped coordinates); the other axes are open.

Lees-Edwards (``shift`` given, all three axes periodic): the image of the box above (y + L_y)
is displaced along x by ``shift`` (the accumulated shear offset gamma_dot L_y t, any multiple of
L_x may be added). The minimum image first removes whole periods along y, moving x by the same
number of shifts, then applies the ordinary x and z images (`min_image_le`). The cell list wraps
each position into the primary box the same way (y first, carrying x by -shift per period) and,
for a neighbour row that lies across the sheared y boundary, searches the three x cells around
the particle's own x moved by -+shift: since the particle's x, not its cell's, is shifted, the
3-cell window covers [x - shift - cell, x - shift + cell], so one cell width >= cutoff remains
sufficient (no enlarged search, no duplicate candidates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def min_image(dele: jax.Array, box_len: jax.Array) -> jax.Array:
    """Minimum-image convention along axes with box_len > 0 (others untouched)."""
    per = box_len > 0
    safe = jnp.where(per, box_len, 1.0)
    return jnp.where(per, dele - safe * jnp.round(dele / safe), dele)


def min_image_le(
    dele: jax.Array, box_len: jax.Array, shift: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Lees-Edwards minimum image: returns (dele, n_y) with n_y the y-periods removed.

    A pair separated by n_y periods along y sees the other particle's image shifted by
    n_y * shift along x (and, for velocities, by n_y * gamma_dot * L_y: the caller applies it).
    """
    ly = box_len[1]
    ny = jnp.round(dele[..., 1] / ly)
    dx = dele[..., 0] - ny * shift
    dy = dele[..., 1] - ny * ly
    dx = dx - box_len[0] * jnp.round(dx / box_len[0])
    dz = dele[..., 2] - box_len[2] * jnp.round(dele[..., 2] / box_len[2])
    return jnp.stack([dx, dy, dz], axis=-1), ny


def wrap_le(pos: jax.Array, box_len: jax.Array, shift: jax.Array) -> jax.Array:
    """Positions wrapped into [0, L)^3 under Lees-Edwards (x carried by -shift per y period)."""
    ky = jnp.floor(pos[:, 1] / box_len[1])
    x = jnp.mod(pos[:, 0] - ky * shift, box_len[0])
    y = pos[:, 1] - ky * box_len[1]
    y = jnp.where(y >= box_len[1], y - box_len[1], y)  # rounding at the edge
    return jnp.stack([x, y, jnp.mod(pos[:, 2], box_len[2])], axis=-1)


def pair_vectors(
    pi: jax.Array, pj: jax.Array, box_len: jax.Array, shift: jax.Array | None
) -> jax.Array:
    """x_i - x_j under the box's minimum image (Lees-Edwards when shift is not None)."""
    if shift is None:
        return min_image(pi - pj, box_len)
    return min_image_le(pi - pj, box_len, shift)[0]


def pair_capacity(n: int, k_slots: int) -> int:
    """Static length of the half pair list: ``k_slots`` neighbours per particle on average."""
    return max(1, (n * k_slots + 1) // 2)


def _compact(ok: jax.Array, cand: jax.Array, capacity: int, n: int) -> tuple[jax.Array, jax.Array]:
    """Packs the accepted (row i, candidate j) entries, row-major, into a (capacity, 2) list.

    Returns (pairs, count): unused slots hold the sentinel n; count > capacity means overflow
    (the pairs past the capacity are lost and the caller must fail loudly).
    """
    rows = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], ok.shape).reshape(-1)
    flat = ok.reshape(-1)
    count = jnp.sum(flat, dtype=jnp.int32)
    # Destination of each accepted entry; rejected ones (and overflow) fall out of bounds.
    dest = jnp.where(flat, jnp.cumsum(flat, dtype=jnp.int32) - 1, capacity)
    pairs = jnp.full((capacity, 2), n, jnp.int32)
    pairs = pairs.at[dest, 0].set(rows, mode="drop")
    pairs = pairs.at[dest, 1].set(cand.reshape(-1).astype(jnp.int32), mode="drop")
    return pairs, count


def select_pairs(
    keep: jax.Array, pairs: jax.Array, capacity: int, n: int
) -> tuple[jax.Array, jax.Array]:
    """The rows of ``pairs`` where ``keep``, in order, packed into a (capacity, 2) list.

    Returns (selected, count) like `_compact`: sentinel n in unused slots, count > capacity
    means overflow (the rows past the capacity are lost; the caller must fail loudly).
    """
    count = jnp.sum(keep, dtype=jnp.int32)
    dest = jnp.where(keep, jnp.cumsum(keep, dtype=jnp.int32) - 1, capacity)
    out = jnp.full((capacity, 2), n, jnp.int32)
    return out.at[dest].set(pairs, mode="drop"), count


def build_brute(
    pos: jax.Array,
    radius: jax.Array,
    free: jax.Array,
    box_len: jax.Array,
    skin: float,
    capacity: int,
    shift: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """O(N^2) half list; returns (pairs (capacity, 2), pair count): count > capacity = overflow."""
    n = pos.shape[0]
    dele = pair_vectors(pos[:, None, :], pos[None, :, :], box_len, shift)
    d2 = jnp.sum(dele * dele, axis=-1)
    cut = radius[:, None] + radius[None, :] + skin
    cand = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None, :], (n, n))
    ok = (cand > jnp.arange(n)[:, None]) & (free[:, None] | free[None, :]) & (d2 < cut * cut)
    return _compact(ok, cand, capacity, n)


def build_cells(
    pos: jax.Array,
    radius: jax.Array,
    free: jax.Array,
    box_len: jax.Array,
    skin: float,
    capacity: int,
    lo: tuple[float, float, float],
    ncell: tuple[int, int, int],
    cell_size: tuple[float, float, float],
    cell_capacity: int,
    shift: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Cell-list build, O(N * 27 * cell_capacity): returns (pairs, pair count, max cell fill).

    The grid is static: ``ncell`` cells of ``cell_size`` from ``lo``; along periodic axes
    ncell * cell_size must equal the box length and ncell >= 3. Along open axes positions are
    clipped into the grid (the outer cells then just hold more particles). ``cell_capacity``
    bounds the particles per cell: a fill above it is reported so the caller can fail loudly.
    ``capacity`` is the length of the pair list (see `build_brute`).
    With ``shift`` (Lees-Edwards, every axis periodic) see the module docstring.
    """
    n = pos.shape[0]
    ncell_a = jnp.array(ncell)
    per = box_len > 0
    rel = pos - jnp.array(lo)
    if shift is None:
        rel = jnp.where(per, jnp.mod(rel, jnp.where(per, box_len, 1.0)), rel)
    else:
        rel = wrap_le(rel, box_len, shift)
        cell_size = box_len / ncell_a  # the box may change height (barostat)
    c3 = jnp.clip(jnp.floor(rel / jnp.array(cell_size)).astype(jnp.int32), 0, ncell_a - 1)
    cid = (c3[:, 0] * ncell[1] + c3[:, 1]) * ncell[2] + c3[:, 2]
    order = jnp.argsort(cid)
    sorted_cid = cid[order]
    ntot = ncell[0] * ncell[1] * ncell[2]
    start = jnp.searchsorted(sorted_cid, jnp.arange(ntot + 1), side="left")
    fill = jnp.max(start[1:] - start[:-1])

    offs = jnp.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    nb3 = c3[:, None, :] + offs[None, :, :]  # (N, 27, 3)
    if shift is not None:
        # Rows across the sheared y boundary: x cells around the particle's x -/+ shift.
        cross = jnp.floor_divide(nb3[..., 1], ncell[1])  # -1, 0, +1
        xs = jnp.mod(rel[:, None, 0] - cross * shift, box_len[0])
        cx = jnp.clip(jnp.floor(xs / cell_size[0]).astype(jnp.int32), 0, ncell[0] - 1)
        nb3 = nb3.at[..., 0].set(jnp.where(cross != 0, cx + offs[None, :, 0], nb3[..., 0]))
    inside = jnp.all(per | ((nb3 >= 0) & (nb3 < ncell_a)), axis=-1)
    nb3 = jnp.mod(nb3, ncell_a)
    nbc = (nb3[..., 0] * ncell[1] + nb3[..., 1]) * ncell[2] + nb3[..., 2]
    slot = start[nbc][..., None] + jnp.arange(cell_capacity)  # (N, 27, C)
    in_cell = (slot < start[nbc + 1][..., None]) & inside[..., None]
    cand = jnp.where(in_cell, order[jnp.clip(slot, 0, n - 1)], n).reshape(n, -1)
    real = cand < n
    cj = jnp.clip(cand, 0, n - 1)
    dele = pair_vectors(pos[:, None, :], pos[cj], box_len, shift)
    d2 = jnp.sum(dele * dele, axis=-1)
    cut = radius[:, None] + radius[cj] + skin
    # Each unordered pair once: j > i (the 27 cells around i are distinct, ncell >= 3).
    ok = real & (cand > jnp.arange(n)[:, None]) & (free[:, None] | free[cj]) & (d2 < cut * cut)
    pairs, count = _compact(ok, cand, capacity, n)
    return pairs, count, fill


def remap_history(
    pairs_new: jax.Array, pairs_old: jax.Array, hist_old: jax.Array, n: int
) -> jax.Array:
    """Carries per-pair history (K, P_old) to the new list by matching (i, j) ids (both i < j).

    The two lists may have different lengths. O(P log P): the old pair keys i (n + 1) + j are
    sorted once and each new key is looked up by binary search; a new pair that was not listed
    before starts from zero history.
    """
    key = lambda p: p[:, 0].astype(jnp.int64) * (n + 1) + p[:, 1]  # noqa: E731
    k_old, k_new = key(pairs_old), key(pairs_new)
    order = jnp.argsort(k_old)
    k_sorted = k_old[order]
    at = jnp.clip(jnp.searchsorted(k_sorted, k_new), 0, k_old.shape[0] - 1)
    found = (k_sorted[at] == k_new) & (pairs_new[:, 0] < n)
    return jnp.where(found, hist_old[:, order[at]], 0.0)
