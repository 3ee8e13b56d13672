"""StyleGAN2 G+D iteration and lazy R1 phase at 32x32 (official ``cifar`` shapes) on CPU, JSON out.

    python -m benchmarks.stylegan2_step --steps=2 --out=sg2.json
    python -m benchmarks.stylegan2_step --what=plain --steps=2
    python -m benchmarks.stylegan2_step --network=teacher --steps=3

The ``stylegan2_dgl`` train step (teacher stage) with the official stylegan2-ada ``cifar``
configuration's network: resolution 32, RGB, z = w = 512, 2 mapping layers, synthesis/D widths
256 at 4-16 and 128 at 32 (``fmap_base`` 2048, ``fmap_max`` 256), batch 32, minibatch-std group
32, no path-length regularization and no style mixing (the ``cifar`` spec switches both off),
R1 gamma 0.01 every 16 D steps. The step's phases are static (``phase(config, step)`` ->
(stage, pl, r1)): ``plain`` times the phase without regularizers (one full G+D iteration),
``r1`` the phase that adds the lazy R1 update; the R1 cost is their difference. Each is AOT
compiled (reported apart) and timed after ``--warmup`` untimed steps on random uint8 images.
``--network=teacher`` times the ``configs/stylegan2_dgl.py:teacher`` preset's network and recipe
instead (the Fashion-MNIST teacher: 1 channel, z = w = 128, 64 channels at every resolution).
"""

from __future__ import annotations

import importlib.util
import os

import jax
import numpy as np
from absl import app, flags

from benchmarks import _timing
from jaxpapers import methods, optim

_WHAT = flags.DEFINE_list("what", ["plain", "r1"], "Phases to time: plain, r1.")
_STEPS = flags.DEFINE_integer("steps", 2, "Timed steps per phase (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed warm-up steps per phase.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_OUT = flags.DEFINE_string("out", "", "JSON output path (printed in any case).")
_NETWORK = flags.DEFINE_enum(
    "network", "cifar", ["cifar", "teacher"], "cifar shapes or the teacher preset."
)

CIFAR = (
    "model.resolution=32,model.img_channels=3,model.z_dim=512,model.w_dim=512,"
    "model.mapping_layers=2,model.fmap_base=2048,model.fmap_max=256,model.mbstd_group_size=32,"
    "loss.pl_weight=0,loss.style_mixing_prob=0,loss.r1_gamma=0.01,loss.d_reg_interval=16,"
    "teacher.steps=1000000,num_train_steps=2000000"
)


def preset_config(arg: str):
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "stylegan2_dgl.py")
    spec = importlib.util.spec_from_file_location("stylegan2_dgl_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def cifar_config(batch: int):
    return preset_config(f"scratch,{CIFAR},batch_size={batch}")


def main(argv):
    del argv
    if _NETWORK.value == "cifar":
        config = cifar_config(_BATCH.value)
    else:
        config = preset_config(f"teacher,batch_size={_BATCH.value}")
    method = methods.get("stylegan2_dgl")
    phases = {"plain": method.phase(config, 1), "r1": method.phase(config, 0)}
    if tuple(phases["plain"]) != (0, False, False) or tuple(phases["r1"]) != (0, False, True):
        raise RuntimeError(f"Unexpected phases {phases}; the step's phase rule changed.")
    unknown = set(_WHAT.value) - set(phases)
    if unknown:
        raise app.UsageError(f"--what takes plain and/or r1, got {sorted(unknown)}.")
    spec = method.input_spec(config)
    rng = np.random.default_rng(0)
    batch = {k: jax.numpy.asarray(rng.integers(0, 256, v.shape, np.uint8)) for k, v in spec.items()}
    abstract = jax.eval_shape(lambda k: method.init_state(k, config), jax.random.key(0))
    widths = {  # Conv output widths of the teacher G, to check the configured shapes.
        optim.param_path(path): leaf.shape[-1]
        for path, leaf in jax.tree_util.tree_leaves_with_path(abstract.teacher.g)
        if optim.param_path(path).endswith("conv1/weight")
    }
    result = {
        "workload": f"stylegan2_{_NETWORK.value}_res32",
        "framework": "jax",
        "batch": config.batch_size,
        "g_conv1_widths": widths,
        "phases": {},
        **_timing.environment(),
    }
    for name in _WHAT.value:
        ph = phases[name]
        st = method.init_state(jax.random.key(0), config)
        step = lambda s, b, ph=ph: method.train_step(s, b, config=config, phase=ph)
        timing = _timing.time_compiled(step, (st, batch), _STEPS.value, _WARMUP.value)
        result["phases"][name] = {"phase": list(ph), **timing}
    p = result["phases"]
    if "plain" in p and "r1" in p:
        result["r1_update_seconds"] = round(
            p["r1"]["step_seconds_mean"] - p["plain"]["step_seconds_mean"], 4
        )
    if "plain" in p:
        result["iterations_per_second"] = round(1 / p["plain"]["step_seconds_mean"], 4)
    _timing.emit(result, _OUT.value)


if __name__ == "__main__":
    app.run(main)
