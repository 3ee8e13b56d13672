"""TRACE video scene graph generation (HRTree + target-adaptive context aggregation).

Presets and commands:
  default (= synthetic_predcls; CPU, offline synthetic benchmark, PredCls, TRACE tree context):
      python -m jaxpapers.main --config=configs/trace_vidsgg.py --workdir=runs/trace_syn
  synthetic_sgcls (same benchmark, SGCls: object labels predicted by the model):
      python -m jaxpapers.main --config=configs/trace_vidsgg.py:synthetic_sgcls \
          --workdir=runs/trace_syn_sgcls
  ablations on the synthetic benchmark: add ``,model.context=flat`` (full-graph baseline) or
      ``,model.context=none`` (no context) to the preset argument.
  action_genome / vidvrd (paper hyper-parameters; ResNet-50-DC5 + I3D-NL-R50-DC5 on the frames,
      optionally initialised from the official checkpoints). action_genome: data.path = the
      Action Genome folder (annotations/ with the AG pickles and class lists, frames/<video>.mp4/
      <frame>.png, obj_feat/<split>.npy detector box features), the 17-frame clips decoded in
      grain workers (data.pipeline='stream'); vidvrd: key-frame files with frames and precomputed
      detector box features in the format of formats.py under data.path:
      python -m jaxpapers.main --config=configs/trace_vidsgg.py:action_genome,data.path=/data/ag,\
model.resnet2d_weights=/ckpt/res50_1it.pth,model.i3d_weights=/ckpt/i3d_nl_dot_product_r50.pth
      (``,model.backbone=precomputed,data.name=precomputed`` reads the two feature maps from
      key-frame files instead).
  smoke (tests):
      python -m jaxpapers.main --config=configs/trace_vidsgg.py:smoke --workdir=/tmp/trace_smoke
Measured numbers are in jaxpapers/methods/trace_vidsgg/README.md.
"""

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "synthetic_predcls", "synthetic_sgcls", "action_genome", "vidvrd", "smoke")


def _model(c, **kw):
    m = dict(
        num_obj_classes=5,
        num_predicates=8,
        n_max=6,
        clip_len=5,
        feat_dim=64,
        hidden=64,
        groups=4,
        atten_dim=32,
        embed_dim=32,
        pool=5,
        spatial_scale=0.25,
        sampling_ratio=2,
        dropout=0.5,
        context="tree",  # 'tree' (TRACE), 'flat' (full-graph baseline), 'none' (no context)
        mode="predcls",  # 'predcls' | 'sgcls'
        # 'small_cnn' (synthetic frames, CPU) | 'resnet' (ResNet-50-DC5 + I3D-NL-R50-DC5 on
        # frames, paper presets) | 'precomputed' (2D/3D feature maps read from files)
        backbone="small_cnn",
        backbone_channels=32,
        resnet_stages=(3, 4, 6, 3),  # 'resnet': blocks per stage of both backbones
        resnet_width=64,
        resnet2d_weights="",  # official ResNet-50 checkpoint (convert.py), '' = random init
        i3d_weights="",  # official mmaction2 I3D-NL-R50 checkpoint, '' = random init
        temporal_scale=1.0,  # 3D input size / 2D input size (TEMPORAL_SCALES / TEST.SCALE)
        temporal_head="mlp",  # 'mlp' | 'avgpool_fc' (official with I3D_DC5)
        temporal_fusion=True,
        use_freq_bias=True,
        freq_bias_from_data=True,
        glove_path="",
        fg_per_frame=512,
        fg_fraction=0.25,
        obj_loss_weight=0.05,
        det_loss_weight=1.0,
        dtype="float32",  # "bfloat16": mixed precision (jaxpapers/layers/precision.py)
    )
    m.update(kw)
    c.model = config_lib.ConfigDict(m)


