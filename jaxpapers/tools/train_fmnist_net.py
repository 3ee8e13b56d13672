"""Trains the FD-FMNIST feature network (FmnistCNN) on Fashion-MNIST train and saves it.

    python -m jaxpapers.tools.train_fmnist_net --out jaxpapers/evals/gan/weights

Writes ``fmnist_cnn.npz`` (the variables) and ``fmnist_cnn.json`` (the command, the settings
and the test accuracy) into ``--out``. Deterministic for a given seed on a given machine.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("out", None, "Output directory.")
    flags.DEFINE_integer("epochs", 3, "Epochs of Adam.")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_float("lr", 1e-3, "Peak learning rate (cosine schedule).")
    flags.DEFINE_integer("seed", 0, "Initialisation and shuffling seed.")
    flags.mark_flag_as_required("out")


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    from jaxpapers.evals.gan import fmnist_net, train_feature_net

    variables, report = train_feature_net.train(F.epochs, F.batch_size, F.lr, F.seed)
    report["command"] = "python -m jaxpapers.tools.train_fmnist_net " + " ".join(sys.argv[1:])
    path = os.path.join(F.out, "fmnist_cnn.npz")
    fmnist_net.save_weights(variables, path)
    with open(os.path.join(F.out, "fmnist_cnn.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
