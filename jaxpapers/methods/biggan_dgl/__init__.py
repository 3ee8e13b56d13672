"""DGL-GAN (Tian et al., arXiv 2112.06502) on a faithful Flax BigGAN: method contract.

One job trains the class-conditional teacher BigGAN (unless ``init_from`` provides it), then the
narrow student in two stages: stage 1 plain BigGAN training, stage 2 with the frozen teacher
discriminator's hinge term ``-lam * D_T(G_S(z, y), y)`` in the student's G loss.
See README.md and ``steps.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import data
from jaxpapers.lib.dgl_schedule import phase
from jaxpapers.methods.biggan_dgl import steps
from jaxpapers.methods.biggan_dgl.evaluation import evaluate, gan_sampler
from jaxpapers.methods.biggan_dgl.steps import init_state, train_step

kind = "train"
__all__ = [
    "kind",
    "input_spec",
    "init_state",
    "phase",
    "train_step",
    "make_source",
    "evaluate",
    "gan_sampler",
    "load_init",
]


def input_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    r, c, n = config.model.resolution, config.model.img_channels, config.batch_size
    return {
        "image": jax.ShapeDtypeStruct((n, r, r, c), jnp.uint8),
        "label": jax.ShapeDtypeStruct((n,), jnp.int32),
    }


def pad_images(images: np.ndarray, pad_to: int) -> np.ndarray:
    """Zero-pads centred (Fashion-MNIST 28 -> 32, black background as in the data)."""
    if not pad_to:
        return images
    h, w = images.shape[1:3]
    if h > pad_to or w > pad_to:
        raise ValueError(f"data.pad_to={pad_to} is smaller than the images ({h}x{w}).")
    ph, pw = pad_to - h, pad_to - w
    return np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def make_source(config, split: str) -> dict[str, np.ndarray]:
    """Images and class labels (class-conditional GAN), padded on the host once."""
    arrays = data.load(config.data, split)
    if "label" not in arrays:
        raise ValueError(
            f"Dataset {config.data.name!r} has no 'label' array; BigGAN is "
            "class-conditional and needs labels."
        )
    images = pad_images(arrays["image"], int(config.data.pad_to))
    m = config.model
    if images.shape[1:] != (m.resolution, m.resolution, m.img_channels):
        raise ValueError(
            f"Images {images.shape[1:]} do not match the model "
            f"({m.resolution}, {m.resolution}, {m.img_channels}); set data.pad_to "
            "or model.resolution / model.img_channels."
        )
    labels = arrays["label"].astype(np.int32)
    if labels.max() >= m.num_classes:
        raise ValueError(f"Label {labels.max()} >= model.num_classes={m.num_classes}.")
    limit = int(config.data.train_limit)
    if limit and split == "train":
        images, labels = images[:limit], labels[:limit]
    return {"image": images, "label": labels}


def load_init(state: steps.DGLState, tree, config) -> steps.DGLState:
    """Teacher from ``init_from``: a checkpoint of this job (its ``teacher`` sub-state)."""
    if int(config.teacher.steps) != 0:
        raise ValueError("init_from provides the teacher: set --config.teacher.steps=0.")
    if not isinstance(tree, dict) or "teacher" not in tree:
        raise ValueError(f"init_from tree has no 'teacher' entry (keys: {list(tree)[:10]}).")
    src, t = tree["teacher"], state.teacher
    new = {}
    for name in ("g", "g_vars", "d", "d_vars", "g_ema", "g_ema_vars"):
        if name not in src:
            raise ValueError(f"init_from teacher lacks {name!r}.")
        ref = getattr(t, name)
        if jax.tree.structure(ref) != jax.tree.structure(src[name]):
            raise ValueError(
                f"init_from teacher {name!r} does not match this config's teacher "
                "architecture (model.* must equal the teacher run's)."
            )
        new[name] = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), ref, src[name])
    return state.replace(teacher=t.replace(**new))
