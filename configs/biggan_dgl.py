"""DGL-GAN on BigGAN (arXiv 2112.06502): class-conditional teacher -> student stage 1 -> stage 2.

Presets:
  default     Fashion-MNIST (10 classes) padded 28 -> 32, BigGAN 32x32 arch with tiny widths
              (teacher G_ch 16, student G_ch 8, D_ch 16 for both), teacher first, 2-core CPU:
      python -m jaxpapers.main --config=configs/biggan_dgl.py --workdir=/tmp/biggan_dgl
  cifar10     the official DGL CIFAR test bed (BigGAN-PyTorch CIFAR arch: non-hierarchical,
              G_ch 48 student / 96 teacher, D_ch 48 student / 96 teacher, batch 100 per D step,
              4 D steps, lr 2e-4/2e-4, N(0, 0.02) init, no attention, EMA from itr 1000); needs a
              prepared TFDS cifar10 and a teacher (init_from) or teacher.steps > 0:
      python -m jaxpapers.main --config=configs/biggan_dgl.py:cifar10 --workdir=DIR
  imagenet128 the paper's setting (official BigGAN 128 arch, ch 96 teacher / 48 student, hier z
              120 + shared 128, attention at 64, batch 256 x 8 gradient accumulations as the
              official launch_BigGAN_bs256x8.sh: one trainer step is one micro-batch of 256 and
              every step count below is in micro-steps = 8 x iterations; G/D lr 1e-4/4e-4, Adam
              (0, 0.999, 1e-6), 1 D step, EMA 0.9999 from iteration 20k); the teacher is the
              official 138k release converted to a checkpoint:
      python -m jaxpapers.main --config=configs/biggan_dgl.py:imagenet128 --workdir=DIR \
          --config.data.path=/data/imagenet128 --config.init_from=TEACHER_DIR
  smoke       tiny 32x32 model, 1 teacher step, 1 stage-1 step, then stage 2 (tests).

Phases are driven by the step: [0, teacher.steps) teacher, then ``student.stage1_steps`` steps
with lam = 0, then stage 2 (lam = ``student.lam`` = 0.1, the official value) until
``num_train_steps``. ``batch_size`` counts the real images of one step: ``gan.num_d_steps`` D steps
each take ``batch_size / num_d_steps`` of them (BigGAN-PyTorch's loader also hands over
batch_size * num_D_steps images per iteration).
"""

from __future__ import annotations

import ml_collections

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "cifar10", "imagenet128", "smoke")


def _adam(lr: float, eps: float = 1e-6, accum_steps: int = 1):
    return optim.config(name="adam", lr=lr, b1=0.0, b2=0.999, eps=eps, accum_steps=accum_steps)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("biggan_dgl")
    c.preset = preset
    c.data = ml_collections.ConfigDict(
        dict(name="fashion_mnist", path="", pad_to=32, train_limit=0, **stream.config_keys())
    )
    c.model = ml_collections.ConfigDict(
        dict(
            resolution=32,
            img_channels=1,
            num_classes=10,
            dim_z=64,
            shared_dim=32,
            hier=True,
            g_ch=16,
            d_ch=16,
            g_attn="16",
            d_attn="0",
            sn_eps=1e-6,
            bn_eps=1e-5,
            g_init="ortho",
            d_init="ortho",
            dtype="float32",  # "bfloat16": mixed precision (jaxpapers/layers/precision.py)
        )
    )
    c.gan = ml_collections.ConfigDict(
        dict(
            num_d_steps=2, g_batch_size=0, g_ortho=0.0, d_ortho=0.0, ema_decay=0.999, ema_start=200
        )
    )
    c.teacher = ml_collections.ConfigDict(dict(steps=1000))  # 0 when init_from gives it.
    c.student = ml_collections.ConfigDict(
        dict(g_divisor=2, d_divisor=1, lam=0.1, stage1_steps=500, teacher_sn_update=True)
    )
    c.eval = ml_collections.ConfigDict(
        dict(
            per_class=8,
            use_ema=True,  # False: sample the raw G (short runs, where the EMA lags far behind)
            truncation=0.0,
            fd=True,
            feature_net="fmnist",
            num_samples=2000,
            batch_size=200,
            seed=123,
        )
    )
    c.batch_size = 64
    c.num_train_steps = 2000
    c.log_every = 50
    c.ckpt_every = 500
    lr_g, lr_d = 2e-4, 2e-4
    accum = 1  # optim.accum_steps of G and D: micro-batches per optimizer update
    if preset == "cifar10":
        c.data.update(dict(name="cifar10", pad_to=0))
        c.model.update(
            dict(
                img_channels=3,
                dim_z=128,
                shared_dim=0,
                hier=False,
                g_ch=96,
                d_ch=96,
                g_attn="0",
                d_attn="0",
                g_init="N02",
                d_init="N02",
            )
        )
        c.student.update(dict(g_divisor=2, d_divisor=2, stage1_steps=10_000))
        c.gan.update(dict(num_d_steps=4, ema_decay=0.9999, ema_start=1000))
        c.teacher.steps = 0
        c.batch_size = 400  # 100 per D step x 4 D steps.
        c.num_train_steps = 500 * 50000 // 100 // 4  # 500 epochs as the official CIFAR script.
        c.eval.update(dict(feature_net="inception", num_samples=50_000, per_class=10))
        c.log_every, c.ckpt_every = 100, 2000
    elif preset == "imagenet128":
        # ImageNet (root/<synset>/<image>, every image trains) decoded in grain workers with
        # BigGAN-PyTorch's CenterCropLongEdge + resize to 128.
        c.data.update(dict(name="image_folder", pad_to=0, test_every=0))
        c.data.update(stream.config_keys("stream", stream.PAPER_WORKERS, crop="center"))
        c.model.update(
            dict(
                resolution=128,
                img_channels=3,
                num_classes=1000,
                dim_z=120,
                shared_dim=128,
                hier=True,
                g_ch=96,
                d_ch=96,
                g_attn="64",
                d_attn="64",
            )
        )
        # --batch_size 256 --num_G_accumulations 8 --num_D_accumulations 8: 2048 images per
        # update, BN statistics per micro-batch of 256; step counts are in micro-steps.
        accum = 8
        c.student.update(dict(g_divisor=2, d_divisor=1, stage1_steps=20_000 * accum))
        c.gan.update(dict(num_d_steps=1, ema_decay=0.9999, ema_start=20_000 * accum))
        c.teacher.steps = 0
        c.batch_size = 256
        c.num_train_steps = 150_000 * accum
        c.eval.update(
            dict(feature_net="inception", num_samples=50_000, per_class=4, truncation=0.0)
        )
        c.log_every, c.ckpt_every = 100 * accum, 2000 * accum
        lr_g, lr_d = 1e-4, 4e-4
    elif preset == "smoke":
        c.model.update(dict(dim_z=16, shared_dim=8, g_ch=4, d_ch=4, g_attn="0", d_attn="0"))
        c.data.train_limit = 256
        c.teacher.steps = 1
        c.student.stage1_steps = 1
        c.batch_size = 16
        c.num_train_steps = 4
        c.gan.ema_start = 2
        c.eval.update(dict(per_class=2, fd=False, num_samples=64, batch_size=32))
        c.log_every, c.ckpt_every = 1, 2
    c.optim = ml_collections.ConfigDict(
        dict(g=_adam(lr_g, accum_steps=accum), d=_adam(lr_d, accum_steps=accum))
    )
    return config_lib.finalize(c, overrides)
