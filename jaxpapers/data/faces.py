"""The AT&T/ORL faces (40 people x 10 grey images) and any other root/<identity>/<image> folder.

One face-identity source for the face methods (from_occlusion, synface, stra's faces preset,
unifacegan's stills and identity net, faceanime's identity net and stills).  `resolve_dir` finds
an ORL-layout folder (root/s1/1.pgm ... root/s40/10.pgm) in this order:

  1. the config's path (``data.path``, ``identity.path``, ...) when it is set: any folder of
     root/<identity>/<image>; a set path that does not exist is an error (no silent fallback);
  2. ``$JAXPAPERS_DATA_DIR/<name>`` for the first existing name in `ROOT_NAMES` (``att_faces`` is
     the folder name of the AT&T archive);
  3. scikit-learn's Olivetti faces (``sklearn.datasets.fetch_olivetti_faces``): the same 400
     faces, cropped and downscaled to 64x64 by their distributor.  Downloaded once when online,
     cached in scikit-learn's data home (``$SCIKIT_LEARN_DATA``, default ~/scikit_learn_data) and
     written there once as an ORL-layout folder of 64x64 PGMs (subject k -> s<k+1>), so every
     reader of the ORL layout works unchanged.  Numbers measured on the 92x112 originals move
     slightly on these 64x64 crops.

With none of them (e.g. offline on a fresh machine) it raises `FacesNotFound`: one line naming
the three ways and where it looked.  The face methods resolve the folder before they read or
track any other data (make_source; faceanime's identity net in init_state).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket

import numpy as np
from PIL import Image

from jaxpapers.data import builders

ENV_VAR = "JAXPAPERS_DATA_DIR"
ROOT_NAMES = ("att_faces", "orl_faces", "att_orl_faces", os.path.join("faces", "att_orl_faces"))
OLIVETTI_FOLDER = "jaxpapers_olivetti_orl"  # the ORL-layout copy inside scikit-learn's data home
DOWNLOAD_TIMEOUT_S = 30.0  # a blackholed network fails within this instead of hanging


class FacesNotFound(FileNotFoundError):
    """No face folder given, none under $JAXPAPERS_DATA_DIR, and no Olivetti faces obtainable."""


def _how_to(key: str) -> str:
    return (
        f"set {key} to an ORL-layout folder (root/s1/1.pgm, or any root/<identity>/<image>), "
        f"or {ENV_VAR} to a data root holding {ROOT_NAMES[0]}/, or go online once so "
        "scikit-learn can download the Olivetti faces"
    )


def resolve_dir(path: str = "", *, key: str = "data.path", download: bool = True) -> str:
    """The face folder to read (module docstring for the order); raises `FacesNotFound`."""
    if path:
        if os.path.isdir(path):
            return path
        raise FacesNotFound(f"Face folder {key}={path!r} does not exist: {_how_to(key)}.")
    looked = []
    root = os.environ.get(ENV_VAR, "")
    if root:
        for name in ROOT_NAMES:
            d = os.path.join(root, name)
            if os.path.isdir(d):
                return d
            looked.append(d)
    else:
        looked.append(f"${ENV_VAR} (unset)")
    try:
        return olivetti_dir(download=download)
    except OSError as e:
        looked.append(f"Olivetti in {_data_home()} ({type(e).__name__}: {e})")
    raise FacesNotFound(f"No face data: {_how_to(key)}. Looked in: {'; '.join(looked)}.")


def _data_home() -> str:
    from sklearn.datasets import get_data_home

    return get_data_home()


def olivetti_dir(*, download: bool = True) -> str:
    """The Olivetti faces as an ORL-layout folder in scikit-learn's data home (written once)."""
    target = os.path.join(_data_home(), OLIVETTI_FOLDER)
    if os.path.isfile(os.path.join(target, "s40", "10.pgm")):
        return target
    from sklearn import datasets

    try:  # cached: no network at all
        bunch = datasets.fetch_olivetti_faces(download_if_missing=False)
    except OSError:
        if not download:
            raise
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            bunch = datasets.fetch_olivetti_faces(download_if_missing=True, n_retries=1, delay=0.1)
        finally:
            socket.setdefaulttimeout(previous)
    images = np.asarray(bunch.images)
    target_ids = np.asarray(bunch.target)
    if images.shape != (400, 64, 64) or target_ids.shape != (400,):
        raise ValueError(f"Unexpected Olivetti faces shape {images.shape} / {target_ids.shape}.")
    pixels = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    # Written to a private folder then renamed: concurrent first runs never see half a folder.
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    counts: dict[int, int] = {}
    for img, t in zip(pixels, target_ids, strict=True):
        k = counts[int(t)] = counts.get(int(t), 0) + 1
        d = os.path.join(tmp, f"s{int(t) + 1}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img).save(os.path.join(d, f"{k}.pgm"))
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished first (or a stale partial copy is in the way)
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isfile(os.path.join(target, "s40", "10.pgm")):
            raise
    return target


@functools.lru_cache(maxsize=4)
def load_identity_folder(path: str, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All images of root/<identity>/<img> as uint8 (N, H, W, 3) RGB (grey replicated) + labels.

    Labels follow the sorted identity folder names (as `builders.list_image_folder`).
    """
    _, files = builders.list_image_folder(path)
    images = np.stack([builders.read_image(p, image_size, 3) for p, _ in files])
    labels = np.asarray([lab for _, lab in files], np.int32)
    return images, labels


def with_path(data_config, path: str):
    """A copy of a data config whose ``path`` is ``path`` (for readers that take the config)."""
    out = data_config.copy_and_resolve_references()
    with out.unlocked():
        out.path = path
    return out
