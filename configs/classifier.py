"""Plain supervised image classifier (the clean baseline of RAT, hedge defense and StRA).

Presets and commands:
  default (= fashion_mnist; CPU, about 8 min on 2 cores):
      python -m jaxpapers.main --config=configs/classifier.py --workdir=runs/classifier_fmnist
  cifar10 (paper-scale recipe: PreActResNet-18, SGD 0.1 momentum 0.9, wd 5e-4, piecewise at 50%/75%,
      200 epochs of batch 128; needs a prepared TFDS cifar10 under TFDS_DATA_DIR):
      python -m jaxpapers.main --config=configs/classifier.py:cifar10 \
          --workdir=runs/classifier_cifar10
  smoke (tests/notebooks: a tiny ResNet on digits, 2 steps):
      python -m jaxpapers.main --config=configs/classifier.py:smoke --workdir=/tmp/classifier_smoke
Expected: default reaches >= 90% Fashion-MNIST test accuracy (measured numbers in
jaxpapers/methods/classifier/README.md).
"""

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "fashion_mnist", "cifar10", "smoke")


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    c = config_lib.base_config("classifier")
    c.preset = preset
    c.label_smoothing = 0.0
    c.eval_batch_size = 500
    c.data.eval_split = "test"
    c.data.crop_pad = 2
    c.data.flip = True
    c.data.update(stream.config_keys())  # data.pipeline='stream': grain workers (jaxpapers.data)
    # Compute dtype: "bfloat16" = mixed precision (jaxpapers/layers/precision.py).
    c.model.dtype = "float32"
    c.model.arch = "resnet"
    c.model.num_classes = 10
    c.model.width = 32
    c.model.stage_sizes = (1, 1, 1)
    if preset in ("default", "fashion_mnist"):
        c.data.name = "fashion_mnist"
        c.data.image_shape = (28, 28, 1)
        c.model.width = 16
        c.data.crop_pad = 0  # flips only: crops slow convergence more than they help in 2k steps
        c.batch_size = 128
        c.num_train_steps = 2000
        c.log_every = 100
        c.ckpt_every = 500
        c.optim = optim.config(
            name="nesterov",
            lr=0.1,
            schedule="cosine",
            warmup_steps=100,
            weight_decay=5e-4,
            momentum=0.9,
        )
    elif preset == "cifar10":
        c.data.name = "cifar10"
        c.data.image_shape = (32, 32, 3)
        c.data.crop_pad = 4
        c.model.arch = "preact_resnet18"
        c.model.width = 64
        c.batch_size = 128
        steps_per_epoch = 50000 // 128
        c.num_train_steps = 200 * steps_per_epoch
        c.log_every = 100
        c.ckpt_every = 5000
        c.eval_every = 10 * steps_per_epoch
        c.optim = optim.config(
            name="momentum",
            lr=0.1,
            schedule="piecewise",
            milestones=(100 * steps_per_epoch, 150 * steps_per_epoch),
            decay_factor=0.1,
            weight_decay=5e-4,
            momentum=0.9,
        )
    elif preset == "smoke":
        c.data.name = "digits"
        c.data.image_shape = (8, 8, 1)
        c.data.crop_pad = 1
        c.data.flip = False
        c.model.width = 8
        c.model.stage_sizes = (1, 1)
        c.batch_size = 16
        c.eval_batch_size = 64
        c.num_train_steps = 2
        c.log_every = 1
        c.ckpt_every = 1
        c.optim = optim.config(name="momentum", lr=0.05, weight_decay=5e-4)
    else:
        raise config_lib.unknown_preset(preset, PRESETS)
    return config_lib.finalize(c, overrides)
