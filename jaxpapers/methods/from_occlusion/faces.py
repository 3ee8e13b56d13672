"""Face data for FROM: identity folders split into training and held-out identities, LFW pairs.

CPU preset: the ORL faces (found by `jaxpapers.data.faces`; 40 identities x 10 grey images,
92x112) resized to config.data.image_size; the first `n_train_ids` identities (sorted folder names)
train the classifier, the rest form the verification pairs, so verification is on unseen people
as in LFW.  Paper preset: data.name='casia_webface' (or 'ms1m': folder or insightface
train.rec) read lazily by `jaxpapers.data.face_recognition`, and the LFW pairs split from the
standard pairs.txt (eval.pairs_file over eval.lfw_dir), validated before training starts.
"""

from __future__ import annotations

import numpy as np

from jaxpapers.data import face_recognition, faces
from jaxpapers.data.faces import load_identity_folder
from jaxpapers.evals import face_verification as fv


def _folder_split(config, split: str) -> dict[str, np.ndarray]:
    root = faces.resolve_dir(config.data.path)
    images, labels = load_identity_folder(root, tuple(config.data.image_size))
    n_ids = int(labels.max()) + 1
    n_train = int(config.data.n_train_ids)
    if not 0 < n_train < n_ids:
        raise ValueError(f"data.n_train_ids={n_train} must be in (0, {n_ids}) for {root}.")
    keep = labels < n_train if split == "train" else labels >= n_train
    return {"image": images[keep], "label": labels[keep] - (0 if split == "train" else n_train)}


def eval_pairs(config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (M,H,W,3) uint8, labels (M,), pairs (P, 3) = (i, j, same)) for verification.

    With eval.pairs_file set: LFW-format pairs over eval.lfw_dir (labels = -1); otherwise balanced
    deterministic pairs over the held-out identities of data.path.
    """
    e = config.eval
    size = tuple(config.data.image_size)
    if e.pairs_file:
        lfw = face_recognition.load_lfw_pairs(e.lfw_dir, e.pairs_file, size, 3, e.pairs_ext)
        return lfw.images, -np.ones(len(lfw.paths), np.int32), lfw.pairs
    src = _folder_split(config, "test")
    pairs = fv.make_pairs(src["label"], int(e.num_pairs), int(e.pairs_seed))
    return src["image"], src["label"], pairs
