"""FROM's batches and host-side data: uint8 RGB faces + identity labels, and the input scaling.

The identity folders, their train / held-out split and the verification pairs are read by
``faces.py``; large training sets are random-access sources (``jaxpapers.data.face_recognition``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers import data
from jaxpapers.data import face_recognition, faces
from jaxpapers.methods.from_occlusion.faces import _folder_split


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch: uint8 RGB faces (N, H, W, 3) and identity labels (N,)."""
    h, w = config.data.image_size
    return {
        "image": jax.ShapeDtypeStruct((config.batch_size, h, w, 3), jnp.uint8),
        "label": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32),
    }


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


def normalize(images: jax.Array) -> jax.Array:
    """uint8 -> [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return images.astype(jnp.float32) / 127.5 - 1.0
