"""RAT (Regional Adversarial Training) and its SAT / TRADES / standard baselines.

`method_variant` in {rat, sat, trades, standard} switches the objective; the rest is shared.
Presets and commands:
  default (CPU, Fashion-MNIST, ε = 0.1, PGD-10 step 0.025, small ResNet, minutes on 2 cores):
      python -m jaxpapers.main --config=configs/rat.py --workdir=runs/rat_fmnist
      python -m jaxpapers.main --config=configs/rat.py:default,method_variant=sat \
          --workdir=runs/sat_fmnist
  quick (the measured CPU comparison: width-8 ResNet, PGD-5, 400 steps of 64):
      python -m jaxpapers.main --config=configs/rat.py:quick,method_variant=sat --workdir=runs/q_sat
  cifar10_preact18 (paper scale, Rice et al. SAT recipe: PreActResNet-18, ε = 8/255, α = 2/255,
      PGD-10, SGD 0.1 momentum 0.9 wd 5e-4, piecewise ×0.1 at 50 % / 75 %, 200 epochs of 128;
      needs a prepared TFDS cifar10 under TFDS_DATA_DIR):
      python -m jaxpapers.main --config=configs/rat.py:cifar10_preact18 --workdir=runs/rat_c10
  cifar10_wrn34 (paper scale, WideResNet-34-10 (46.16M parameters), same SAT/RAT recipe as
      cifar10_preact18; with `method_variant=trades` in the preset argument the TRADES recipe:
      ε = 0.031, step 0.007, wd 2e-4, 76 epochs, lr ×0.1 after epoch 74):
      python -m jaxpapers.main --config=configs/rat.py:cifar10_wrn34 --workdir=runs/rat_wrn
      python -m jaxpapers.main --config=configs/rat.py:cifar10_wrn34,method_variant=trades \
          --workdir=runs/trades_wrn
      (WRN-28-10 instead: --config.model.arch=wrn28_10; the TRADES recipe switch only reads the
      preset argument, not a later --config.method_variant flag.)
  smoke (tests: tiny ResNet on 8×8 digits, 2 steps):
      python -m jaxpapers.main --config=configs/rat.py:smoke --workdir=/tmp/rat_smoke
Measured numbers and the exact commands: jaxpapers/methods/rat/README.md.
"""

from jaxpapers import config_lib, optim

