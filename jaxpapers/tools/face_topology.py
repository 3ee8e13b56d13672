"""Regenerates ``lib/face3d/face_mesh_topology.npz`` from the mediapipe 0.10.14 wheel.

    pip download --no-deps mediapipe==0.10.14 --python-version 3.11 --only-binary=:all: -d /tmp/mp
    python -m jaxpapers.tools.face_topology --wheel '/tmp/mp/mediapipe-0.10.14-*.whl'

Only needed if the shipped file is lost; see ``jaxpapers.lib.face3d.topology`` (the wheel's
Python source is parsed with ``ast``; mediapipe is never imported).
"""

from __future__ import annotations

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("wheel", None, "Path or glob of mediapipe-0.10.14-*.whl.")
    flags.DEFINE_string("out", None, "Output .npz (default: topology.TOPOLOGY_FILE).")
    flags.mark_flag_as_required("wheel")


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    from jaxpapers.lib.face3d import topology

    out = F.out or topology.TOPOLOGY_FILE
    topo = topology.build_topology_file(F.wheel, out)
    print({k: v.shape for k, v in topo.items()}, "->", out)


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
