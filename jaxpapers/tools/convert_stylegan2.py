"""Converts an official StyleGAN2 network pickle into an ``init_from`` run, without TF or torch.

    python -m jaxpapers.tools.convert_stylegan2 --pkl stylegan2-ffhq-config-f.pkl --out TEACHER_DIR
    python -m jaxpapers.tools.convert_stylegan2 --pkl network-snapshot-025000.pkl --out TEACHER_DIR

Both official formats are read, told apart by the module their pickle names: the TF pickles of
NVlabs/stylegan2 (``jaxpapers.convert.stylegan2``) and the PyTorch pickles of
stylegan2-ada-pytorch / stylegan3 (``jaxpapers.convert.stylegan2_ada``; StyleGAN2 networks only,
unconditional; anything else is refused with one line saying why). Both are read with restricted
unpicklers: nothing in the file is executed. Writes an Orbax checkpoint
(``TEACHER_DIR/checkpoints``, usable as ``--config.init_from=TEACHER_DIR``) and ``arch.json``;
for a PyTorch pickle ``arch.json`` also holds the ``--config`` whose model settings match the
networks (printed too), which ``python -m jaxpapers.tools.generate --workdir=TEACHER_DIR
--role=teacher`` uses when no ``--config`` is given.
"""

from __future__ import annotations

import json
import os

from absl import flags

from jaxpapers.tools import cli

CONFIG = "configs/stylegan2_dgl.py"


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("pkl", None, "Official StyleGAN2 pickle (TF, stylegan2-ada-pytorch).")
    flags.DEFINE_string("out", None, "Output directory (init_from target).")
    flags.mark_flags_as_required(["pkl", "out"])


def config_arg(model: dict) -> str:
    """The ``--config`` value whose model settings are ``model`` (a converted ``info['model']``):
    the ffhq preset of that resolution family with every model setting spelled out."""
    preset = "ffhq1024" if model["resolution"] == 1024 else "ffhq256"
    keys = (
        "resolution",
        "img_channels",
        "z_dim",
        "w_dim",
        "mapping_layers",
        "fmap_base",
        "fmap_max",
        "mbstd_group_size",
        "mbstd_num_features",
        "w_avg_beta",
        "conv_clamp",
    )
    return f"{CONFIG}:{preset}," + ",".join(f"model.{k}={model[k]}" for k in keys)


def convert(path: str) -> tuple[dict, dict]:
    """Either official format -> (tree, info) (see the module doc)."""
    from jaxpapers.convert import stylegan2, stylegan2_ada

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    if stylegan2_ada.sniff(path) == "tf":
        return stylegan2.convert_file(path)
    tree, info = stylegan2_ada.convert_file(path)
    info["config"] = config_arg(info["model"])
    return tree, info


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    from jaxpapers.convert import stylegan2

    tree, info = convert(F.pkl)
    stylegan2.save(tree, info, F.out)
    skip = ("static_kwargs", "init_kwargs", "model", "config")
    summary = json.dumps({k: v for k, v in info.items() if k not in skip})
    print(f"Wrote {F.out}: {summary}")
    if "config" in info:
        print(f"Its networks are --config={info['config']}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
