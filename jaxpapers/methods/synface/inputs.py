"""SynFace inputs: the batch spec, the training rows (synthesis plan + real faces), held-out pairs.

Real faces: the generator training set, the DM real set and the held-out verification pairs.

CPU preset: the ORL faces (40 identities x 10 grey 92x112 images) resized to the generator's
square resolution.  The first `data.n_train_ids` identities (sorted folder names) train the
generator and form the real set of domain mixup (first `data.real_per_id` images each); the
other identities are never seen by the generator or the recogniser and give the verification
pairs (LFW protocol on unseen people).

Paper preset (``casia_webface``): the real faces are CASIA-WebFace, an identity folder
(root/<identity>/<image>, ``data.name='image_folder'`` or ``'casia_webface'``) or insightface's
``train.rec``/``train.idx`` (``data.name='casia_webface'``, ``data.format`` 'auto' | 'folder' |
'rec'), selected the same way from the file listing / record headers, and with
``data.pipeline='stream'`` never held in memory: `make_source` returns a `stream.JoinedSource`
whose plan rows and real labels are arrays and whose ``real_image`` is decoded in grain's workers
(``data.max_pixels`` checked before decoding, paths confined to the folder), giving the batches
the in-memory rows give for the same seed and step.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import data
from jaxpapers.data import builders, decode, face_recognition, faces, stream
from jaxpapers.data.faces import load_identity_folder
from jaxpapers.evals import face_verification as fv
from jaxpapers.methods.synface import synthesis

MAX_HELD_OUT = 20_000  # held-out images over which eval_pairs may draw pairs (quadratic)


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


def split_positions(labels: np.ndarray, config, split: str) -> np.ndarray:
    """Positions of ``split`` among all faces: 'train' = the first n_train_ids identities
    (<= real_per_id images each, in listing order), 'test' = the other identities."""
    n_ids = int(labels.max()) + 1
    n_train = int(config.data.n_train_ids)
    if not 1 < n_train < n_ids:
        raise ValueError(f"data.n_train_ids={n_train} must be in (1, {n_ids}).")
    if split == "test":
        return np.flatnonzero(labels >= n_train)
    keep = np.flatnonzero(labels < n_train)
    per = int(config.data.real_per_id)
    if per:
        rank = np.zeros(len(keep), np.int64)
        for c in np.unique(labels[keep]):
            idx = np.flatnonzero(labels[keep] == c)
            rank[idx] = np.arange(len(idx))
        keep = keep[rank < per]
    return keep


class _FirstChannels:
    """The first ``c`` channels of a source's 'image' (grey = channel 0 of the RGB decode, as
    `_all_faces` takes it)."""

    def __init__(self, inner, c: int):
        self.inner, self.c = inner, int(c)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitems__(self, indices) -> list[dict]:
        return [
            {**r, "image": np.ascontiguousarray(r["image"][..., : self.c])}
            for r in self.inner.__getitems__(indices)
        ]


def face_source(config):
    """(every face of the real data as a lazily decoded source, their identity labels int64).

    'image_folder' (data.path, $JAXPAPERS_DATA_DIR or Olivetti) and a 'casia_webface' / 'ms1m'
    folder: `stream.FileImageSource` over the sorted listing; a 'casia_webface' / 'ms1m' RecordIO
    set: `face_recognition.RecordIOSource`, labels from the record headers.
    """
    d = config.data
    r, c = int(config.gen.resolution), int(config.gen.img_channels)
    if c not in (1, 3):
        raise ValueError(f"gen.img_channels must be 1 or 3, got {c}.")
    max_pixels = int(d.get("max_pixels", decode.MAX_PIXELS))
    if d.name in face_recognition.TRAIN_NAMES:
        root, fmt = face_recognition.train_root_and_format(d)
        if fmt not in ("folder", "rec"):
            raise ValueError(f"data.format must be 'auto', 'folder' or 'rec', got {fmt!r}.")
    elif d.name == "image_folder":
        root, fmt = faces.resolve_dir(d.path), "folder"  # data.path, $JAXPAPERS_DATA_DIR, Olivetti
    else:
        raise ValueError(
            f"synface reads real faces from data.name 'image_folder' or "
            f"{' / '.join(face_recognition.TRAIN_NAMES)}, got {d.name!r}."
        )
    if fmt == "rec":
        src = face_recognition.RecordIOSource(root, (r, r), 3, max_pixels)
        labels = src.labels()
    else:
        _, files, labels = stream.list_images(root, "classes")
        src = stream.FileImageSource(
            root, files, labels, image_size=(r, r), channels=3, max_pixels=max_pixels
        )
        labels = labels.astype(np.int64)
    return (src if c == 3 else _FirstChannels(src, c)), labels


def _lazy(config) -> bool:
    """Real faces read through `face_source` (streamed, or large sets decoded selectively)."""
    return stream.streaming(config.data) or config.data.name in face_recognition.TRAIN_NAMES


def real_split(config, split: str) -> dict[str, np.ndarray]:
    """'train': first n_train_ids identities (<= real_per_id images each); 'test': the rest.

    Streamed / CASIA-scale data: only the images of the split are decoded (all of them: for the
    held-out verification pairs `eval_pairs` decodes just the paired images).
    """
    if _lazy(config):
        src, labels = face_source(config)
        keep = split_positions(labels, config, split)
        images = data.read_source(src, keep)["image"]
        labels = labels[keep].astype(np.int32)
    else:
        images, labels = _all_faces(config)
        keep = split_positions(labels, config, split)
        images, labels = images[keep], labels[keep]
    if split == "test":
        return {"image": images, "label": labels - int(config.data.n_train_ids)}
    return {"image": images, "label": labels.astype(np.int32)}


def pair_index(n_syn: int, n_real: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(plan row, real image) of every training row: rows = max of the two lengths, the real
    set replicated to that length and shuffled (official: the real loader is replicated to the
    synthetic length)."""
    n = max(n_syn, n_real)
    reps = -(-n // n_real)
    ridx = np.random.RandomState(seed).permutation(np.tile(np.arange(n_real), reps))[:n]
    return np.arange(n) % n_syn, ridx


def pair_rows(
    plan: dict[str, np.ndarray], real: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """One training row = one synthetic plan row + one real image (official: the real loader is
    replicated to the synthetic length).  Rows = max of the two lengths; real order shuffled."""
    sidx, ridx = pair_index(len(plan["syn_seed"]), len(real["label"]), seed)
    out = {k: v[sidx] for k, v in plan.items()}
    out["real_image"] = real["image"][ridx]
    out["real_label"] = real["label"][ridx].astype(np.int32)
    return out


def make_source(config, split: str):
    """The training rows: synthesis plan (IM on/off) paired with the real set; with
    data.pipeline='stream' the same rows as a `stream.JoinedSource` whose real images are
    decoded in grain's workers."""
    if split != "train":
        raise ValueError(f"synface trains on split 'train' only, got {split!r}.")
    s = config.synth
    plan = synthesis.synthesis_plan(
        int(s.num_ids), int(s.per_id), int(s.seed), bool(s.mixup), float(s.grid_step)
    )
    if not stream.streaming(config.data):
        return pair_rows(plan, real_split(config, "train"), int(config.seed))
    if int(config.data.get("pad_to", 0)):
        raise ValueError("data.pad_to is for in-memory data; the stream resizes, set it to 0.")
    src, labels = face_source(config)
    keep = split_positions(labels, config, "train")
    sidx, ridx = pair_index(len(plan["syn_seed"]), len(keep), int(config.seed))
    rows = {k: v[sidx] for k, v in plan.items()}
    rows["real_label"] = labels[keep][ridx].astype(np.int32)
    return stream.JoinedSource(rows, {"real_image": (src, keep[ridx], "image")})


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
    if not _lazy(config):
        src = real_split(config, "test")
        pairs = fv.make_pairs(src["label"], int(config.eval.num_pairs), int(config.eval.pairs_seed))
        return src["image"], src["label"], pairs
    # Held-out identities of a large set: the pairs are drawn from the labels, then only the
    # paired images are decoded (rank-1 then runs over those images).
    faces_src, labels = face_source(config)
    keep = split_positions(labels, config, "test")
    if len(keep) > MAX_HELD_OUT:  # make_pairs enumerates every pair of held-out images
        raise ValueError(
            f"{len(keep)} held-out images are too many to draw balanced pairs from; set "
            "eval.pairs_file and eval.lfw_dir (LFW) for a CASIA-scale data set."
        )
    held = (labels[keep] - int(config.data.n_train_ids)).astype(np.int32)
    pairs = fv.make_pairs(held, int(config.eval.num_pairs), int(config.eval.pairs_seed))
    used = np.unique(pairs[:, :2])
    images = data.read_source(faces_src, keep[used])["image"]
    remap = np.searchsorted(used, pairs[:, :2])
    return images, held[used], np.concatenate([remap, pairs[:, 2:]], 1).astype(pairs.dtype)
