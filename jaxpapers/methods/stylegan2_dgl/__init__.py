"""DGL-GAN (Tian et al., arXiv 2112.06502) on a faithful Flax StyleGAN2: method contract.

One job trains the teacher StyleGAN2 (unless ``init_from`` provides it), then the narrow
student in two stages: stage 1 plain GAN training, stage 2 with the frozen teacher
discriminator's term ``alpha * softplus(-D_T(G_S(z)))`` in the student's G loss.
See README.md and ``steps.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import data
from jaxpapers.methods.stylegan2_dgl import steps
from jaxpapers.methods.stylegan2_dgl.evaluate import evaluate, gan_sampler
from jaxpapers.methods.stylegan2_dgl.steps import init_state, phase, train_step

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
    r, c = config.model.resolution, config.model.img_channels
    return {"image": jax.ShapeDtypeStruct((config.batch_size, r, r, c), jnp.uint8)}


def _fit_resolution(images: np.ndarray, pad_to: int, resolution: int, channels: int) -> np.ndarray:
    """Zero-pads (e.g. Fashion-MNIST 28 -> 32) and area-downsamples to the model resolution."""
    if images.ndim != 4:
        raise ValueError(f"Expected uint8 NHWC images, got shape {images.shape}.")
    if pad_to:
        h, w = images.shape[1:3]
        if h > pad_to or w > pad_to:
            raise ValueError(f"data.pad_to={pad_to} is smaller than the images ({h}x{w}).")
        ph, pw = pad_to - h, pad_to - w
        images = np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    n, h, w, ch = images.shape
    if h != w or h % resolution:
        raise ValueError(
            f"Images {h}x{w} cannot be brought to resolution {resolution}; set "
            "data.pad_to / data.image_size so the size is a multiple of it."
        )
    if ch != channels:
        raise ValueError(f"Images have {ch} channels but model.img_channels={channels}.")
    f = h // resolution
    if f > 1:
        x = images.reshape(n, resolution, f, resolution, f, ch).astype(np.float32).mean((2, 4))
        images = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return images


def make_source(config, split: str) -> dict[str, np.ndarray]:
    """Images only (unconditional GAN), padded/resized on the host once."""
    arrays = data.load(config.data, split)
    m = config.model
    return {
        "image": _fit_resolution(
            arrays["image"], int(config.data.pad_to), m.resolution, m.img_channels
        )
    }


def load_init(state: steps.DGLState, tree, config) -> steps.DGLState:
    """Teacher from ``init_from``: a checkpoint of this job (its ``teacher``) or a converted
    official pickle (``jaxpapers.convert.stylegan2`` writes {'teacher': {g, d, g_ema, w_avg}})."""
    if int(config.teacher.steps) != 0:
        raise ValueError(
            "init_from provides the teacher: set --config.teacher.steps=0 so the job "
            "goes straight to the student's stages."
        )
    if not isinstance(tree, dict) or "teacher" not in tree:
        raise ValueError(f"init_from tree has no 'teacher' entry (keys: {list(tree)[:10]}).")
    src = tree["teacher"]
    t = state.teacher
    new = {}
    for name in ("g", "d", "g_ema", "w_avg"):
        if name not in src:
            raise ValueError(f"init_from teacher lacks {name!r}.")
        want = getattr(t, name)
        got = jax.tree.map(jnp.asarray, src[name])
        if jax.tree.structure(got) != jax.tree.structure(want):
            raise ValueError(
                f"init_from teacher {name!r} tree does not match this config's "
                "teacher architecture (check model.resolution/fmap_base/fmap_max)."
            )
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            if a.shape != b.shape:
                raise ValueError(f"init_from teacher {name!r}: shape {a.shape} != {b.shape}.")
        new[name] = jax.tree.map(lambda a, b: a.astype(b.dtype), got, want)
    return state.replace(teacher=t.replace(**new))
