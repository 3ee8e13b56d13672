"""On-disk cache of real-data features and statistics, one file per cache key.

A key names everything the real statistics depend on: dataset, split, feature network (with
its weights' hash), image resolution and the number of images. The key is stored inside the
file and checked on load, and it is written next to every number the evaluator reports, so a
number can always be traced to the exact reference statistics it was computed against.
Writes are atomic (temporary file in the same directory + ``os.replace``), so concurrent
evaluations or a crash never leave a half-written cache file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from typing import Any

import numpy as np

from jaxpapers.evals.gan import metrics


def cache_dir(override: str = "") -> str:
    """``override``, else ``$JAXPAPERS_CACHE/gan_stats`` (default ``~/.cache/jaxpapers``)."""
    if override:
        return override
    root = os.environ.get("JAXPAPERS_CACHE", os.path.expanduser("~/.cache/jaxpapers"))
    return os.path.join(root, "gan_stats")


def make_key(
    dataset: str, split: str, feature_net: str, resolution: str, count: int, **extra: Any
) -> dict[str, Any]:
    """The cache key as a plain JSON-able dict (extra fields, e.g. preprocessing, allowed)."""
    key = dict(
        dataset=dataset,
        split=split,
        feature_net=feature_net,
        resolution=resolution,
        count=int(count),
    )
    key.update(extra)
    return key


def key_path(key: dict[str, Any], directory: str = "") -> str:
    blob = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    readable = "-".join(
        str(key[k]) for k in ("dataset", "split", "feature_net", "resolution", "count")
    )
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", readable)[:120]
    return os.path.join(cache_dir(directory), f"{readable}-{digest}.npz")


def load(key: dict[str, Any], directory: str = "") -> dict[str, np.ndarray] | None:
    """The cached entry (features, mu, sigma, maybe logits) for ``key``, or None if absent."""
    path = key_path(key, directory)
    if not os.path.isfile(path):
        return None
    with np.load(path) as data:
        stored = json.loads(str(data["key"]))
        if stored != json.loads(json.dumps(key)):
            raise ValueError(
                f"cache file {path} holds key {stored}, not {key}: hash collision or a "
                "corrupted cache; delete the file to recompute."
            )
        return {k: data[k] for k in data.files if k != "key"}


def save(
    key: dict[str, Any],
    features: np.ndarray,
    logits: np.ndarray | None = None,
    directory: str = "",
) -> dict[str, np.ndarray]:
    """Computes mu/sigma (float64) of ``features`` and writes the entry atomically."""
    mu, sigma = metrics.feature_stats(features)
    entry = {"features": np.asarray(features, np.float32), "mu": mu, "sigma": sigma}
    if logits is not None:
        entry["logits"] = np.asarray(logits, np.float32)
    _write(key, entry, directory)
    return entry


def add(key: dict[str, Any], arrays: dict[str, np.ndarray], directory: str = "") -> None:
    """Adds derived arrays (e.g. the k-NN radii of the features) to an existing entry."""
    entry = load(key, directory)
    if entry is None:
        raise ValueError(f"no cache entry for {key} to add {sorted(arrays)} to.")
    _write(key, {**entry, **arrays}, directory)


def _write(key: dict[str, Any], entry: dict[str, np.ndarray], directory: str) -> None:
    path = key_path(key, directory)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(json.dumps(key, sort_keys=True)), **entry)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