PRESETS = ("default", "quick", "cifar10_preact18", "cifar10_wrn34", "smoke")


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    c = config_lib.base_config("rat")
    c.preset = preset
    c.method_variant = "rat"
    # Training attack (SAT/RAT: PGD L∞ with random start; TRADES uses eps from here).
    # unroll: the attack loop fully unrolled ('auto': on CPU only, where XLA runs convolutions
    # inside loops several times slower; benchmarks/control_flow.py). Same numbers either way.
    c.attack = config_lib.ConfigDict(dict(eps=0.1, step_size=0.025, num_steps=10, unroll="auto"))
    # TRADES (train_trades_cifar10.py): β = 6, 10 KL sign steps of 0.007 at ε = 0.031 (scaled).
    c.trades = config_lib.ConfigDict(dict(beta=6.0, step_size=0.0226, num_steps=10))
    # RAT reconstruction switches (all UNVERIFIED against the paper, see README).
    c.rat = config_lib.ConfigDict(
        dict(
            region="segments",  # segments | hull | tube
            num_samples=1,  # m samples per benign point (1 keeps SAT's cost)
            include_clean=True,  # the node set P starts at the benign x
            include_endpoint=False,  # the first sample is the PGD endpoint x_T
            tube_radius=0.25,  # tube radius in units of ε
            distance="linf_eps",  # linf_eps | l2_path
            s_max=0.2,  # smoothing at distance 1
            power=1.0,  # s(d) = s_max·d^power
            direction="far_more",  # far_more | near_more
            clean_weight=0.0,  # optional clean CE term
        )
    )
    c.eval = config_lib.ConfigDict(
        dict(
            num_examples=1000,
            batch_size=500,
            attacks="pgd",
            cascade=False,
            pgd_steps=20,
            pgd_step_size=0.01,
            apgd_steps=100,
            square_queries=5000,
            num_pictures=8,
        )
    )
    c.data.eval_split = "test"
    c.data.crop_pad = 0
    c.data.flip = False
    # Compute dtype: "bfloat16" = mixed precision (jaxpapers/layers/precision.py).
    c.model.dtype = "float32"
    c.model.arch = "resnet"
    c.model.num_classes = 10
    c.model.width = 16
    c.model.stage_sizes = (1, 1, 1)
    c.model.mean = (0.0,)
    c.model.std = (1.0,)
    if preset == "default":
        c.data.name = "fashion_mnist"
        c.data.image_shape = (28, 28, 1)
        c.batch_size = 128
        c.num_train_steps = 1500
        c.log_every = 50
        c.ckpt_every = 500
        c.eval_every = 500
        c.optim = optim.config(
            name="momentum",
            lr=0.05,
            schedule="piecewise",
            milestones=(750, 1125),
            decay_factor=0.1,
            weight_decay=5e-4,
            momentum=0.9,
        )
    elif preset == "quick":
        # The measured CPU comparison (README): a narrow 2-stage ResNet, PGD-5 (α = 2.5ε/5),
        # 400 steps of 64 — what a shared 2-core machine can do for several runs in an hour.
        c.data.name = "fashion_mnist"
        c.data.image_shape = (28, 28, 1)
        c.model.width = 8
        c.model.stage_sizes = (1, 1)
        c.attack.num_steps = 5
        c.attack.step_size = 0.05
        c.trades.num_steps = 5
        c.trades.step_size = 0.05
        c.batch_size = 64
        c.num_train_steps = 400
        c.log_every = 50
        c.ckpt_every = 200
        c.eval.num_examples = 500
        c.optim = optim.config(
            name="momentum",
            lr=0.05,
            schedule="piecewise",
            milestones=(300,),
            decay_factor=0.1,
            weight_decay=5e-4,
            momentum=0.9,
        )
    elif preset in ("cifar10_preact18", "cifar10_wrn34"):
        steps_per_epoch = 50000 // 128
        epochs, milestones, wd = 200, (100, 150), 5e-4  # Rice et al.: ×0.1 at 50 % and 75 %
        c.data.name = "cifar10"
        c.data.image_shape = (32, 32, 3)
        c.data.crop_pad = 4
        c.data.flip = True
        c.model.arch = "preact_resnet18" if preset == "cifar10_preact18" else "wrn34_10"
        c.model.width = 64
        c.model.mean = (0.4914, 0.4822, 0.4465)  # Rice et al. normalise inside the model
        c.model.std = (0.2471, 0.2435, 0.2616)
        c.attack.eps = 8 / 255
        c.attack.step_size = 2 / 255
        c.trades.step_size = 0.007
        c.eval.pgd_step_size = 2 / 255
        c.eval.attacks = "pgd"
        if preset == "cifar10_wrn34" and overrides.get("method_variant") == "trades":
            # TRADES train_trades_cifar10.py: ε 0.031, step 0.007, wd 2e-4, 76 epochs, lr 0.1 for
            # epochs 1..74 then 0.01 (its `epoch >= 75` drop, epochs counted from 1).
            epochs, milestones, wd = 76, (74,), 2e-4
            c.attack.eps = 0.031
        c.batch_size = 128
        c.num_train_steps = epochs * steps_per_epoch
        c.log_every = 100
        c.ckpt_every = 5 * steps_per_epoch
        c.eval_every = 5 * steps_per_epoch
        c.optim = optim.config(
            name="momentum",
            lr=0.1,
            schedule="piecewise",
            milestones=tuple(m * steps_per_epoch for m in milestones),
            decay_factor=0.1,
            weight_decay=wd,
            momentum=0.9,
        )
    elif preset == "smoke":
        c.data.name = "digits"
        c.data.image_shape = (8, 8, 1)
        c.model.width = 4
        c.model.stage_sizes = (1, 1)
        c.attack.num_steps = 2
        c.trades.num_steps = 2
        c.batch_size = 16
        c.num_train_steps = 2
        c.log_every = 1
        c.ckpt_every = 1
        c.eval.num_examples = 64
        c.eval.batch_size = 64
        c.eval.pgd_steps = 2
        c.optim = optim.config(name="momentum", lr=0.05, weight_decay=5e-4)
    else:
        raise config_lib.unknown_preset(preset, PRESETS)
    return config_lib.finalize(c, overrides)
