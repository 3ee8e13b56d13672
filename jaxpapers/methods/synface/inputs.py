"""SynFace inputs: the batch spec, the training rows (synthesis plan + real faces), held-out pairs.

Real faces: the generator training set, the DM real set and the held-out verification pairs.

CPU preset: the ORL faces (40 identities x 10 grey 92x112 images) resized to the generator's
square resolution.  The first `data.n_train_ids` identities (sorted folder names) train the
generator and form the real set of domain mixup (first `data.real_per_id` images each); the
other identities are never seen by the generator or the recogniser and give the verification
pairs (LFW protocol on unseen people).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.data import builders, faces
from jaxpapers.data.faces import load_identity_folder
from jaxpapers.evals import face_verification as fv
from jaxpapers.methods.synface import synthesis


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch: synthesis-plan rows + one real face (and its label) per row."""
    b, r, c = config.batch_size, config.gen.resolution, config.gen.img_channels
    return {
        "syn_id_a": jax.ShapeDtypeStruct((b,), jnp.int32),
        "syn_id_b": jax.ShapeDtypeStruct((b,), jnp.int32),
        "syn_phi": jax.ShapeDtypeStruct((b,), jnp.float32),
        "syn_seed": jax.ShapeDtypeStruct((b,), jnp.int32),
        "real_image": jax.ShapeDtypeStruct((b, r, r, c), jnp.uint8),
        "real_label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }


def _all_faces(config) -> tuple[np.ndarray, np.ndarray]:
    path = faces.resolve_dir(config.data.path)  # data.path, $JAXPAPERS_DATA_DIR or Olivetti
    r = int(config.gen.resolution)
    images, labels = load_identity_folder(path, (r, r))  # uint8 RGB (grey replicated)
    c = int(config.gen.img_channels)
    if c not in (1, 3):
        raise ValueError(f"gen.img_channels must be 1 or 3, got {c}.")
    return (images[..., :1] if c == 1 else images), labels


def real_split(config, split: str) -> dict[str, np.ndarray]:
    """'train': first n_train_ids identities (<= real_per_id images each); 'test': the rest."""
    images, labels = _all_faces(config)
    n_ids = int(labels.max()) + 1
    n_train = int(config.data.n_train_ids)
    if not 1 < n_train < n_ids:
        raise ValueError(f"data.n_train_ids={n_train} must be in (1, {n_ids}).")
    if split == "test":
        keep = labels >= n_train
        return {"image": images[keep], "label": labels[keep] - n_train}
    keep = labels < n_train
    images, labels = images[keep], labels[keep]
    per = int(config.data.real_per_id)
    if per:
        rank = np.zeros(len(labels), np.int64)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            rank[idx] = np.arange(len(idx))
        images, labels = images[rank < per], labels[rank < per]
    return {"image": images, "label": labels.astype(np.int32)}


def pair_rows(
    plan: dict[str, np.ndarray], real: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """One training row = one synthetic plan row + one real image (official: the real loader is
    replicated to the synthetic length).  Rows = max of the two lengths; real order shuffled."""
    n_syn, n_real = len(plan["syn_seed"]), len(real["label"])
    n = max(n_syn, n_real)
    reps = -(-n // n_real)
    ridx = np.random.RandomState(seed).permutation(np.tile(np.arange(n_real), reps))[:n]
    sidx = np.arange(n) % n_syn
    out = {k: v[sidx] for k, v in plan.items()}
    out["real_image"] = real["image"][ridx]
    out["real_label"] = real["label"][ridx].astype(np.int32)
    return out


def make_source(config, split: str) -> dict[str, np.ndarray]:
    """The training rows: synthesis plan (IM on/off) paired with the real set."""
    if split != "train":
        raise ValueError(f"synface trains on split 'train' only, got {split!r}.")
    s = config.synth
    plan = synthesis.synthesis_plan(
        int(s.num_ids), int(s.per_id), int(s.seed), bool(s.mixup), float(s.grid_step)
    )
    real = real_split(config, "train")
    return pair_rows(plan, real, int(config.seed))


def eval_pairs(config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (M,R,R,C), labels, pairs (P,3)) for verification.

    With eval.pairs_file: LFW-format pairs over eval.lfw_dir (labels -1, resized to the generator
    resolution); otherwise balanced pairs over the held-out real identities of data.path.
    """
    e = config.eval
    if e.pairs_file:
        r, c = int(config.gen.resolution), int(config.gen.img_channels)
        pairs = fv.read_pairs(e.pairs_file, e.pairs_ext)
        paths = sorted({p for a, b, _ in pairs for p in (a, b)})
        index = {p: i for i, p in enumerate(paths)}
        images = np.stack(
            [builders.read_image(os.path.join(e.lfw_dir, p), (r, r), c) for p in paths]
        )
        arr = np.asarray([(index[a], index[b], int(same)) for a, b, same in pairs], np.int64)
        return images, -np.ones(len(paths), np.int32), arr
    src = real_split(config, "test")
    pairs = fv.make_pairs(src["label"], int(config.eval.num_pairs), int(config.eval.pairs_seed))
    return src["image"], src["label"], pairs
