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

_OUT = flags.DEFINE_string("out", None, "Output directory.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs of Adam.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LR = flags.DEFINE_float("lr", 1e-3, "Peak learning rate (cosine schedule).")
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation and shuffling seed.")
flags.mark_flag_as_required("out")


def main(argv) -> None:
    del argv
    from jaxpapers.evals.gan import fmnist_net, train_feature_net

    variables, report = train_feature_net.train(_EPOCHS.value, _BATCH.value, _LR.value, _SEED.value)
    report["command"] = "python -m jaxpapers.tools.train_fmnist_net " + " ".join(sys.argv[1:])
    path = os.path.join(_OUT.value, "fmnist_cnn.npz")
    fmnist_net.save_weights(variables, path)
    with open(os.path.join(_OUT.value, "fmnist_cnn.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    cli.run(main, __doc__)
