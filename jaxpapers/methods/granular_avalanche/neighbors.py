"""Fixed-capacity neighbour lists (brute force and cell list) with contact-history remapping.

A list is an int32 array ``nbr`` of shape (N, K): slot k of particle i holds a neighbour index or
the sentinel N. Pairs within ``R_i + R_j + skin`` are kept, the nearest first. Pairs of two
non-free particles (wall-wall) are dropped. Boxes are periodic along the axes where ``box_len``
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


def _select(d2: jax.Array, cut2: jax.Array, ok: jax.Array, cand: jax.Array, k: int, n: int):
    ok = ok & (d2 < cut2)
    count = ok.sum(axis=-1)
    score = jnp.where(ok, -d2, -jnp.inf)
    kk = min(k, score.shape[-1])
    vals, arg = jax.lax.top_k(score, kk)
    idx = jnp.take_along_axis(cand, arg, axis=-1)
    idx = jnp.where(jnp.isfinite(vals), idx, n).astype(jnp.int32)
    if kk < k:
        idx = jnp.concatenate([idx, jnp.full(idx.shape[:-1] + (k - kk,), n, jnp.int32)], -1)
    return idx, jnp.max(count)


def build_brute(
    pos: jax.Array,
    radius: jax.Array,
    free: jax.Array,
    box_len: jax.Array,
    skin: float,
    k: int,
    shift: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """O(N^2) list; returns (nbr (N, K), max candidate count) — count > K means overflow."""
    n = pos.shape[0]
    dele = pair_vectors(pos[:, None, :], pos[None, :, :], box_len, shift)
    d2 = jnp.sum(dele * dele, axis=-1)
    cut = radius[:, None] + radius[None, :] + skin
    ok = ~jnp.eye(n, dtype=bool) & (free[:, None] | free[None, :])
    cand = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None, :], (n, n))
    return _select(d2, cut * cut, ok, cand, k, n)


def build_cells(
    pos: jax.Array,
    radius: jax.Array,
    free: jax.Array,
    box_len: jax.Array,
    skin: float,
    k: int,
    lo: tuple[float, float, float],
    ncell: tuple[int, int, int],
    cell_size: tuple[float, float, float],
    capacity: int,
    shift: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Cell-list build: O(N * 27 * capacity). Returns (nbr, max candidate count, max cell fill).

    The grid is static: ``ncell`` cells of ``cell_size`` from ``lo``; along periodic axes
    ncell * cell_size must equal the box length and ncell >= 3. Along open axes positions are
    clipped into the grid (the outer cells then just hold more particles). ``capacity`` bounds
    the particles per cell: a fill above it is reported so the caller can fail loudly.
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
    slot = start[nbc][..., None] + jnp.arange(capacity)  # (N, 27, C)
    in_cell = (slot < start[nbc + 1][..., None]) & inside[..., None]
    cand = jnp.where(in_cell, order[jnp.clip(slot, 0, n - 1)], n).reshape(n, -1)
    real = cand < n
    cj = jnp.clip(cand, 0, n - 1)
    dele = pair_vectors(pos[:, None, :], pos[cj], box_len, shift)
    d2 = jnp.sum(dele * dele, axis=-1)
    cut = radius[:, None] + radius[cj] + skin
    ok = real & (cj != jnp.arange(n)[:, None]) & (free[:, None] | free[cj])
    nbr, count = _select(d2, cut * cut, ok, cand, k, n)
    return nbr, count, fill


def remap_history(nbr_new: jax.Array, nbr_old: jax.Array, hist_old: jax.Array) -> jax.Array:
    """Carries per-slot history (N, K, 3) to the new slots by matching neighbour ids."""
    n = nbr_new.shape[0]
    match = (nbr_new[:, :, None] == nbr_old[:, None, :]) & (nbr_new[:, :, None] < n)
    return jnp.einsum("ikl,ild->ikd", match.astype(hist_old.dtype), hist_old)
