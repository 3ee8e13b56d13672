"""SynFace (ICCV 2021): face recognition on synthetic identities with identity and domain mixup.

One job: identity-conditioned StyleGAN2 on real faces (gen.steps) -> recogniser on its new
synthetic identities (IM soft labels; DM with the real set) -> verification on held-out identities.

Presets and commands:
  default (CPU: ORL faces at 16x16 grey; 30 identities train the generator and are the DM real
      set, 10 unseen identities give the verification pairs; 100 new identities x 10 images):
      python -m jaxpapers.main --config=configs/synface.py --workdir=/tmp/synface/run
      variants (claim table, generator from the run above):
        synthetic only: --config=configs/synface.py:default,gen.steps=0,synth.mixup=False,\
dm.enabled=False --config.init_from=/tmp/synface/run
        + IM:           ...:default,gen.steps=0,dm.enabled=False --config.init_from=...
        + IM + DM:      ...:default,gen.steps=0 --config.init_from=...
  casia_webface (paper scale: 10K synthetic ids x 50 + 2K x 10 real CASIA ids, LResNet50E-IR
      112x96 -> here 128x128 generator / recogniser, ArcFace s=30 m=0.5, SGD 0.1 momentum 0.9
      wd 5e-4, 40 epochs with x0.1 at 24/30/36, batch 512; data.path = CASIA-WebFace as an
      identity folder root/<identity>/<image> or insightface's train.rec + train.idx; the real
      faces are streamed: data.pipeline='stream', decoded in data.workers grain processes):
      python -m jaxpapers.main --config=configs/synface.py:casia_webface --workdir=DIR \
          --config.data.path=/data/CASIA-WebFace --config.eval.lfw_dir=/data/lfw \
          --config.eval.pairs_file=/data/lfw/pairs.txt
  smoke (tests/notebooks: 8x8 generator, one GAN step then recognition steps):
      python -m jaxpapers.main --config=configs/synface.py:smoke --workdir=/tmp/synface/smoke
Face data (ORL layout): data.path if set, else $JAXPAPERS_DATA_DIR/att_faces, else
scikit-learn's Olivetti faces (the same 400 faces at 64x64, downloaded once); see
jaxpapers/data/faces.py.
Expected numbers: README.md in jaxpapers/methods/synface (paper LFW: synthetic 88.98, + IM 91.97,
+ DM 2K x 10 real 95.78; measured default on CPU: held-out ORL verification 87.2 % (IM + DM);
4-seed means synthetic only 73.8, + IM 62.0, + IM + DM 88.0).
"""

import ml_collections

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "casia_webface", "smoke")
ORL = ""  # "": $JAXPAPERS_DATA_DIR/att_faces or Olivetti (jaxpapers/data/faces.py)


def _adam(lr: float, reg_interval: int = 0):
    """StyleGAN2 Adam(0, 0.99) with the lazy-regularisation correction; mapping lr x0.01."""
    c = reg_interval / (reg_interval + 1) if reg_interval > 0 else 1.0
    return optim.config(
        name="adam",
        lr=lr * c,
        b1=0.0,
        b2=0.99**c,
        eps=1e-8,
        lr_multipliers=((r"mapping/.*", 0.01),),
    )


