"""GAN scores from the shell: FD/FID, KID, IS, precision/recall of images or of a GAN run.

    python -m jaxpapers.tools.gan_metrics --images fakes.npz --workdir out \
        [--feature_net fmnist|inception] [--real_dataset fashion_mnist] [--real_split test] \
        [--inception_weights pt_inception-2015-12-05-6726825d.pth] [--num_samples 10000]
    python -m jaxpapers.tools.gan_metrics --checkpoint RUN_DIR --workdir out \
        [--config configs/stylegan2_dgl.py[:preset,key=value]] [--role student|teacher] \
        [--step N] [--num_samples 10000] [--feature_net ...]

With ``--checkpoint`` the run (a workdir of ``jaxpapers.main`` for a GAN method, e.g.
``stylegan2_dgl``, ``biggan_dgl``) is restored by ``jaxpapers.runs.load_run`` (its latest step, or
``--step``; its own ``config.json`` unless ``--config`` is given) and the method's
``gan_sampler(state, config, role)`` generates the fakes; the real data set is the config's
(``data.name`` test split) unless given.

Images: uint8 (N, H, W[, C]) or float in [-1, 1]; ``.npz`` uses the array named ``--key``
(default: 'images', else the only array); a directory is read with PIL (png/jpg/jpeg/bmp,
sorted by name). Prints and writes ``gan_metrics_<net>.json`` into ``--workdir``.
"""

from __future__ import annotations

import json

from absl import flags

from jaxpapers.tools import cli

# Evaluator options the command line may override (evaluator.default_eval_config() keys).
STRING_OPTIONS = (
    "feature_net",
    "real_dataset",
    "real_split",
    "real_data_path",
    "inception_weights",
    "fmnist_weights",
    "stats_dir",
)
INT_OPTIONS = ("num_samples", "batch_size", "real_num_samples", "seed")


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("images", None, "Directory of image files, .npz or .npy.")
    flags.DEFINE_string("checkpoint", None, "Workdir of a GAN method's run.")
    flags.DEFINE_string(
        "config", "", "configs/<method>.py[:preset,k=v] (default: the run's config.json)."
    )
    flags.DEFINE_string("role", "student", "teacher or student generator.")
    flags.DEFINE_integer("step", -1, "Checkpoint step (-1: latest).")
    flags.DEFINE_string("key", "images", "Array name inside an .npz.")
    flags.DEFINE_string("workdir", None, "Output directory.")
    for name in STRING_OPTIONS:
        flags.DEFINE_string(
            name, None, "Evaluator option (default: evaluator.default_eval_config)."
        )
    for name in INT_OPTIONS:
        flags.DEFINE_integer(
            name, None, "Evaluator option (default: evaluator.default_eval_config)."
        )
    flags.mark_flag_as_required("workdir")
    flags.mark_flags_as_mutual_exclusive(["images", "checkpoint"], required=True)


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    from jaxpapers.evals.gan import score

    given = {  # Only the options on the command line override the defaults.
        name: F[name].value for name in STRING_OPTIONS + INT_OPTIONS if F[name].value is not None
    }
    if F.checkpoint:
        from jaxpapers import config_lib, methods, runs

        if F.config:
            path, _, arg = F.config.partition(":")
            config = config_lib.load_config_file(path, arg or None)
        else:
            config = runs.read_config(F.checkpoint)
        if methods.hook(methods.get(config.method), "gan_sampler") is None:
            raise cli.BadInput(f"Method {config.method!r} has no gan_sampler; it is not a GAN.")
        step = None if F.step < 0 else F.step
        run = runs.load_run(F.checkpoint, step, config=config)
        print(f"Restored {F.checkpoint} step {run.step}", flush=True)
        sample_fn = run.make_sampler(F.role)
        results = score.score_sampler(sample_fn, run.config, F.workdir, F.role, **given)
    else:
        results = score.score_images(F.images, F.workdir, F.key, **given)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
