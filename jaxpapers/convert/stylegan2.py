"""Official TensorFlow StyleGAN2 pickles -> this suite's param trees, without TensorFlow.

Usage:
    python -m jaxpapers.tools.convert_stylegan2 --pkl stylegan2-ffhq-config-f.pkl --out TEACHER_DIR

The pickle (NVlabs/stylegan2, used by DGL-GAN as its teacher) is a tuple (G, D, Gs) of
``dnnlib.tflib.network.Network`` objects whose state holds ``variables`` (list of (name, numpy
array)) and ``components`` (sub-networks, e.g. ``mapping``/``synthesis``). A pickle can execute
code, so it is read with a restricted unpickler (`jaxpapers.safe_io`) that admits only that class
(replaced by an inert stub, its ``build_module_src`` never run) and the checked NumPy/stdlib
reconstructors arrays need; anything else is refused.

Name/layout mapping (official -> ours, see jaxpapers/layers/stylegan2.py):
* ``mapping/Dense{i}/weight|bias`` -> ``mapping/fc{i}``, multiplied by the mapping lr multiplier
  (0.01): we keep the multiplier in the optimizer, the official code in the parametrization.
* ``synthesis/4x4/Const/const`` [1,C,4,4] -> ``synthesis/const`` [4,4,C].
* ``synthesis/{r}x{r}/Conv0_up|Conv1|ToRGB`` -> ``b{r}_conv0|b{r}_conv1|b{r}_torgb`` (HWIO as is;
  ``mod_bias`` kept without the +1 because our layer adds it, as TF does). TF's
  ``upsample_conv_2d`` flips the kernel before ``conv2d_transpose``, i.e. it acts as a correlation
  with the stored kernel on the zero-inserted input, which is what our up-conv computes: no flip.
* D ``{r}x{r}/FromRGB|Conv0|Conv1_down|Skip`` -> ``b{r}_fromrgb|conv0|conv1|skip``; ``4x4/Conv``
  -> ``b4_conv``; ``4x4/Dense0`` -> ``b4_fc`` (rows reordered from NCHW to NHWC flattening);
  ``Output`` -> ``b4_out``.
* ``dlatent_avg`` -> ``w_avg``. Constant noise buffers (``noise{j}``) are not used (random noise).
"""

from __future__ import annotations

import io
import json
import os
import pickle
from typing import Any

import numpy as np

from jaxpapers import safe_io
from jaxpapers.layers import stylegan2 as sg

MAPPING_LR_MUL = 0.01


class TFNetworkStub:
    """Inert stand-in for ``dnnlib.tflib.network.Network``: it only stores the pickled state."""

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("Network state is not a dict; not a StyleGAN2 pickle.")
        self.state = state

    @property
    def variables(self) -> list:
        return list(self.state.get("variables", []))

    @property
    def components(self) -> dict:
        return dict(self.state.get("components", {}))

    @property
    def static_kwargs(self) -> dict:
        return dict(self.state.get("static_kwargs", {}))


class RestrictedUnpickler(safe_io.RestrictedUnpickler):
    """Admits only the TF Network class (as a stub), dnnlib's EasyDict (a plain dict) and the
    checked NumPy/container reconstructors of `jaxpapers.safe_io` (no bare ``numpy.ndarray``
    constructor: NumPy's own pickles name it only as an argument of ``_reconstruct``)."""

    ALLOWED = {
        **safe_io.NUMPY_GLOBALS,
        **safe_io.CONTAINER_GLOBALS,
        ("dnnlib.tflib.network", "Network"): TFNetworkStub,
        ("dnnlib.util", "EasyDict"): safe_io.EasyDictStub,
    }

    def __init__(self, file, where: str = "<StyleGAN2 pickle>"):
        super().__init__(file, self.ALLOWED, where=where)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except safe_io.UnsafeFileError:
            raise safe_io.UnsafeFileError(
                f"{self.where}: Refusing to load {module}.{name}: the StyleGAN2 TF pickle format "
                "needs only dnnlib.tflib.network.Network and NumPy arrays, and a pickle naming "
                "anything else could run code. Is this really an official StyleGAN2 TF pickle?"
            ) from None


def load_pickle(
    data: bytes, where: str = "<StyleGAN2 pickle>"
) -> tuple[TFNetworkStub, TFNetworkStub, TFNetworkStub]:
    try:
        nets = RestrictedUnpickler(io.BytesIO(data), where).load()
    except safe_io.UnsafeFileError:
        raise
    except Exception as e:  # noqa: BLE001 - the C unpickler raises many types on bad input.
        raise ValueError(
            f"{where}: not a valid StyleGAN2 TF pickle ({type(e).__name__}: {e})."
        ) from e
    if not (
        isinstance(nets, tuple)
        and len(nets) == 3
        and all(isinstance(n, TFNetworkStub) for n in nets)
    ):
        raise ValueError(f"{where}: expected a pickled tuple (G, D, Gs) of dnnlib Network objects.")
    return nets


def collect_vars(net: TFNetworkStub, prefix: str = "") -> dict[str, np.ndarray]:
    """Flat {'component/.../var': array} of a network and its components."""
    out = {prefix + n: np.asarray(v) for n, v in net.variables}
    for cname, comp in net.components.items():
        out.update(collect_vars(comp, prefix + cname + "/"))
    return out


def _get(v: dict, name: str) -> np.ndarray:
    if name not in v:
        raise KeyError(f"Variable {name!r} missing from the pickle (have e.g. {sorted(v)[:5]}).")
    return np.asarray(v[name], np.float32)