def _sgd(lr: float, milestones: tuple[int, ...]):
    """SynFace recogniser: SGD momentum 0.9, wd 5e-4, x0.1 at the milestones."""
    return optim.config(
        name="momentum",
        lr=lr,
        momentum=0.9,
        schedule="piecewise",
        milestones=milestones,
        decay_factor=0.1,
        weight_decay=5e-4,
        decay_mask="all",
    )


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("synface")
    c.preset = preset
    # Real faces: data.name 'image_folder' (root/<identity>/<image>) or 'casia_webface' / 'ms1m'
    # (a folder or insightface train.rec/.idx, data.format); data.pipeline 'memory' | 'stream'.
    c.data = ml_collections.ConfigDict(
        dict(
            name="image_folder",
            path=ORL,
            format="auto",
            n_train_ids=30,
            real_per_id=10,
            **stream.config_keys(),
        )
    )
    c.gen = ml_collections.ConfigDict(
        dict(
            steps=300,
            resolution=16,
            img_channels=1,
            z_dim=64,
            code_dim=32,
            w_dim=128,
            mapping_layers=4,
            fmap_base=512,
            fmap_max=32,
            mbstd_group_size=4,
        )
    )
    c.gen_loss = ml_collections.ConfigDict(dict(r1_gamma=1.0, d_reg_interval=16, mirror=True))
    c.ema = ml_collections.ConfigDict(dict(kimg=1.0, rampup=0.05))
    c.synth = ml_collections.ConfigDict(
        dict(
            num_ids=100,
            per_id=10,
            seed=10,
            mixup=True,
            grid_step=0.05,
            truncation_psi=0.7,
            truncation_cutoff=3,
        )
    )
    c.dm = ml_collections.ConfigDict(dict(enabled=True))
    # Compute dtype of the recognition network ("bfloat16": mixed precision,
    # jaxpapers/layers/precision.py); the StyleGAN2 phase and the identity synthesis stay float32.
    c.model.dtype = "float32"
    c.rec = ml_collections.ConfigDict(
        dict(
            widths=(16, 16, 32, 64, 128),
            depths=(1, 1, 2, 1),
            embed_dim=128,
            dropout=0.5,
            margin="arcface",
            scale=30.0,
            margin_m=0.5,
        )
    )
    c.eval = ml_collections.ConfigDict(
        dict(
            num_pairs=600, pairs_seed=0, write_set=True, pairs_file="", lfw_dir="", pairs_ext="jpg"
        )
    )
    c.batch_size = 32
    rec_steps = 400
    gen_lr, rec_lr = 0.0025, 0.1
    if preset == "casia_webface":
        c.data.update(
            dict(name="casia_webface", path="/data/CASIA-WebFace", n_train_ids=2000, real_per_id=10)
        )
        # Real faces decoded in grain's workers; only the plan rows and labels are in memory.
        c.data.update(stream.config_keys("stream", stream.PAPER_WORKERS))
        c.gen.update(
            dict(
                steps=200_000,
                resolution=128,
                img_channels=3,
                z_dim=512,
                code_dim=160,
                w_dim=512,
                mapping_layers=8,
                fmap_base=16384,
                fmap_max=512,
            )
        )
        c.gen_loss.r1_gamma = 10.0
        c.ema.kimg = 10.0
        c.synth.update(dict(num_ids=10_000, per_id=50, truncation_cutoff=6))
        c.rec.update(dict(widths=(64, 64, 128, 256, 512), depths=(3, 4, 14, 3), embed_dim=512))
        c.eval.update(dict(num_pairs=6000, write_set=False))
        c.batch_size = 512
        spe = 10_000 * 50 // 512
        rec_steps = 40 * spe
        c.ckpt_every, c.log_every, c.eval_every = 5000, 100, 0
        c.optim = ml_collections.ConfigDict(
            dict(g=_adam(0.002), d=_adam(0.002, 16), rec=_sgd(0.1, (24 * spe, 30 * spe, 36 * spe)))
        )
    elif preset == "smoke":
        c.gen.update(
            dict(
                steps=1,
                resolution=8,
                z_dim=8,
                code_dim=4,
                w_dim=8,
                mapping_layers=2,
                fmap_base=32,
                fmap_max=8,
            )
        )
        c.data.update(dict(n_train_ids=4, real_per_id=4))
        c.synth.update(dict(num_ids=6, per_id=4, truncation_cutoff=2))
        c.rec.update(dict(widths=(4, 4, 8, 8, 16), depths=(1, 1, 1, 1), embed_dim=8))
        c.eval.update(dict(num_pairs=40))
        c.batch_size = 8
        rec_steps = 2
        c.log_every, c.ckpt_every = 1, 0
    if preset != "casia_webface":
        c.log_every = 1 if preset == "smoke" else 100
        c.ckpt_every = 0 if preset == "smoke" else 500
        c.optim = ml_collections.ConfigDict(
            dict(
                g=_adam(gen_lr),
                d=_adam(gen_lr, c.gen_loss.d_reg_interval),
                rec=_sgd(rec_lr, (rec_steps // 2, rec_steps * 3 // 4)),
            )
        )
    c.rec_steps = rec_steps
    c.num_train_steps = c.gen.steps + rec_steps
    c = config_lib.finalize(c, overrides)
    # Derived from the (overridden) phase lengths unless given explicitly in the preset string;
    # `--config.*` flags are applied after get_config, so pass phase lengths in the preset string.
    if "num_train_steps" not in overrides:
        c.num_train_steps = c.gen.steps + c.rec_steps
    if "optim.rec.milestones" not in overrides and preset != "casia_webface":
        c.optim.rec.milestones = (c.rec_steps // 2, c.rec_steps * 3 // 4)
    return c