def get_config(arg=None):
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    c = config_lib.base_config("trace_vidsgg")
    c.preset = preset
    c.eval_batch_size = 32
    c.eval_ks = (10, 20, 50)
    c.save_pictures = True
    c.data = config_lib.ConfigDict(
        dict(
            name="synthetic",
            path="",
            seed=0,
            image_size=64,
            clip_len=5,
            stride=2,
            n_max=6,
            keys_per_video=4,
            key_gap=6,
            num_train_videos=500,
            num_test_videos=100,
            rel_radius=0.45,
            min_speed=0.5,
            feat2d_shape=(0, 0, 0),
            feat3d_shape=(0, 0, 0),
            frame_shape=(0, 0),
            train_limit=0,  # action_genome: only the first N key frames of a split (0 = all)
            test_limit=0,
            **stream.config_keys(),  # data.pipeline 'stream': Action Genome frames in workers
        )
    )
    if preset in ("default", "synthetic_predcls", "synthetic_sgcls"):
        _model(c, mode="sgcls" if preset == "synthetic_sgcls" else "predcls")
        # Step cost measured at ~0.5-1 CPU-s (batch 8) on the shared 2-core machine under load.
        c.batch_size = 8
        c.num_train_steps = 600
        c.log_every = 50
        c.ckpt_every = 300
        c.optim = optim.config(
            name="adam", lr=1e-3, schedule="cosine", warmup_steps=100, clip_norm=5.0
        )
    elif preset in ("action_genome", "vidvrd"):
        ag = preset == "action_genome"
        # Official configs: SGD momentum 0.9, wd 1e-4, 1 key frame per GPU x 8, warm-up 1/3;
        # AG lr 0.01, 177,330 it, decays at 118,220 / 157,626; VidVRD lr 0.025, 13,000 it, decay
        # at 12,000, warm-up 500. Hidden 1024 (AG) / 256 (VidVRD), attention 256, RoIAlign 7x7.
        _model(
            c,
            num_obj_classes=36 if ag else 35,
            num_predicates=26 if ag else 132,
            n_max=20 if ag else 40,
            clip_len=17,  # key frame +- 8 frames every 4 (HALF_NUMBER_OF_FRAMES, FRAMES_INTERVAL)
            feat_dim=1024,
            hidden=1024 if ag else 256,
            groups=4,
            atten_dim=256,
            embed_dim=200,
            pool=7,
            spatial_scale=1 / 16,
            backbone="resnet",
            temporal_scale=600 / 800 if ag else 320 / 800,  # TEMPORAL_SCALES / SCALES
            temporal_head="avgpool_fc",
            det_loss_weight=0.0,
        )
        # AG: annotations/ + frames/ of the Action Genome download (inputs.action_genome_source),
        # clips decoded in grain workers; VidVRD: key-frame files (formats.load_precomputed).
        c.data.name = "action_genome" if ag else "precomputed"
        if ag:
            c.data.update(stream.config_keys("stream", stream.PAPER_WORKERS))
        c.data.stride = 4  # FRAMES_INTERVAL: clip frames 4 apart around the key frame
        c.data.n_max, c.data.clip_len = c.model.n_max, c.model.clip_len
        c.data.frame_shape = (800, 1333)  # SCALES 800, MAX_SIZE 1333 (padded canvas)
        # With model.backbone=precomputed: the maps of the two backbones read from files.
        c.data.feat2d_shape = (50, 84, 2048)
        c.data.feat3d_shape = (38, 63, 2048)
        c.batch_size = 8
        c.num_train_steps = 177330 if ag else 13000
        c.log_every = 100
        c.ckpt_every = 5000
        c.eval_batch_size = 8
        c.eval_ks = (10, 20, 50, 100) if ag else (50, 100)
        steps = (118220, 157626) if ag else (12000,)
        c.optim = optim.config(
            name="momentum",
            lr=0.01 if ag else 0.025,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="piecewise",
            milestones=steps,
            decay_factor=0.1,
            warmup_steps=500,
        )
    elif preset == "smoke":
        _model(
            c,
            n_max=4,
            clip_len=3,
            feat_dim=16,
            hidden=16,
            groups=4,
            atten_dim=8,
            embed_dim=8,
            pool=3,
            backbone_channels=8,
        )
        c.data.image_size = 32
        c.data.clip_len = 3
        c.data.n_max = 4
        c.data.keys_per_video = 2
        c.data.num_train_videos = 8
        c.data.num_test_videos = 4
        c.batch_size = 8
        c.eval_batch_size = 8
        c.num_train_steps = 2
        c.log_every = 1
        c.ckpt_every = 1
        c.eval_ks = (5, 10)
        c.save_pictures = False
        c.optim = optim.config(name="adam", lr=1e-3)
    else:
        raise config_lib.unknown_preset(preset, PRESETS)
    return config_lib.finalize(c, overrides)
