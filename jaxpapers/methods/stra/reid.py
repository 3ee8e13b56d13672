"""Re-identification data and evaluation (official StRA train.py, eval.py): Market-1501 folders,
a face-retrieval stand-in, and the standard Market-1501 CMC / mAP protocol (torchreid
``eval_market1501``).

Market-1501 cannot be downloaded here; ``read_market1501`` reads the standard user-provided layout
``ROOT/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_FFFFFF_NN.jpg`` (pid -1 = junk,
skipped as torchreid does; pid 0 = distractor, kept in the gallery).
"""

from __future__ import annotations

import os
import re

import numpy as np

from jaxpapers.data.builders import read_image

MARKET_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_MARKET_NAME = re.compile(r"([-\d]+)_c(\d)")


def market1501_items(root: str, split: str) -> list[tuple[str, int, int]]:
    """(path, pid, camid) of one Market-1501 split in sorted file order, junk (pid -1) skipped."""
    if split not in MARKET_DIRS:
        raise ValueError(f"Market-1501 split must be one of {sorted(MARKET_DIRS)}, got {split!r}.")
    d = os.path.join(root, MARKET_DIRS[split])
    if not os.path.isdir(d):
        raise FileNotFoundError(
            f"Market-1501 folder {d!r} not found: set --config.data.path to the extracted "
            "Market-1501-v15.09.15 root (with bounding_box_train/, query/, bounding_box_test/)."
        )
    items = []
    for name in sorted(os.listdir(d)):
        m = _MARKET_NAME.match(name)
        if not name.lower().endswith(".jpg") or not m:
            continue
        pid, cam = int(m.group(1)), int(m.group(2)) - 1
        if pid == -1:
            continue
        items.append((os.path.join(d, name), pid, cam))
    if not items:
        raise ValueError(f"No Market-1501 images (PPPP_cC....jpg) in {d!r}.")
    return items


def train_labels(pids) -> np.ndarray:
    """Training pids relabelled to 0..K-1 in sorted order (the classifier's targets)."""
    relabel = {p: i for i, p in enumerate(sorted(set(int(p) for p in pids)))}
    return np.array([relabel[int(p)] for p in pids], np.int32)


def read_market1501(root: str, split: str, image_size=(256, 128)) -> dict[str, np.ndarray]:
    """One Market-1501 split as arrays: image uint8 (N,H,W,3), pid, camid (and 'label' for train).

    Training pids are relabelled to 0..K-1 in sorted order (the classifier's targets).
    """
    out = _stack(market1501_items(root, split), image_size, 3)
    if split == "train":
        out["label"] = train_labels(out["pid"])
    return out


def read_att_faces(
    root: str, split: str, image_size=(56, 48), num_train_ids: int = 30, num_query: int = 2
) -> dict[str, np.ndarray]:
    """AT&T/ORL faces (root/s<id>/<k>.pgm) as a small retrieval task with unseen test identities.

    train: all images of identities s1..s<num_train_ids> (labels 0..);
    query: the first ``num_query`` images of every other identity; gallery: all their images.
    Each image gets its own camera id, so the Market protocol removes exactly the query itself.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"AT&T faces folder {root!r} not found (expected root/s1/1.pgm).")
    ids = [d for d in os.listdir(root) if re.fullmatch(r"s\d+", d)]
    ids = sorted(ids, key=lambda s: int(s[1:]))
    if len(ids) <= num_train_ids:
        raise ValueError(f"{root!r} has {len(ids)} identities; need more than {num_train_ids}.")
    chosen = ids[:num_train_ids] if split == "train" else ids[num_train_ids:]
    items = []
    for pid, d in enumerate(chosen):
        files = sorted(os.listdir(os.path.join(root, d)), key=lambda f: int(re.sub(r"\D", "", f)))
        if split == "query":
            files = files[:num_query]
        elif split not in ("train", "gallery"):
            raise ValueError(f"split must be train, query or gallery, got {split!r}.")
        items += [(os.path.join(root, d, f), pid, k) for k, f in enumerate(files)]
    out = _stack(items, image_size, 1)
    if split == "train":
        out["label"] = out["pid"].astype(np.int32)
    return out


def _stack(items, image_size, channels) -> dict[str, np.ndarray]:
    return {
        "image": np.stack([read_image(p, tuple(image_size), channels) for p, _, _ in items]),
        "pid": np.array([pid for _, pid, _ in items], np.int32),
        "camid": np.array([c for _, _, c in items], np.int32),
    }


def euclidean_distances(qf: np.ndarray, gf: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (Q, G) between L2-normalised features (as the official eval)."""
    qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
    gf = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
    return np.maximum((qf**2).sum(1)[:, None] + (gf**2).sum(1)[None] - 2 * qf @ gf.T, 0.0)


def cmc_map(dist: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank: int = 10):
    """Market-1501 protocol: CMC curve (max_rank,) and mAP.

    For each query, gallery entries with the same pid AND the same camera are removed; queries
    without any remaining true match are skipped. AP is the mean precision at each true match.
    """
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_cams, g_cams = np.asarray(q_cams), np.asarray(g_cams)
    order = np.argsort(dist, axis=1, kind="stable")
    cmcs, aps = [], []
    for i in range(dist.shape[0]):
        idx = order[i]
        keep = ~((g_pids[idx] == q_pids[i]) & (g_cams[idx] == q_cams[i]))
        matches = (g_pids[idx] == q_pids[i])[keep].astype(np.float64)
        if not matches.any():
            continue
        cmc = np.minimum(np.cumsum(matches), 1.0)
        cmc = np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")
        cmcs.append(cmc[:max_rank])
        precision = np.cumsum(matches) / np.arange(1, len(matches) + 1)
        aps.append(float((precision * matches).sum() / matches.sum()))
    if not cmcs:
        raise ValueError("No query has a true match in the gallery (check pids / camera ids).")
    return np.mean(cmcs, axis=0), float(np.mean(aps))
