"""Hedge defense (Wu et al. 2021): attack all classes at test time; non-adaptive and adaptive evals.

Presets and commands:
  default (CPU, offline): trains a Fashion-MNIST SAT model with the rat method
      (configs/rat.py:quick,
      method_variant=sat) in <workdir>/base_model unless --config.base.run_dir names a run, then
      evaluates 500 test points, attacks at eps 0.1 (the SAT training radius), hedge eps 0.1:
      python -m jaxpapers.main --config=configs/hedge_defense.py --workdir=runs/hedge_fmnist
      python -m jaxpapers.main --config=configs/hedge_defense.py \
          --config.base.run_dir=runs/rat_fmnist
  cifar10 (the paper's settings: eps 0.031, PGD-20 step 0.007, CW, APGD-CE, APGD-T, Square,
      hedge 20 steps of 0.007 at eps 0.031, official path-logit-sum prediction) on a CIFAR-10
      run of the suite:
      python -m jaxpapers.main --config=configs/hedge_defense.py:cifar10 --config.base.run_dir=RUN
  imagenet (FastAT setting: PGD-100 at eps 4/255; hedge eps/step UNVERIFIED, see README):
      python -m jaxpapers.main --config=configs/hedge_defense.py:imagenet --config.base.run_dir=RUN
  smoke (tests/notebooks: tiny SAT model on digits, 16 points, short attacks):
      python -m jaxpapers.main --config=configs/hedge_defense.py:smoke --workdir=/tmp/hedge_smoke
Measured numbers: jaxpapers/methods/hedge_defense/README.md.
"""

from jaxpapers import config_lib

PRESETS = ("default", "cifar10", "imagenet", "smoke")


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    c = config_lib.base_config("hedge_defense")
    c.preset = preset
    c.pictures = True
    # The protected model: an existing run, or a SAT model trained here with the rat method.
    c.base = config_lib.ConfigDict(
        dict(run_dir="", rat_preset="quick", variant="sat", train_steps=0)
    )
    # Compute dtype of the SAT base model trained here (rat's model.dtype; "bfloat16" = mixed
    # precision). The defense and every attack run in float32 whatever the base model trained in.
    c.model.dtype = "float32"
    # The defense (official defaults: 20 steps, step 0.007, eps 0.031, random start, path sum).
    # unroll: 'auto' unrolls the step loop on CPU only (same iterates, faster there), 'yes', 'no'.
    c.hedge = config_lib.ConfigDict(
        dict(
            eps=0.031,
            step_size=0.007,
            num_steps=20,
            random_init=True,
            predict="path_logit_sum",
            unroll="auto",
        )
    )
    # Attacks on the bare model (non-adaptive protocol).
    c.eval = config_lib.ConfigDict(
        dict(
            eps=0.031,
            num_examples=1000,
            batch_size=250,
            attacks=("pgd", "cw", "apgd-ce", "apgd-t", "fab-t", "square"),
            pgd_steps=20,
            pgd_step_size=0.007,
            apgd_steps=100,
            square_queries=5000,
        )
    )
    # Croce et al. 2022: APGD (targeted DLR) through a 5-step hedge with EOT 3, then the pointwise
    # worst case over all point sets against the full defense repeated `defense_runs` times.
    c.adaptive = config_lib.ConfigDict(
        dict(enabled=True, loss="dlr-t", apgd_steps=50, eot=3, hedge_steps=5, defense_runs=2)
    )
    c.data.eval_split = "test"
    if preset == "default":
        c.eval.eps = 0.1
        c.eval.pgd_step_size = 0.01
        c.eval.num_examples = 500
        c.eval.apgd_steps = 50
        c.eval.square_queries = 500
        c.hedge.eps = 0.1
        c.hedge.step_size = 0.0226  # the official 0.007/0.031 ratio at eps 0.1
        c.adaptive.apgd_steps = 25
    elif preset == "cifar10":
        c.eval.num_examples = 1000
    elif preset == "imagenet":
        c.eval.eps = 4 / 255
        c.eval.attacks = ("pgd",)
        c.eval.pgd_steps = 100
        c.eval.pgd_step_size = 1 / 255
        c.hedge.eps = 4 / 255
        c.hedge.step_size = 1 / 255
        c.eval.batch_size = 50
    elif preset == "smoke":
        c.base.rat_preset = "smoke"
        c.base.train_steps = 20
        c.eval.eps = 0.1
        c.eval.num_examples = 16
        c.eval.batch_size = 8
        c.eval.attacks = ("pgd", "apgd-ce")
        c.eval.pgd_steps = 3
        c.eval.pgd_step_size = 0.04
        c.eval.apgd_steps = 3
        c.hedge.eps = 0.1
        c.hedge.step_size = 0.0226
        c.hedge.num_steps = 4
        c.adaptive.apgd_steps = 2
        c.adaptive.eot = 2
        c.adaptive.hedge_steps = 2
        c.adaptive.defense_runs = 1
    else:
        raise config_lib.unknown_preset(preset, PRESETS)
    return config_lib.finalize(c, overrides)
