"""LFW ``pairs.txt`` files: read and write the standard pair list (host-side, no JAX).

Format: an optional header line "<folds> <n>", then "name i j" (same person, images i and j) or
"name1 i name2 j" (different people); image k of ``name`` is ``name/name_%04d.<ext>``.
``jaxpapers.evals.face_verification`` scores pairs read here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def read_pairs(path: str, ext: str = "jpg") -> list[tuple[str, str, bool]]:
    """Parses an LFW-format pairs.txt into [(relpath1, relpath2, same)]."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Pairs file not found: {path}")
    pairs = []
    with open(path) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    if lines and len(lines[0]) == 2 and all(t.isdigit() for t in lines[0]):
        lines = lines[1:]  # header "<folds> <pairs per fold>"
    for toks in lines:
        try:
            if len(toks) == 3:
                name, i, j = toks
                pairs.append((_lfw_path(name, i, ext), _lfw_path(name, j, ext), True))
            elif len(toks) == 4:
                n1, i, n2, j = toks
                pairs.append((_lfw_path(n1, i, ext), _lfw_path(n2, j, ext), False))
            else:
                raise ValueError("expected 3 or 4 fields")
        except ValueError as e:
            raise ValueError(f"Bad line in {path}: {' '.join(toks)!r} ({e}).") from None
    return pairs


def write_pairs(path: str, pairs: Sequence[tuple[str, int, str, int]], n_folds: int = 10) -> None:
    """Writes [(name1, idx1, name2, idx2)] in LFW format (3 fields when name1 == name2).

    The header is LFW's ``<sets> TAB <matched pairs per set>`` (each set holds as many mismatched
    pairs), so the strict LFW reader of ``data.face_recognition`` accepts the file.
    """
    with open(path, "w") as f:
        f.write(f"{n_folds}\t{len(pairs) // (2 * n_folds)}\n")
        for n1, i, n2, j in pairs:
            f.write(f"{n1}\t{i}\t{j}\n" if n1 == n2 else f"{n1}\t{i}\t{n2}\t{j}\n")


def _lfw_path(name: str, idx: str, ext: str) -> str:
    """``name/name_%04d.ext``; the name must be one path component so that a pairs file cannot
    point outside the LFW folder (absolute names, ``..``, separators are refused)."""
    bad = not name or name in (".", "..") or "\0" in name or "/" in name or "\\" in name
    if bad or os.path.isabs(name):
        raise ValueError(f"person name {name!r} is not a single folder name")
    if not idx.isdigit():
        raise ValueError(f"image number {idx!r} is not a non-negative integer")
    return os.path.join(name, f"{name}_{int(idx):04d}.{ext}")
