"""Scoring helpers behind ``python -m jaxpapers.tools.gan_metrics``: images on disk, samplers.

``score_images`` scores a directory / ``.npz`` / ``.npy`` of images; ``score_sampler`` scores a
GAN method's ``gan_sampler`` with its config, overridden by evaluator options given on the
command line (the tool restores the run with ``jaxpapers.runs.load_run``).

Images: uint8 (N, H, W[, C]) or float in [-1, 1]; ``.npz`` uses the array named ``key``
(default: 'images', else the only array); a directory is read with PIL (png/jpg/jpeg/bmp,
sorted by name).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from jaxpapers.evals.gan import evaluator

_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def read_images(path: str, key: str = "images") -> np.ndarray:
    """An (N, H, W, C) array from a .npz/.npy file or a directory of image files."""
    if os.path.isdir(path):
        from PIL import Image

        files = sorted(f for f in os.listdir(path) if f.lower().endswith(_EXTS))
        if not files:
            raise ValueError(f"no {_EXTS} images in directory {path}.")
        images = np.stack([np.asarray(Image.open(os.path.join(path, f))) for f in files])
    elif path.endswith(".npz"):
        with np.load(path) as d:
            if key in d.files:
                images = d[key]
            elif len(d.files) == 1:
                images = d[d.files[0]]
            else:
                raise ValueError(f"{path} has arrays {d.files}; choose one with --key.")
    elif path.endswith(".npy"):
        images = np.load(path)
    else:
        raise ValueError(f"{path}: expected a directory, .npz or .npy file.")
    if images.ndim == 3:
        images = images[..., None]
    return images


def score_images(path: str, workdir: str, key: str = "images", **options) -> dict[str, float]:
    """Scores the images at ``path``; ``options`` override ``evaluator.default_eval_config()``."""
    cfg = evaluator.default_eval_config()
    cfg.update(options)
    images = read_images(path, key)
    if cfg.num_samples and len(images) > cfg.num_samples:
        images = images[: cfg.num_samples]
    return evaluator.evaluate_images(images, cfg, workdir)


def score_sampler(
    sample_fn: Callable, config, workdir: str, role: str, **options
) -> dict[str, float]:
    """Scores a GAN method's sampler with its ``config.eval``, ``options`` overriding it."""
    with config.unlocked():
        for k, v in options.items():  # e.g. --num_samples, --feature_net
            if k != "seed":  # The eval config's seed is the method's grid seed.
                config.eval[k] = v
        if "real_dataset" in options:
            config.data.name = options["real_dataset"]
        if "real_data_path" in options:
            config.data.path = options["real_data_path"]
    return evaluator.evaluate_method_sampler(sample_fn, config, workdir, role)
