"""FaceAnime: animate one still with the generator and 3DDP of a finished training run.

    python -m jaxpapers.tools.faceanime_animate --workdir=RUN --image=face.jpg \
        --mode=prediction --out=/tmp/anim            (or --mode=retarget --driving=carphone)

still (image file, 'astronaut' or 'orl:<k>') -> FaceMesh crop -> geometry sequence (3DDP sample,
or the relative pose/expression of a driving clip) -> sparse renders -> generator frames; writes
``anim_<mode>.mp4`` and ``anim_<mode>_strip.png`` into --out (default: the run's workdir).
"""

from __future__ import annotations

import os

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program (importing the module defines none)."""
    flags.DEFINE_string("workdir", None, "A finished faceanime training run.")
    flags.DEFINE_string(
        "config",
        "configs/faceanime.py",
        "The run's config as given to jaxpapers.main (file.py[:preset,k=v]).",
    )
    flags.DEFINE_string("image", None, "Image file, 'astronaut' or 'orl:<k>'.")
    flags.DEFINE_enum("mode", "prediction", ["prediction", "retarget"], "Animation mode.")
    flags.DEFINE_string("driving", "carphone_pristine.mp4", "Driving clip (retarget mode).")
    flags.DEFINE_integer("frames", 0, "Frames to generate (0: the config's infer.num_frames).")
    flags.DEFINE_integer("seed", 0, "Seed of the 3DDP sample (prediction mode).")
    flags.DEFINE_string("out", "", "Output folder (default: --workdir).")


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    if not F.workdir or not F.image:
        raise ValueError("--workdir (a finished faceanime run) and --image are required.")
    if not os.path.isdir(F.workdir):
        raise ValueError(f"--workdir={F.workdir!r} is not a directory.")
    if F.frames < 0:
        raise ValueError(f"--frames must be >= 0, got {F.frames}.")
    path, _, arg = F.config.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"--config file {path!r} does not exist.")

    import jax

    from jaxpapers import checkpoint, config_lib
    from jaxpapers.data import face_video
    from jaxpapers.methods.faceanime import inference, steps

    config = config_lib.load_config_file(path, arg or None)
    size = int(config.data.image_size)
    still, lm = inference.crop_still(inference.read_still(F.image), size)
    target = steps.init_state(jax.random.key(0), config, prepared=steps.prepare(config))
    try:
        state = checkpoint.restore_dir(F.workdir, target)
    except checkpoint.CheckpointError as e:
        raise ValueError(str(e)) from e
    drv = None
    if F.mode == "retarget":
        v = face_video.load_face_video(F.driving, size)
        drv = v.landmarks[v.found]
    res = inference.animate(
        state,
        config,
        still,
        lm,
        mode=F.mode,
        num_frames=F.frames or None,
        seed=F.seed,
        driving_lm=drv,
    )
    out = F.out or F.workdir
    print(inference.save_outputs(out, f"anim_{F.mode}", still, res, config.infer.fps))


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)
