"""Command line: score generated images, or a GAN method's checkpoint, against a data set.

    python -m jaxpapers.evals.gan_metrics --images fakes.npz --workdir out \
        [--feature_net fmnist|inception] [--real_dataset fashion_mnist] [--real_split test] \
        [--inception_weights pt_inception-2015-12-05-6726825d.pth] [--num_samples 10000]
    python -m jaxpapers.evals.gan_metrics --checkpoint RUN_DIR --workdir out \
        --config configs/stylegan2_dgl.py[:preset,key=value] [--role student|teacher] \
        [--step N] [--num_samples 10000] [--feature_net ...]

With ``--checkpoint`` the run's state is restored (its latest step, or ``--step``) into the
config's state structure, and the method's ``gan_sampler(state, config, role)`` generates the
fakes; the real data set is the config's (``data.name`` test split) unless given.

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


def score_checkpoint(args, eval_overrides: dict) -> dict[str, float]:
    """Restores a GAN method's checkpoint and scores its ``role`` generator."""
    import jax

    from jaxpapers import checkpoint, config_lib, methods

    if not args.config:
        raise ValueError("--checkpoint needs --config=configs/<method>.py[:preset,...] (the run's)")
    path, _, arg = args.config.partition(":")
    config = config_lib.load_config_file(path, arg or None)
    method = methods.get(config.method)
    if not hasattr(method, "gan_sampler"):
        raise ValueError(f"Method {config.method!r} has no gan_sampler; it is not a GAN method.")
    state = method.init_state(jax.random.PRNGKey(config.seed), config)
    step = None if args.step < 0 else args.step
    state = checkpoint.restore_dir(args.checkpoint, state, step)
    print(f"Restored {args.checkpoint} step {int(jax.device_get(state.step))}", flush=True)
    sample_fn = method.gan_sampler(state, config, args.role)
    with config.unlocked():
        for k, v in eval_overrides.items():  # e.g. --num_samples, --feature_net
            if k != "seed":  # The eval config's seed is the method's grid seed.
                config.eval[k] = v
        if "real_dataset" in eval_overrides:
            config.data.name = eval_overrides["real_dataset"]
        if "real_data_path" in eval_overrides:
            config.data.path = eval_overrides["real_data_path"]
    return evaluator.evaluate_method_sampler(sample_fn, config, args.workdir, args.role)


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = evaluator.default_eval_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="directory of image files, .npz or .npy")
    src.add_argument("--checkpoint", help="workdir (or checkpoints dir) of a GAN method's run")
    parser.add_argument("--config", default="", help="configs/<method>.py[:preset,k=v]")
    parser.add_argument("--role", default="student", help="teacher or student generator")
    parser.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: latest)")
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
        parser.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"default {cfg[name]!r}")
    for name in ("num_samples", "batch_size", "real_num_samples", "seed"):
        parser.add_argument(f"--{name}", type=int, default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in cfg}  # Only the options on the line.
    if args.checkpoint:
        results = score_checkpoint(args, given)
        print(json.dumps(results, indent=2))
        return results
    cfg.update(given)
    images = read_images(args.images, args.key)
    if cfg.num_samples and len(images) > cfg.num_samples:
        images = images[: cfg.num_samples]
    results = evaluator.evaluate_images(images, cfg, args.workdir)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
