"""FROM (occluded face recognition by masking corrupted features), both phases in one run.

Phase 1 (steps < clean_steps) trains the clean baseline; phase 2 fine-tunes FROM from it with
synthesized occlusions; `evaluate` compares baseline vs FROM on clean and occluded pairs.

Presets and commands:
  default (CPU, ORL faces at 56x48, 30 training identities, verification on the 10 others):
      python -m jaxpapers.main --config=configs/from_occlusion.py --workdir=runs/from_orl
      (ablations: --config.model.variant=2d | fc; seeds: --config.seed=1)
  casia_webface (paper scale: LResNet50E-IR 112x96, CASIA-WebFace 10,572 ids aligned to 112x96,
      batch 512, SGD momentum 0.9 wd 5e-4; phase 1 lr 0.1 for 40 epochs (x0.1 at 15, 30), phase 2
      lr 0.01 for 40 epochs (x0.1 at 10, 25), K=5 (226 patterns), lambda=1, clean ratio 1/3;
      LFW pairs with occluded second images).  Training data: data.name='casia_webface', a
      root/<identity>/<image> folder decoded lazily (jaxpapers/data/face_recognition.py);
      evaluation: the LFW pairs split (standard pairs.txt, header '10<TAB>300', checked with its
      images before training starts):
      python -m jaxpapers.main --config=configs/from_occlusion.py:casia_webface \
          --workdir=runs/from_casia --config.data.path=/data/CASIA-WebFace-112x96 \
          --config.eval.lfw_dir=/data/lfw-112x96 --config.eval.pairs_file=/data/lfw/pairs.txt
      (real PDSN occluders: --config.occlusion.folder=/data/occluder; an MS1M set instead:
      --config.data.name=ms1m --config.data.path=/data/faces_emore (train.rec/train.idx or a
      folder) --config.model.num_classes=85742 '--config.data.image_size=(112,112)')
  smoke (tests: tiny net on 32x24 inputs, one step per phase):
      python -m jaxpapers.main --config=configs/from_occlusion.py:smoke --workdir=/tmp/from_smoke
Face data (ORL layout): data.path if set, else $JAXPAPERS_DATA_DIR/att_faces, else
scikit-learn's Olivetti faces (the same 400 faces at 64x64, downloaded once); see
jaxpapers/data/faces.py.
Expected numbers: README.md in jaxpapers/methods/from_occlusion (paper: LFW 99.38, occluded LFW
94.70 vs baseline 82.05, TAR@FAR=1e-4 65.03 vs 36.10).
"""

import ml_collections

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "casia_webface", "smoke")
ORL = ""  # "": $JAXPAPERS_DATA_DIR/att_faces or Olivetti (jaxpapers/data/faces.py)
CASIA_IMAGES = 494_414  # CASIA-WebFace image count [unverified for a given alignment dump]


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("from_occlusion")
    c.preset = preset
    c.clean_steps = 0  # phase 1 length; the rest of num_train_steps is phase 2
    c.data = ml_collections.ConfigDict(
        dict(
            name="image_folder",
            path=ORL,
            image_size=(56, 48),
            channels=3,
            test_every=0,
            grayscale=True,
            n_train_ids=30,
            in_memory=True,
            format="auto",  # casia_webface / ms1m only: folder | rec | auto
            **stream.config_keys(),
        )
    )
    c.model = ml_collections.ConfigDict(
        dict(
            widths=(16, 16, 32, 64, 128),
            depths=(1, 1, 2, 1),
            embed_dim=128,
            dropout=0.5,
            fpn_features=64,
            variant="3d",
            dtype="float32",  # "bfloat16": mixed precision (jaxpapers/layers/precision.py)
            num_classes=30,
            margin="cosface",
            scale=30.0,
            margin_m=0.35,
        )
    )
    c.loss = ml_collections.ConfigDict(dict(weight_pred=1.0))  # start.sh; yaml WEIGHT_PRED=10
    c.occlusion = ml_collections.ConfigDict(
        dict(grid=4, clean_ratio=3, folder="", seed=0, variants=3)
    )
    c.eval = ml_collections.ConfigDict(
        dict(
            num_pairs=600,
            pairs_seed=0,
            occ_seed=100,
            occ_factor=2.0,
            far=1e-2,
            pairs_file="",
            lfw_dir="",
            pairs_ext="jpg",
        )
    )

    if preset == "default":
        c.batch_size = 64
        c.clean_steps = 600
        c.num_train_steps = 1200
        c.log_every = 100
        c.ckpt_every = 600
        c.optim = ml_collections.ConfigDict(
            dict(
                clean=optim.config(
                    name="momentum",
                    lr=0.1,
                    schedule="piecewise",
                    milestones=(300, 450),
                    weight_decay=5e-4,
                    decay_mask="all",
                ),
                mask=optim.config(
                    name="momentum",
                    lr=0.01,
                    schedule="piecewise",
                    milestones=(300, 450),
                    weight_decay=5e-4,
                    decay_mask="all",
                ),
            )
        )
    elif preset == "casia_webface":
        spe = CASIA_IMAGES // 512
        c.data.update(
            dict(
                name="casia_webface",
                path="/data/CASIA-WebFace-112x96",
                image_size=(112, 96),
                grayscale=False,
                in_memory=False,
                n_train_ids=0,
                # The lazily decoded identity folder / RecordIO set, decoded in grain workers.
                **stream.config_keys("stream", stream.PAPER_WORKERS),
            )
        )
        c.model.update(
            dict(
                widths=(64, 64, 128, 256, 512),
                depths=(3, 4, 14, 3),
                embed_dim=512,
                fpn_features=256,
                num_classes=10_572,
            )
        )
        c.occlusion.grid = 5
        c.eval.update(dict(far=1e-4, lfw_dir="/data/lfw-112x96", pairs_file="/data/lfw/pairs.txt"))
        c.batch_size = 512
        c.clean_steps = 40 * spe
        c.num_train_steps = 80 * spe
        c.log_every = 100
        c.ckpt_every = 2000
        c.eval_every = 5 * spe
        c.optim = ml_collections.ConfigDict(
            dict(
                clean=optim.config(
                    name="momentum",
                    lr=0.1,
                    schedule="piecewise",
                    milestones=(15 * spe, 30 * spe),
                    weight_decay=5e-4,
                    decay_mask="all",
                ),
                mask=optim.config(
                    name="momentum",
                    lr=0.01,
                    schedule="piecewise",
                    milestones=(10 * spe, 25 * spe),
                    weight_decay=5e-4,
                    decay_mask="all",
                ),
            )
        )
    elif preset == "smoke":
        c.data.image_size = (32, 24)
        c.model.update(
            dict(widths=(4, 4, 8, 8, 16), depths=(1, 1, 1, 1), embed_dim=8, fpn_features=8)
        )
        c.occlusion.update(dict(grid=2, variants=1))
        c.eval.num_pairs = 100
        c.batch_size = 16
        c.clean_steps = 1
        c.num_train_steps = 2
        c.log_every = 1
        c.ckpt_every = 0
        c.optim = ml_collections.ConfigDict(
            dict(
                clean=optim.config(name="momentum", lr=0.1, weight_decay=5e-4, decay_mask="all"),
                mask=optim.config(name="momentum", lr=0.01, weight_decay=5e-4, decay_mask="all"),
            )
        )
    return config_lib.finalize(c, overrides)
