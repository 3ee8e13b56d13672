"""Converts pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` to the Flax FID Inception.

    python -m jaxpapers.tools.convert_inception --src pt_inception-2015-12-05-6726825d.pth \
        [--dst ~/.cache/jaxpapers/fid_inception_v3.npz]

The file cannot be downloaded on the suite's machines; the user provides it (see
``jaxpapers.convert.inception.SOURCE_HINT``). It is read without torch by a restricted unpickler,
checked against the model's shapes and written as a flat ``.npz``.
"""

from __future__ import annotations

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("src", None, "Path to pt_inception-2015-12-05-6726825d.pth.")
    flags.DEFINE_string(
        "dst", None, "Output .npz (default: the first of convert.inception.default_locations())."
    )
    flags.mark_flag_as_required("src")


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    from flax import traverse_util

    from jaxpapers.convert import inception

    dst = F.dst or inception.default_locations()[0]
    variables = inception.convert_state_dict(inception.read_torch_state_dict(F.src))
    inception.check_variables(variables)
    inception.save_variables(variables, dst)
    n = sum(v.size for v in traverse_util.flatten_dict(variables).values())
    print(f"converted {n} values from {F.src} -> {dst}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
