"""Face data for FROM: identity folders split into training and held-out identities, LFW pairs.

CPU preset: the ORL faces (`/work/shared/data/faces/att_orl_faces`, 40 identities x 10 grey images,
92x112) resized to config.data.image_size; the first `n_train_ids` identities (sorted folder names)
train the classifier, the rest form the verification pairs, so verification is on unseen people
as in LFW.  Paper preset: data.name='casia_webface' (or 'ms1m': folder or insightface
train.rec) read lazily by `jaxpapers.data.face_recognition`, and the LFW pairs split from the
standard pairs.txt (eval.pairs_file over eval.lfw_dir), validated before training starts.
"""

from __future__ import annotations

import numpy as np

from jaxpapers import data
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


def make_source(config, split: str):
    """Training arrays (held in memory) or, with data.in_memory=False, a random-access source.

    data.name 'casia_webface' / 'ms1m': a lazily decoded identity folder or insightface RecordIO
    set; with eval.pairs_file set, the LFW pairs file and its images are checked here too, so a
    wrong path fails at start-up rather than at the first evaluation.
    """
    if config.data.name in face_recognition.TRAIN_NAMES:
        if config.eval.pairs_file:
            face_recognition.check_lfw_pairs(
                config.eval.lfw_dir, config.eval.pairs_file, config.eval.pairs_ext
            )
        return face_recognition.open_train_source(config.data, int(config.model.num_classes))
    if config.data.name != "image_folder":
        raise ValueError(
            f"from_occlusion reads identity folders (data.name='image_folder', "
            f"{' or '.join(repr(n) for n in face_recognition.TRAIN_NAMES)}), got "
            f"{config.data.name!r}."
        )
    root = faces.resolve_dir(config.data.path)  # data.path, $JAXPAPERS_DATA_DIR or Olivetti
    if not config.data.in_memory:
        return data.open_source(faces.with_path(config.data, root), split)
    src = _folder_split(config, split)
    if split == "train" and int(src["label"].max()) + 1 != config.model.num_classes:
        raise ValueError(
            f"model.num_classes={config.model.num_classes} but the training split has "
            f"{int(src['label'].max()) + 1} identities."
        )
    return src


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