def _layer(v: dict, tf: str, bias: bool = True, mod: bool = False, noise: bool = False) -> dict:
    p = {"weight": _get(v, tf + "/weight")}
    if bias:
        p["bias"] = _get(v, tf + "/bias")
    if mod:
        p["mod_weight"] = _get(v, tf + "/mod_weight")
        p["mod_bias"] = _get(v, tf + "/mod_bias")
    if noise:
        p["noise_strength"] = _get(v, tf + "/noise_strength").reshape(())
    return p


def _log2(resolution: int) -> int:
    return int(round(np.log2(resolution)))


def convert_generator(v: dict, resolution: int) -> dict:
    """Flat TF variables of a G (components mapping/, synthesis/) -> our G params."""
    mapping = {}
    i = 0
    while f"mapping/Dense{i}/weight" in v:
        mapping[f"fc{i}"] = {
            "weight": _get(v, f"mapping/Dense{i}/weight") * MAPPING_LR_MUL,
            "bias": _get(v, f"mapping/Dense{i}/bias") * MAPPING_LR_MUL,
        }
        i += 1
    if not mapping:
        raise KeyError("No mapping/Dense0 in the generator: not a StyleGAN2 G.")
    s = "synthesis/"
    syn = {
        "const": _get(v, s + "4x4/Const/const")[0].transpose(1, 2, 0),
        "b4_conv1": _layer(v, s + "4x4/Conv", mod=True, noise=True),
        "b4_torgb": _layer(v, s + "4x4/ToRGB", mod=True),
    }
    for res in range(3, _log2(resolution) + 1):
        r = 2**res
        syn[f"b{r}_conv0"] = _layer(v, f"{s}{r}x{r}/Conv0_up", mod=True, noise=True)
        syn[f"b{r}_conv1"] = _layer(v, f"{s}{r}x{r}/Conv1", mod=True, noise=True)
        syn[f"b{r}_torgb"] = _layer(v, f"{s}{r}x{r}/ToRGB", mod=True)
    return {"mapping": mapping, "synthesis": syn}


def convert_discriminator(v: dict, resolution: int) -> dict:
    lr = _log2(resolution)
    top = 2**lr
    d = {f"b{top}_fromrgb": _layer(v, f"{top}x{top}/FromRGB")}
    for res in range(lr, 2, -1):
        r = 2**res
        d[f"b{r}_conv0"] = _layer(v, f"{r}x{r}/Conv0")
        d[f"b{r}_conv1"] = _layer(v, f"{r}x{r}/Conv1_down")
        d[f"b{r}_skip"] = _layer(v, f"{r}x{r}/Skip", bias=False)
    d["b4_conv"] = _layer(v, "4x4/Conv")
    fc = _layer(v, "4x4/Dense0")
    c = d["b4_conv"]["weight"].shape[-1]
    # TF flattens NCHW activations; ours are NHWC.
    fc["weight"] = fc["weight"].reshape(c, 4, 4, -1).transpose(1, 2, 0, 3).reshape(16 * c, -1)
    d["b4_fc"] = fc
    d["b4_out"] = _layer(v, "Output")
    return d


def convert_file(path: str) -> tuple[dict, dict]:
    """``convert`` of a pickle file (errors name the file)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    with open(path, "rb") as f:
        return convert(f.read(), where=path)


def convert(data: bytes, where: str = "<StyleGAN2 pickle>") -> tuple[dict, dict]:
    """Pickle bytes -> ({'teacher': {g, d, g_ema, w_avg}}, architecture info)."""
    g_net, d_net, gs_net = load_pickle(data, where)
    gv, dv, gsv = collect_vars(g_net), collect_vars(d_net), collect_vars(gs_net)
    const = _get(gv, "synthesis/4x4/Const/const")
    kw = gs_net.static_kwargs
    resolution = int(kw.get("resolution", 0)) or max(
        int(k.split("/")[1].split("x")[0])
        for k in gsv
        if k.startswith("synthesis/") and "x" in k.split("/")[1]
    )
    tree = {
        "teacher": {
            "g": convert_generator(gv, resolution),
            "d": convert_discriminator(dv, resolution),
            "g_ema": convert_generator(gsv, resolution),
            "w_avg": _get(gsv, "dlatent_avg"),
        }
    }
    # The official stored noise inputs (G_synthesis ``noise{j}``), for noise_mode='const': a
    # converted generator then reproduces the official images for the same latents.
    noise = [gsv.get(f"synthesis/noise{j}") for j in range(len(sg.noise_layers(resolution)))]
    if all(n is not None for n in noise):
        tree["teacher"]["noise_const"] = sg.noise_const_from_official(noise, resolution)
    info = {
        "resolution": resolution,
        "const_channels": int(const.shape[1]),
        "img_channels": int(tree["teacher"]["g"]["synthesis"]["b4_torgb"]["weight"].shape[-1]),
        "w_dim": int(tree["teacher"]["w_avg"].shape[0]),
        "mapping_layers": len(tree["teacher"]["g"]["mapping"]),
        "static_kwargs": {k: v for k, v in kw.items() if isinstance(v, (int, float, str))},
    }
    return tree, info


def save(tree: dict, info: dict, out: str) -> None:
    """Writes an Orbax checkpoint usable as ``--config.init_from=out`` plus ``arch.json``."""
    from jaxpapers import checkpoint

    os.makedirs(out, exist_ok=True)
    ck = checkpoint.Checkpointer(os.path.join(out, "checkpoints"), keep=1, async_save=False)
    ck.save(0, tree, force=True)
    ck.close()
    with open(os.path.join(out, "arch.json"), "w") as f:
        json.dump(info, f, indent=2)
