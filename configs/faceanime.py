"""FaceAnime (image-to-video via 3D facial dynamics): 3DDP + sparse texture + ResUNet generator.

One job trains the generator stage (critic, generator) and the 3D dynamic prediction network
on tracked face clips, then `evaluate` animates held-out stills into MP4 videos + frame strips
(prediction and retargeting modes) and measures reconstruction / identity / 3DDP numbers.

Presets and commands:
  default (CPU, <= 15 min on 2 cores: the carphone clip at 64x64, identity net trained on ORL,
      stills animated: astronaut + ORL faces):
      python -m jaxpapers.main --config=configs/faceanime.py --workdir=runs/faceanime
      ablations: --config.loss.id=0 (no identity loss), --config.model.condition=landmarks,
      --config.model.shading=smooth; seeds: --config.seed=1
  paper (IJB-C / 300VW-style folder of face videos, 128x128, h_dim 128, batch 8, Adam(0, 0.9),
      G lr 1e-5 x0.1 at epochs 10/15/18; set the videos and stills):
      python -m jaxpapers.main --config=configs/faceanime.py:paper --workdir=DIR \
          --config.data.videos="('/data/v1.mp4','/data/v2.mp4')" --config.infer.stills="('/x.jpg',)"
  smoke (tests/notebooks: 32x32, tiny nets, untrained identity net, 2 steps):
      python -m jaxpapers.main --config=configs/faceanime.py:smoke --workdir=/tmp/faceanime_smoke
Face data (ORL layout): data.path if set, else $JAXPAPERS_DATA_DIR/att_faces, else
scikit-learn's Olivetti faces (the same 400 faces at 64x64, downloaded once); see
jaxpapers/data/faces.py.
Expected numbers: README.md in jaxpapers/methods/faceanime.
"""

import ml_collections

from jaxpapers import config_lib, optim

PRESETS = ("default", "paper", "smoke")
ORL = ""  # "": $JAXPAPERS_DATA_DIR/att_faces or Olivetti (jaxpapers/data/faces.py)


def _adam(lr: float, **kw):
    return optim.config(name="adam", lr=lr, b1=0.0, b2=0.9, **kw)  # official betas (0, 0.9)


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("faceanime")
    c.preset = preset
    c.data = ml_collections.ConfigDict(
        dict(
            name="face_video",
            path="",
            videos=("carphone_pristine.mp4",),
            image_size=64,
            margin=0.25,
            max_frames=0,
            cache_dir="",
            holdout=24,
            window=16,
            num_pairs=1024,
            pairs_seed=0,
        )
    )
    c.model = ml_collections.ConfigDict(
        dict(
            g_dim=16,
            g_depth=3,
            g_res=2,
            d_dim=16,
            d_depth=3,
            shading="flat",
            condition="sparse",
            region="face",
            expr_k=8,
            dyn_hidden=64,
            dyn_latent=8,
            dyn_img_width=8,
            # "bfloat16": mixed precision for G and the critic (jaxpapers/layers/precision.py)
            dtype="float32",
        )
    )
    # Official weights (main_paraltrain_withMask_300vw_idloss.py): GP 10, L1 1e4, L_id 1e4, |w|.05
    c.loss = ml_collections.ConfigDict(dict(gp=10.0, l1=1e4, id=1e4, w=0.05, dyn_beta=0.01))
    c.identity = ml_collections.ConfigDict(
        dict(
            path=ORL,
            size=(32, 32),
            widths=(8, 16, 32, 64, 128),
            depths=(1, 1, 1, 1),
            embed_dim=128,
            steps=80,
            seed=0,
            cache_dir="",
        )
    )
    c.infer = ml_collections.ConfigDict(
        dict(
            stills=("astronaut", "orl:1", "orl:2"),
            num_frames=24,
            fps=12,
            driving="",
            samples=3,
            max_videos=3,
            eval_frames=23,
            benchmark=True,
        )
    )
    c.batch_size = 8
    c.optim = ml_collections.ConfigDict(dict(g=_adam(2e-4), d=_adam(2e-4), dyn=_adam(1e-3)))

    if preset == "default":
        c.num_train_steps = 400
        c.log_every = 25
        c.ckpt_every = 200
    elif preset == "paper":
        c.data.update(dict(videos=(), image_size=128, holdout=16, num_pairs=20000))
        c.model.update(
            dict(
                g_dim=128,
                g_depth=4,
                g_res=4,
                d_dim=64,
                d_depth=5,
                expr_k=16,
                dyn_hidden=256,
                dyn_latent=16,
                dyn_img_width=32,
            )
        )
        c.identity.update(
            dict(
                size=(112, 112),
                widths=(64, 64, 128, 256, 512),
                depths=(3, 4, 14, 3),
                embed_dim=512,
                steps=20000,
            )
        )
        c.infer.update(dict(stills=(), num_frames=32, fps=25))
        spe = 20000 // 8
        c.num_train_steps = 20 * spe
        c.log_every = 100
        c.ckpt_every = 2000
        c.optim = ml_collections.ConfigDict(
            dict(
                g=_adam(1e-5, schedule="piecewise", milestones=(10 * spe, 15 * spe, 18 * spe)),
                d=_adam(1e-5),
                dyn=_adam(1e-3),
            )
        )  # official D lr "1" looks like a bug
    elif preset == "smoke":
        c.data.update(dict(image_size=32, window=6, num_pairs=16, holdout=24))
        c.model.update(
            dict(
                g_dim=4,
                g_depth=2,
                g_res=1,
                d_dim=4,
                d_depth=2,
                expr_k=4,
                dyn_hidden=8,
                dyn_latent=2,
                dyn_img_width=4,
            )
        )
        c.identity.update(dict(size=(16, 16), widths=(4, 4, 8, 8, 8), embed_dim=8, steps=0))
        c.infer.update(
            dict(
                stills=("astronaut",),
                num_frames=4,
                samples=2,
                max_videos=1,
                eval_frames=4,
                benchmark=False,
            )
        )
        c.batch_size = 8
        c.num_train_steps = 2
        c.log_every = 1
        c.ckpt_every = 0
    return config_lib.finalize(c, overrides)
