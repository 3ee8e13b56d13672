"""Command line: score a directory / .npz / .npy of generated images against a data set.

    python -m jaxpapers.evals.gan.score --images fakes.npz --workdir out \
        [--feature_net fmnist|inception] [--real_dataset fashion_mnist] [--real_split test] \
        [--inception_weights pt_inception-2015-12-05-6726825d.pth] [--num_samples 10000]

Images: uint8 (N, H, W[, C]) or float in [-1, 1]; ``.npz`` uses the array named ``--key``
(default: 'images', else the only array); a directory is read with PIL (png/jpg/jpeg/bmp,
sorted by name). Prints and writes ``gan_metrics_<net>.json`` into ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image

from jaxpapers.evals.gan import evaluator

_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def read_images(path: str, key: str = "images") -> np.ndarray:
    """An (N, H, W, C) array from a .npz/.npy file or a directory of image files."""
    if os.path.isdir(path):
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


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = evaluator.default_eval_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--key", default="images")
    parser.add_argument("--workdir", required=True)
    for name in (
        "feature_net",
        "real_dataset",
        "real_split",
        "real_data_path",
        "inception_weights",
        "fmnist_weights",
        "stats_dir",
    ):
        parser.add_argument(f"--{name}", default=cfg[name])
    for name in ("num_samples", "batch_size", "real_num_samples", "seed"):
        parser.add_argument(f"--{name}", type=int, default=cfg[name])
    args = parser.parse_args(argv)
    for name in vars(args):
        if name in cfg:
            cfg[name] = getattr(args, name)
    images = read_images(args.images, args.key)
    if args.num_samples and len(images) > args.num_samples:
        images = images[: args.num_samples]
    results = evaluator.evaluate_images(images, cfg, args.workdir)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
