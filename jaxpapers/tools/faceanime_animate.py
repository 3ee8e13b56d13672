"""FaceAnime: animate one still with the generator and 3DDP of a finished training run.

    python -m jaxpapers.tools.faceanime_animate --workdir=RUN --image=face.jpg \
        --mode=prediction --out=/tmp/anim            (or --mode=retarget --driving=carphone)

still (image file, 'astronaut' or 'orl:<k>') -> FaceMesh crop -> geometry sequence (3DDP sample,
or the relative pose/expression of a driving clip) -> sparse renders -> generator frames; writes
``anim_<mode>.mp4`` and ``anim_<mode>_strip.png`` into --out (default: the run's workdir).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished faceanime training run.")
_CONFIG = flags.DEFINE_string(
    "config",
    "configs/faceanime.py",
    "The run's config as given to jaxpapers.main (file.py[:preset,k=v]).",
)
_IMAGE = flags.DEFINE_string("image", None, "Image file, 'astronaut' or 'orl:<k>'.")
_MODE = flags.DEFINE_enum("mode", "prediction", ["prediction", "retarget"], "Animation mode.")
_DRIVING = flags.DEFINE_string("driving", "carphone_pristine.mp4", "Driving clip (retarget).")
_FRAMES = flags.DEFINE_integer("frames", 0, "Frames to generate (0: the config's).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the 3DDP sample (prediction).")
_OUT = flags.DEFINE_string("out", "", "Output folder (default: --workdir).")


def _fail(msg: str) -> None:
    print(f"faceanime_animate: {msg}", file=sys.stderr)
    sys.exit(2)


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; see --help.")
    if not _WORKDIR.value or not _IMAGE.value:
        _fail("--workdir (a finished faceanime run) and --image are required.")
    if not os.path.isdir(_WORKDIR.value):
        _fail(f"--workdir={_WORKDIR.value!r} is not a directory.")
    if _FRAMES.value < 0:
        _fail(f"--frames must be >= 0, got {_FRAMES.value}.")
    path, _, arg = _CONFIG.value.partition(":")
    if not os.path.isfile(path):
        _fail(f"--config file {path!r} does not exist.")

    import jax

    from jaxpapers import checkpoint, config_lib
    from jaxpapers.data import face_video
    from jaxpapers.methods.faceanime import inference, steps

    try:
        config = config_lib.load_config_file(path, arg or None)
    except ValueError as e:
        _fail(str(e))
    try:
        still, lm = inference.crop_still(
            inference.read_still(_IMAGE.value), int(config.data.image_size)
        )
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    target = steps.init_state(jax.random.key(0), config, prepared=steps.prepare(config))
    try:
        state = checkpoint.restore_dir(_WORKDIR.value, target)
    except (FileNotFoundError, checkpoint.CheckpointError) as e:
        _fail(str(e).splitlines()[0])
    drv = None
    if _MODE.value == "retarget":
        v = face_video.load_face_video(_DRIVING.value, int(config.data.image_size))
        drv = v.landmarks[v.found]
    res = inference.animate(
        state,
        config,
        still,
        lm,
        mode=_MODE.value,
        num_frames=_FRAMES.value or None,
        seed=_SEED.value,
        driving_lm=drv,
    )
    out = _OUT.value or _WORKDIR.value
    print(inference.save_outputs(out, f"anim_{_MODE.value}", still, res, config.infer.fps))


if __name__ == "__main__":
    app.run(main)
