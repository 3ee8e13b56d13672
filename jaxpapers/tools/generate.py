"""Images from a trained or converted GAN for chosen seeds, like the official ``generate.py``.

    python -m jaxpapers.tools.generate --workdir=RUN --seeds=0-63 --out=grid.png
    python -m jaxpapers.tools.generate --workdir=TEACHER_DIR --role=teacher \\
        --config=configs/stylegan2_dgl.py:ffhq1024 --seeds=0,5,9 --trunc=0.7 --out=images/

``--workdir`` is a ``stylegan2_dgl`` / ``biggan_dgl`` run (its ``config.json`` is used) or a
converted checkpoint directory (give ``--config``; for a converted stylegan2-ada-pytorch pickle the
settings ``tools.convert_stylegan2`` recorded in its ``arch.json`` are the default). Seed ``s``
draws its latent as the official scripts do, ``z = RandomState(s).randn(z_dim)`` (BigGAN with
``--trunc > 0``: values resampled until inside [-trunc, trunc]; the class is ``--class_idx`` or
drawn from ``RandomState([s, 1])``). Images come from the EMA generator of ``--role`` (BigGAN: the
raw one when the run's ``eval.use_ema`` is false). ``--trunc``: StyleGAN2 psi (1 = none; default
1), BigGAN truncation threshold (0 = none; default the run's ``eval.truncation``). ``--noise_mode``
(StyleGAN2): ``const`` adds fixed per-layer noise buffers, the converted official ones when the
checkpoint holds ``teacher/noise_const`` and otherwise fixed N(0, 1) draws (``--noise_seed``);
``random`` draws fresh noise per image from ``--noise_seed``; ``none`` adds no noise. ``--out``: a
``.png`` path writes one grid, anything else a directory of ``seed0000.png`` files.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

from jaxpapers.tools import cli

FAMILIES = ("stylegan2_dgl", "biggan_dgl")


def define_flags() -> None:
    """Flags are defined only when run as a program: importing several tools (tests) into one
    process would otherwise define ``--config`` / ``--out`` twice."""
    flags.DEFINE_string("workdir", None, "run or converted checkpoint directory", required=True)
    flags.DEFINE_string("config", "", "config file[:preset,k=v]; default WORKDIR/config.json")
    flags.DEFINE_string("seeds", "0-63", "seeds: ranges and lists, e.g. 0-63 or 1,5,9-12")
    flags.DEFINE_float("trunc", None, "StyleGAN2 psi / BigGAN threshold (see the module doc)")
    flags.DEFINE_enum("role", "student", ["teacher", "student"], "which generator of the job")
    flags.DEFINE_enum("noise_mode", "const", ["const", "random", "none"], "StyleGAN2 noise")
    flags.DEFINE_integer("noise_seed", 0, "seed of the const buffers / the random noise")
    flags.DEFINE_integer("class_idx", -1, "BigGAN class (-1: drawn per seed)")
    flags.DEFINE_integer("step", -1, "checkpoint step (-1: latest)")
    flags.DEFINE_integer("cols", 0, "grid columns (0: about square)")
    flags.DEFINE_string("out", None, "grid .png path or output directory", required=True)


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (inclusive ranges, as the official ``num_range``)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"Bad --seeds entry {part!r}; use e.g. 0-63 or 1,5,9-12.") from None
    if not seeds or min(seeds) < 0 or (seeds and max(seeds) >= 2**32):
        raise ValueError(f"--seeds={text!r} must name seeds in [0, 2**32).")
    return seeds


def _tuples(x):
    """JSON lists back to the tuples the configs hold (hashable Flax attributes)."""
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    return x


def load_config(workdir: str, config_arg: str = ""):
    """The config of ``workdir`` (its ``config.json``) or of ``config_arg`` (file[:preset])."""
    import ml_collections

    from jaxpapers import config_lib

    if config_arg:
        file, _, arg = config_arg.partition(":")
        return config_lib.load_config_file(file, arg or None)
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        arg = _converted_config_arg(workdir)
        if arg is not None:
            file = os.path.join(config_lib.configs_dir(), "stylegan2_dgl.py")
            return config_lib.load_config_file(file, arg)
        raise FileNotFoundError(
            f"{path} not found: a converted checkpoint has no config; give --config "
            "(e.g. configs/stylegan2_dgl.py:ffhq1024)."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(_tuples(json.load(f)))


def _converted_config_arg(workdir: str) -> str | None:
    """The preset and model settings that ``tools.convert_stylegan2`` recorded in ``arch.json``
    (``configs/stylegan2_dgl.py:PRESET,model.k=v,...``) for the networks it converted, or None.
    Only the part after the file name is used: the file is always this repository's
    ``stylegan2_dgl`` config, never a path read from the directory (a config file is code)."""
    path = os.path.join(workdir, "arch.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            hint = json.load(f).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(hint, str) or not hint.startswith("configs/stylegan2_dgl.py:"):
        return None
    return hint.partition(":")[2]


def latents(seeds: list[int], dim: int, trunc: float = 0.0) -> np.ndarray:
    """One official-style latent per seed; ``trunc > 0`` resamples values outside [-t, t]."""
    out = []
    for s in seeds:
        rs = np.random.RandomState(s)
        z = rs.randn(dim)
        while trunc > 0 and np.any(np.abs(z) > trunc):
            bad = np.abs(z) > trunc
            z[bad] = rs.randn(int(bad.sum()))
        out.append(z)
    return np.stack(out).astype(np.float32)


def _role_tree(tree, role: str) -> dict:
    if not isinstance(tree, dict) or role not in tree:
        have = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(
            f"The checkpoint has no {role!r} networks (has {have}); a converted checkpoint holds "
            "only the teacher: use --role=teacher."
        )
    return tree[role]


def generate(
    config,
    tree,
    seeds: list[int],
    *,
    role: str = "student",
    trunc: float | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    class_idx: int = -1,
    batch_size: int = 16,
) -> np.ndarray:
    """Images in [-1, 1], NHWC, one per seed, from the restored checkpoint ``tree``."""
    import jax

    from jaxpapers import batching

    method = config.get("method", "")
    if method not in FAMILIES:
        raise ValueError(f"generate supports {', '.join(FAMILIES)}; this config is {method!r}.")
    gs = _role_tree(tree, role)
    if method == "stylegan2_dgl":
        from jaxpapers.layers import stylegan2 as sg
        from jaxpapers.methods.stylegan2_dgl.evaluate import make_sampler

        m = config.model
        noise = gs.get("noise_const") if noise_mode == "const" else None
        if noise_mode == "const" and noise is None:
            noise = sg.noise_const_buffers(jax.random.key(noise_seed), int(m.resolution))
        psi = 1.0 if trunc is None else float(trunc)
        sample = make_sampler(config, role, gs["g_ema"], gs["w_avg"], psi, noise_mode, noise)
        z = latents(seeds, int(m.z_dim))
        if noise_mode == "random":  # One image per call so seed s always gets the same noise.
            base = jax.random.key(noise_seed)
            return np.concatenate(
                [
                    np.asarray(sample(z[i : i + 1], jax.random.fold_in(base, s)))
                    for i, s in enumerate(seeds)
                ]
            )
        key = jax.random.key(noise_seed)  # Unused: const / no noise.
        return batching.map_batches(lambda zb: sample(zb, key), z, batch_size=batch_size)
    from jaxpapers.methods.biggan_dgl.evaluate import make_sampler

    m = config.model
    if not -1 <= class_idx < int(m.num_classes):
        raise ValueError(f"--class_idx={class_idx} not in [0, {m.num_classes}) (or -1).")
    t = float(config.eval.truncation) if trunc is None else float(trunc)
    if t < 0:
        raise ValueError(f"--trunc={t} must be >= 0 for BigGAN (0: no truncation).")
    z = latents(seeds, int(m.dim_z), t)
    if class_idx >= 0:
        y = np.full(len(seeds), class_idx, np.int32)
    else:
        y = np.asarray(
            [np.random.RandomState([s, 1]).randint(m.num_classes) for s in seeds], np.int32
        )
    ema = bool(config.eval.get("use_ema", True))
    params, variables = (gs["g_ema"], gs["g_ema_vars"]) if ema else (gs["g"], gs["g_vars"])
    sample = make_sampler(config, role, params, variables)
    return batching.map_batches(sample, z, y, batch_size=batch_size)


def save(images: np.ndarray, seeds: list[int], out: str, cols: int = 0) -> list[str]:
    """One grid (``out`` ends in .png) or one file per seed in directory ``out``."""
    from PIL import Image

    from jaxpapers import viz

    images = viz.to_uint8(images, (-1.0, 1.0))
    if out.lower().endswith(".png"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        nrow = cols or int(np.ceil(np.sqrt(len(images))))
        return [viz.save_image_grid(out, images, nrow=nrow)]
    os.makedirs(out, exist_ok=True)
    paths = []
    for s, img in zip(seeds, images, strict=True):
        paths.append(os.path.join(out, f"seed{s:04d}.png"))
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(paths[-1])
    return paths


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    F = flags.FLAGS
    try:
        seeds = parse_seeds(F.seeds)
    except ValueError as e:
        print(f"generate: {e}", file=sys.stderr)
        sys.exit(2)
    from jaxpapers import checkpoint

    try:
        config = load_config(F.workdir, F.config)
        tree = checkpoint.restore_params(F.workdir, None if F.step < 0 else F.step)
        images = generate(
            config,
            tree,
            seeds,
            role=F.role,
            trunc=F.trunc,
            noise_mode=F.noise_mode,
            noise_seed=F.noise_seed,
            class_idx=F.class_idx,
        )
    except (FileNotFoundError, ValueError, checkpoint.CheckpointError) as e:
        print(f"generate: {e}", file=sys.stderr)
        sys.exit(2)
    paths = save(images, seeds, F.out, F.cols)
    print(f"Wrote {len(seeds)} images to {paths[0] if len(paths) == 1 else F.out}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
