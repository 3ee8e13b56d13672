"""StRA: Structure-Regularized Attention (arXiv 2106.06672); see jaxpapers/methods/stra/README.md.

Presets and commands:
  default (CPU, Fashion-MNIST, small StRA-ResNet with 4 bottlenecks, StRA in the last stage):
      python -m jaxpapers.main --config=configs/stra.py --workdir=runs/stra_fmnist
      baselines, same budget: --config.model.block=plain | se | cbam | nonlocal
  faces (CPU, re-ID-style retrieval on AT&T faces: train on 30 ids, retrieve the 10 unseen ones):
      python -m jaxpapers.main --config=configs/stra.py:faces --workdir=runs/stra_faces
      (faces: data.path, else $JAXPAPERS_DATA_DIR/att_faces, else the Olivetti faces)
  market1501 (paper recipe, GPU: StRA-ResNet-50, 256x128, Adam 3e-4, step decay at epoch 20,
      100 epochs, fixbase 8 epochs; needs the extracted Market-1501 folder, no download):
      python -m jaxpapers.main --workdir=runs/stra_market \
          --config=configs/stra.py:market1501,data.path=/data/Market-1501-v15.09.15
  imagenet (ResNet-50 vs StRA-ResNet-50 classification; recipe UNVERIFIED, standard ResNet-50 one;
      needs a prepared TFDS imagenet2012 resized to 224x224):
      python -m jaxpapers.main --config=configs/stra.py:imagenet --workdir=runs/stra_imagenet
  smoke (tests: tiny model on digits, 2 steps):
      python -m jaxpapers.main --config=configs/stra.py:smoke --workdir=/tmp/stra_smoke
The diversity-loss weight ``div_weight`` is not in the official code: our choice, UNVERIFIED.
Expected numbers: the tables in the method README (released checkpoint: Market-1501 mAP 84.2,
rank-1 94.0).
"""

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "fashion_mnist", "faces", "market1501", "imagenet", "smoke")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _small_model(c, width: int, stages, attn_stages, heads: int, ratio: int) -> None:
    c.model.stem = "small"
    c.model.width = width
    c.model.stage_sizes = stages
    c.model.attn_stages = attn_stages
    c.model.heads = heads
    c.model.ratio = ratio


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    c = config_lib.base_config("stra")
    c.preset = preset
    c.label_smoothing = 0.0
    c.div_weight = 0.1  # UNVERIFIED: the official repository does not say how L_div is weighted.
    c.triplet_weight = 0.0
    c.triplet_margin = 0.3
    c.fixbase_steps = 0  # Steps during which only `open_layers` train (torchreid fixbase_epoch).
    c.open_layers = r"layer4_.*|neck_.*|classifier/.*"
    c.eval_batch_size = 256
    c.num_pool_map_images = 8
    c.data.eval_split = "test"
    c.data.crop_pad = 2
    c.data.flip = True
    c.data.erase_prob = 0.0
    c.data.mean = (0.5,)
    c.data.std = (0.5,)
    c.data.num_train_ids = 30
    c.data.update(stream.config_keys())
    # ResNet-50 / StRA-ResNet-50 defaults (official models/StRARes.py); small presets shrink them.
    c.model.num_classes = 10
    c.model.dtype = "float32"  # "bfloat16": mixed precision (jaxpapers/layers/precision.py)
    c.model.block = "stra"  # 'stra' | 'plain' | 'se' | 'cbam' | 'nonlocal' (models in attn_stages)
    c.model.stage_sizes = (3, 4, 6, 3)
    c.model.attn_stages = (3,)
    c.model.width = 64
    c.model.heads = 8
    c.model.kernel_size = 3
    c.model.ratio = 4
    c.model.last_stride = 1
    c.model.stem = "imagenet"
    c.model.neck_dim = 0
    # A torch state_dict (.npz) whose name/shape-matching tensors initialise the model, e.g.
    # torchvision's ImageNet ResNet-50 for the re-ID preset (official init_pretrained_weights).
    c.model.pretrained_npz = ""
    if preset in ("default", "fashion_mnist"):
        c.data.name = "fashion_mnist"
        c.data.image_shape = (28, 28, 1)
        _small_model(c, 16, (1, 1, 1, 1), (3,), 8, 4)
        c.batch_size = 64
        c.num_train_steps = 500  # ~1 s/step on 2 shared CPU cores (README)
        c.log_every = 50
        c.ckpt_every = 250
        c.optim = optim.config(name="adam", lr=2e-3, schedule="cosine", warmup_steps=50)
    elif preset == "faces":
        c.data.name = "att_faces"
        c.data.path = ""  # "": $JAXPAPERS_DATA_DIR/att_faces or Olivetti (data/faces.py)
        c.data.image_shape = (32, 26, 1)  # 112x92 faces, downscaled for the CPU
        c.data.erase_prob = 0.5
        _small_model(c, 16, (1, 1, 1, 1), (3,), 8, 4)
        c.model.num_classes = 30
        c.model.neck_dim = 128
        c.label_smoothing = 0.1
        c.batch_size = 32
        c.num_train_steps = 300
        c.log_every = 50
        c.ckpt_every = 300
        c.eval_batch_size = 50
        c.optim = optim.config(name="adam", lr=1e-3, schedule="cosine", warmup_steps=50)
    elif preset == "market1501":
        steps_per_epoch = 12936 // 32  # Market-1501 train images / batch 32 (official train.py)
        c.data.name = "market1501"
        c.data.path = ""
        c.data.image_shape = (256, 128, 3)
        c.data.crop_pad = 16
        c.data.erase_prob = 0.5
        c.data.mean, c.data.std = IMAGENET_MEAN, IMAGENET_STD
        # bounding_box_train JPEGs decoded in grain workers (the query/gallery evaluation
        # splits are read into memory).
        c.data.update(stream.config_keys("stream", stream.PAPER_WORKERS))
        c.model.num_classes = 751
        c.model.neck_dim = 512
        c.label_smoothing = 0.1
        c.fixbase_steps = 8 * steps_per_epoch
        c.batch_size = 32
        c.num_train_steps = 100 * steps_per_epoch
        c.log_every = 100
        c.ckpt_every = 5 * steps_per_epoch
        c.eval_every = 20 * steps_per_epoch
        c.eval_batch_size = 128
        # torchreid build_optimizer('adam', lr=3e-4): betas (0.9, 0.99), L2 weight decay 5e-4 on
        # every parameter; single_step scheduler, step 20 epochs, gamma 0.1.
        c.optim = optim.config(
            name="adam",
            lr=3e-4,
            b2=0.99,
            weight_decay=5e-4,
            decay_mask="all",
            schedule="piecewise",
            milestones=(20 * steps_per_epoch,),
            decay_factor=0.1,
        )
    elif preset == "imagenet":
        steps_per_epoch = 1281167 // 256
        c.data.name = "imagenet2012"
        c.data.image_shape = (224, 224, 3)
        c.data.eval_split = "validation"
        c.data.crop_pad = 16
        c.data.mean, c.data.std = IMAGENET_MEAN, IMAGENET_STD
        # TFDS imagenet2012's JPEGs decoded in grain workers, centre crop to 224x224.
        c.data.update(stream.config_keys("stream", stream.PAPER_WORKERS, crop="center"))
        c.model.num_classes = 1000
        c.model.last_stride = 2
        c.batch_size = 256
        c.num_train_steps = 90 * steps_per_epoch
        c.log_every = 100
        c.ckpt_every = 5000
        c.eval_every = 10 * steps_per_epoch
        c.optim = optim.config(
            name="momentum",
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="piecewise",
            decay_factor=0.1,
            milestones=tuple(e * steps_per_epoch for e in (30, 60, 80)),
        )
    elif preset == "smoke":
        c.data.name = "digits"
        c.data.image_shape = (8, 8, 1)
        c.data.crop_pad = 1
        c.data.flip = False
        c.data.erase_prob = 0.5
        _small_model(c, 8, (1, 1), (1,), 4, 2)
        c.model.neck_dim = 16
        c.triplet_weight = 1.0
        c.fixbase_steps = 1
        c.open_layers = r"layer2_.*|neck_.*|classifier/.*"
        c.batch_size = 16
        c.eval_batch_size = 64
        c.num_pool_map_images = 2
        c.num_train_steps = 2
        c.log_every = 1
        c.ckpt_every = 1
        c.optim = optim.config(name="adam", lr=1e-3)
    else:
        raise config_lib.unknown_preset(preset, PRESETS)
    return config_lib.finalize(c, overrides)
