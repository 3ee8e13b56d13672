"""DGL-GAN on StyleGAN2 (arXiv 2112.06502): teacher -> student stage 1 -> stage 2 in one job.

Presets:
  default       the shipped Fashion-MNIST teacher (``teacher`` preset's networks, read from
                ``jaxpapers/methods/stylegan2_dgl/weights/fmnist_teacher.msgpack``, hash-checked),
                then the student (synthesis widths / 2, 1 mapping layer; its G started from
                the teacher's most relied-on channels, ``student.init``) for 600 stage-1 +
                600 stage-2 steps and one evaluation (teacher-vs-student table and grid);
                ~12 min on 2 CPU cores:
      python -m jaxpapers.main --config=configs/stylegan2_dgl.py --workdir=/tmp/sg2dgl
  uncompressed  the same with the student as wide and deep as the teacher ("DGL on the
                uncompressed model"):
      python -m jaxpapers.main --config=configs/stylegan2_dgl.py:uncompressed --workdir=/tmp/sg2u
  teacher       the Fashion-MNIST teacher from scratch: the official ``cifar`` recipe (2 mapping
                layers, no path-length reg, no style mixing, gamma 0.01) at widths 2 cores can
                train (64 channels at every resolution; batch 32; 30k steps, hours); the export
                of its step 12,500 (``python -m jaxpapers.tools.export_teacher``) is the shipped
                teacher:
      python -m jaxpapers.main --config=configs/stylegan2_dgl.py:teacher --workdir=/tmp/sg2t
                its training goes on from the shipped file's step (fresh Adam states) with
                ``--config.teacher.continue_from=fmnist_teacher.msgpack``.
  scratch       the whole pipeline in one job from scratch with a tiny teacher (fmap_max 16,
                8 mapping layers, batch 16): 600 teacher steps, 200 stage-1, 200 stage-2:
      python -m jaxpapers.main --config=configs/stylegan2_dgl.py:scratch --workdir=/tmp/sg2s
  ffhq256       paper-style StyleGAN2 at 256 (config-f widths, batch 32, lr 0.002, Adam (0, 0.99),
                student g_divisor 2); needs a 256x256 image folder and a teacher checkpoint:
      python -m jaxpapers.main --config=configs/stylegan2_dgl.py:ffhq256 --workdir=DIR \
          --config.data.path=/data/ffhq256 --config.init_from=TEACHER_DIR
  ffhq1024      the paper's setting (config-f 1024, teacher = official stylegan2-ffhq-config-f.pkl
                converted with
                ``python -m jaxpapers.tools.convert_stylegan2 --pkl=F --out=TEACHER_DIR``):
      python -m jaxpapers.main --config=configs/stylegan2_dgl.py:ffhq1024 --workdir=DIR \
          --config.data.path=/data/ffhq --config.init_from=TEACHER_DIR
  smoke         tiny 8x8 model, 1 teacher step, 1 stage-1 step, then stage 2 (tests).

Phases are driven by the step: [0, teacher.steps) teacher, then ``student.stage1_steps`` stage-1
steps (alpha = 0), then stage 2 (alpha = ``student.alpha``) until ``num_train_steps``. With
``init_from`` (a teacher checkpoint: an earlier run of this job or a converted official pickle),
set ``teacher.steps=0``. alpha 0.1 and the stage lengths are our choices (see the README).
"""

from __future__ import annotations

import ml_collections

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "uncompressed", "teacher", "scratch", "ffhq256", "ffhq1024", "smoke")
SHIPPED_TEACHER = "fmnist_teacher.msgpack"  # In jaxpapers/methods/stylegan2_dgl/weights/.


COMPRESS_STAGE1, COMPRESS_STAGE2 = 600, 600  # The default preset's student steps (README).


def _adam(lr: float, reg_interval: int, b2: float = 0.99, mapping_mul: float = 0.01):
    """Adam(0, 0.99, 1e-8) with the official lazy-regularization correction c = I/(I+1)."""
    c = reg_interval / (reg_interval + 1) if reg_interval > 0 else 1.0
    mults = ((r"mapping/.*", mapping_mul),) if mapping_mul != 1.0 else ()
    return optim.config(name="adam", lr=lr * c, b1=0.0, b2=b2**c, eps=1e-8, lr_multipliers=mults)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("stylegan2_dgl")
    c.preset = preset
    c.data = ml_collections.ConfigDict(
        dict(
            name="fashion_mnist",
            path="",
            image_size=(32, 32),
            channels=1,
            test_every=5,
            pad_to=32,
            train_limit=0,
            **stream.config_keys(),
        )
    )
    c.model = ml_collections.ConfigDict(
        dict(
            resolution=32,
            img_channels=1,
            z_dim=128,
            w_dim=128,
            mapping_layers=8,
            fmap_base=256,
            fmap_max=16,
            mbstd_group_size=4,
            mbstd_num_features=1,
            resample_filter=(1, 3, 3, 1),
            w_avg_beta=0.995,
            # "bfloat16": mixed precision (jaxpapers/layers/precision.py) in the blocks of the
            # `bf16_res` highest resolutions (official num_fp16_res; README "Mixed precision").
            dtype="float32",
            bf16_res=4,
            conv_clamp=0.0,  # Official conv_clamp (clip conv outputs to +-X); 0 = off.
        )
    )
    # teacher.steps = 0 when init_from or weights (a teacher file, see steps.prepare) give it.
    # continue_from: a teacher file of a partly trained teacher, whose training goes on from it.
    c.teacher = ml_collections.ConfigDict(dict(steps=600, weights="", continue_from=""))
    c.student = ml_collections.ConfigDict(
        dict(
            g_divisor=2,
            d_divisor=1,
            alpha=0.1,
            stage1_steps=200,
            mapping_layers=0,
            w_dim=0,
            init="scratch",  # "teacher": G from the teacher's most relied-on channels (README).
        )
    )
    c.loss = ml_collections.ConfigDict(
        dict(
            r1_gamma=0.1,
            d_reg_interval=16,
            pl_weight=2.0,
            pl_decay=0.01,
            pl_batch_shrink=2,
            g_reg_interval=4,
            style_mixing_prob=0.9,
        )
    )
    c.ema = ml_collections.ConfigDict(dict(kimg=2.0, rampup=0.05))
    c.aug = ml_collections.ConfigDict(dict(mirror=False))
    c.eval = ml_collections.ConfigDict(
        dict(
            grid_size=64,
            grid_rows=8,
            truncation_psi=1.0,
            fd=True,
            feature_net="fmnist",
            num_samples=2000,
            batch_size=200,
            seed=123,
            score_teacher=True,  # False: FD etc. of the student only (tools.dgl_compare).
        )
    )
    c.batch_size = 16
    c.num_train_steps = 1000
    c.log_every = 50
    c.eval_every = 500
    c.ckpt_every = 250
    lr = 0.0025
    if preset == "scratch":
        pass  # The base settings above: a tiny teacher trained in the job itself.
    elif preset in ("teacher", "default", "uncompressed"):
        # The official stylegan2-ada `cifar` configuration's recipe (2 mapping layers, pl_weight 0,
        # no style mixing, gamma 0.01, lr 0.0025), at widths 2 cores can train in hours.
        c.model.update(dict(z_dim=128, w_dim=128, mapping_layers=2, fmap_base=1024, fmap_max=64))
        c.loss.update(dict(r1_gamma=0.01, pl_weight=0.0, style_mixing_prob=0.0))
        c.ema = ml_collections.ConfigDict(dict(kimg=10.0, rampup=0.05))
        c.teacher.steps = 30_000
        c.student.stage1_steps = 0
        c.num_train_steps = 30_000
        c.batch_size = 32
        c.eval.update(dict(num_samples=2000))
        c.log_every, c.eval_every, c.ckpt_every = 100, 2500, 500
        if preset != "teacher":
            # The shipped teacher (a `teacher` run exported with tools.export_teacher), then the
            # student's two stages sized for ~15 min on 2 CPU cores. One mapping layer (of 2)
            # takes the student G to 37% of the teacher's params and 25% of its MACs (README);
            # `uncompressed`: the student as wide and deep as the teacher.
            c.teacher.update(dict(steps=0, weights=SHIPPED_TEACHER))
            c.student.update(
                dict(g_divisor=2, mapping_layers=1, stage1_steps=COMPRESS_STAGE1, init="teacher")
            )
            if preset == "uncompressed":  # From scratch: started from the teacher it would be it.
                c.student.update(dict(g_divisor=1, mapping_layers=0, init="scratch"))
            c.num_train_steps = COMPRESS_STAGE1 + COMPRESS_STAGE2
            c.log_every, c.eval_every, c.ckpt_every = 50, c.num_train_steps, 250
    elif preset in ("ffhq256", "ffhq1024"):
        res = 256 if preset == "ffhq256" else 1024
        c.data = ml_collections.ConfigDict(
            dict(
                name="image_folder",
                path="",
                image_size=(res, res),
                channels=3,
                test_every=50,
                pad_to=0,
                train_limit=0,
                # FFHQ's PNGs (any folder tree: images1024x1024/00000/...) decoded in grain
                # workers at the model resolution.
                **stream.config_keys("stream", stream.PAPER_WORKERS, layout="flat"),
            )
        )
        c.model.update(
            dict(
                resolution=res, img_channels=3, z_dim=512, w_dim=512, fmap_base=16384, fmap_max=512
            )
        )  # config-f widths.
        c.loss.r1_gamma = 10.0 if res == 1024 else 1.0  # DGL/StyleGAN2 FFHQ: 10; paper256 cfg: 1.
        c.ema = ml_collections.ConfigDict(dict(kimg=10.0, rampup=0.0))
        c.aug.mirror = True
        c.teacher.steps = 0  # The teacher comes from init_from.
        c.student.stage1_steps = 200_000  # Our choice (unverified), ~6.4M images at batch 32.
        c.num_train_steps = 1_000_000  # ~30M images, the order of DGL's 30-60M image runs.
        c.eval.update(
            dict(feature_net="inception", num_samples=50_000, grid_size=16, grid_rows=4, fd=True)
        )
        c.log_every, c.ckpt_every = 100, 5000
        c.batch_size = 32
        lr = 0.002
    elif preset == "smoke":
        c.model.update(
            dict(
                resolution=8,
                z_dim=16,
                w_dim=16,
                mapping_layers=2,
                fmap_base=64,
                fmap_max=8,
                mbstd_group_size=4,
            )
        )
        c.data.pad_to = 32
        c.data.train_limit = 64
        c.teacher.steps = 1
        c.student.stage1_steps = 1
        c.batch_size = 8
        c.num_train_steps = 4
        c.ema.kimg = 0.01
        c.eval.update(dict(grid_size=16, grid_rows=4, fd=False, num_samples=64, batch_size=32))
        c.log_every, c.ckpt_every = 1, 2
    c.optim = ml_collections.ConfigDict(
        dict(
            g=_adam(lr, c.loss.g_reg_interval), d=_adam(lr, c.loss.d_reg_interval, mapping_mul=1.0)
        )
    )
    return config_lib.finalize(c, overrides)
