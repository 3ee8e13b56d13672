"""Reads stylegan2-ada-pytorch / stylegan3 network pickles WITHOUT torch and WITHOUT their code.

The ``.pkl`` files NVIDIA serves (``network-snapshot-*.pkl``, ``stylegan3-t-ffhq-1024x1024.pkl``)
are a plain pickle of ``dict(G=..., D=..., G_ema=..., augment_pipe=..., training_set_kwargs=...)``
whose networks were wrapped by ``torch_utils.persistence``: each module is pickled as
``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version, module_src,
class_name, state)``, where ``module_src`` is the *source code* of the network module (the
official loader executes it) and ``state`` the module's ``__dict__`` (``_parameters``,
``_buffers``, ``_modules``, ``_init_kwargs``, ...). Tensors inside are plain-pickled torch
tensors: ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` (wrapped by
``_rebuild_parameter`` for parameters) with ``storage = torch.storage._load_from_bytes(b)``, ``b``
a legacy-format ``torch.save`` of that storage.

This reader never executes ``module_src``: persistent objects become inert
:class:`PersistentModule` records, and the restricted unpickler admits only the globals listed
above (plus checked NumPy/container reconstructors for the NumPy attributes StyleGAN3 keeps);
anything else is refused. It returns the parameters and buffers of G, D and G_ema as a flat
``{'G.mapping.fc0.weight': array, 'G_ema.synthesis.b4.conv1.noise_const': array, ...}``
(torch ``state_dict`` names, prefixed by the network's key), in the official layouts (OIHW
kernels, [out, in] dense weights).

`convert` maps a StyleGAN2 network of stylegan2-ada-pytorch (or the ``networks_stylegan2`` of
the stylegan3 repository) onto this suite's trees (``jaxpapers/layers/stylegan2.py``), the same
``{'teacher': {g, d, g_ema, w_avg, noise_const}}`` that `jaxpapers.convert.stylegan2` writes for
the TF pickles. Official -> ours (see also ``legacy.py`` of stylegan2-ada-pytorch, which maps TF
names onto these):

* ``mapping.fc{i}.weight [out, in] | bias`` -> ``mapping/fc{i}`` ``weight.T | bias`` times the
  mapping ``lr_multiplier`` (0.01): our optimizer applies the multiplier, the official code
  folds it into the parametrization. ``mapping.w_avg`` -> ``w_avg``.
* ``synthesis.b4.const [C, 4, 4]`` -> ``synthesis/const [4, 4, C]``.
* ``synthesis.b{r}.conv0|conv1|torgb`` -> ``b{r}_conv0|b{r}_conv1|b{r}_torgb``: OIHW -> HWIO,
  ``affine.weight [in, w_dim]`` -> ``mod_weight`` (transposed), ``affine.bias`` -> ``mod_bias``
  minus 1 (the official bias is initialized to 1, ours to 0 with the +1 in the layer, as in TF).
  ``conv0`` (the 2x up conv) is flipped in H and W: the PyTorch port runs a transposed conv
  with the stored kernel (``flip_weight=False``), i.e. a correlation of the zero-inserted input
  with the flipped kernel, where ours correlates with the stored one (``legacy.py`` flips TF's
  ``Conv0_up`` kernels the same way).
* ``synthesis.b{r}.conv{0,1}.noise_const [r, r]`` (of G_ema) -> the ``'noise_const'`` collection.
* D ``b{r}.fromrgb|conv0|conv1|skip`` -> ``b{r}_fromrgb|conv0|conv1|skip`` (OIHW -> HWIO, no
  flip: the down convs are correlations); ``b4.conv`` -> ``b4_conv``; ``b4.fc`` -> ``b4_fc``
  (columns reordered from the NCHW flattening to our NHWC one); ``b4.out`` -> ``b4_out``.
* ``resample_filter`` buffers are checked against the model's filter; nothing else may be left.

The constructor kwargs (``init_kwargs``) are checked first and unsupported networks refused with
one line each (`Unsupported`): StyleGAN3 synthesis, conditional networks (``c_dim > 0``),
architectures other than the ``skip`` G / ``resnet`` D, other activations or filters. Then the
converted tree must have exactly the parameter shapes of our networks built with the derived
settings. ``num_fp16_res`` is accepted (the weights are stored in float32; we compute in float32);
``conv_clamp`` (G's and D's must agree) becomes ``model.conv_clamp``, which our layers apply where
the official ones do (synthesis, ToRGB and D convolutions other than the skips).
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Any

import numpy as np

from jaxpapers import safe_io
from jaxpapers.convert import torch_pickle

NETWORKS = ("G", "D", "G_ema")
_TENSOR = safe_io._Token("torch.Tensor")
_PARAMETER = safe_io._Token("torch.nn.parameter.Parameter")


@dataclasses.dataclass
class PersistentModule:
    """An inert record of one ``torch_utils.persistence`` object (its source is never run)."""

    class_name: str
    state: dict
    module_src: str  # kept only so a caller can inspect it; nothing here executes it


@dataclasses.dataclass
class NetworkPickle:
    tensors: dict[str, np.ndarray]  # 'G.mapping.fc0.weight' -> array (params and buffers)
    init_kwargs: dict[str, dict]  # 'G' -> constructor kwargs (z_dim, w_dim, img_resolution, ...)
    class_names: dict[str, str]  # 'G' -> 'Generator'
    init_args: dict[str, list] = dataclasses.field(default_factory=dict)  # positional args


def _allowed(where: str) -> dict[tuple[str, str], Any]:
    def reconstruct_persistent_obj(meta):
        if not (
            isinstance(meta, dict)
            and meta.get("type") == "class"
            and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)
        ):
            raise ValueError(f"{where}: a persistent object's meta is not a class record.")
        src = meta.get("module_src")
        return PersistentModule(
            meta["class_name"], meta["state"], src if isinstance(src, str) else ""
        )

    def load_from_bytes(data):
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"{where}: an embedded storage is {type(data).__name__}, not bytes.")
        st = torch_pickle.read_legacy(io.BytesIO(bytes(data)), f"{where} (embedded storage)")
        if not isinstance(st, torch_pickle._Storage):
            raise ValueError(f"{where}: an embedded torch.save holds no storage.")
        return st

    def rebuild_from_type_v2(func, new_type, args, state):
        # torch >= 1.12 wraps tensors of subclasses this way; only plain tensors/parameters here.
        if new_type not in (_TENSOR, _PARAMETER) or state:
            raise safe_io.UnsafeFileError(f"{where}: tensor subclass {new_type!r} is not allowed.")
        return func(*args)

    def rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
        return data

    return {
        **safe_io.NUMPY_GLOBALS,
        **safe_io.CONTAINER_GLOBALS,
        **torch_pickle.tensor_globals(where),
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): safe_io.EasyDictStub,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("torch._utils", "_rebuild_from_type_v2"): rebuild_from_type_v2,
        ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter_with_state,
        ("torch", "Tensor"): _TENSOR,
        ("torch._tensor", "Tensor"): _TENSOR,
        ("torch.nn.parameter", "Parameter"): _PARAMETER,
    }


def _collect(mod: PersistentModule, prefix: str, out: dict, where: str) -> None:
    state = mod.state
    for group in ("_parameters", "_buffers"):
        items = state.get(group) or {}
        if not isinstance(items, dict):
            raise ValueError(f"{where}: {prefix}{group} is not a dict.")
        for name, value in items.items():
            if value is None:
                continue
            value = torch_pickle.materialize_tree(value)
            if not isinstance(value, np.ndarray):
                raise ValueError(
                    f"{where}: {prefix}{name} is {type(value).__name__}, not a tensor."
                )
            out[prefix + str(name)] = value
    for name, sub in (state.get("_modules") or {}).items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentModule):
            raise ValueError(f"{where}: submodule {prefix}{name} is not a persistent module.")
        _collect(sub, f"{prefix}{name}.", out, where)


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load(path: str) -> NetworkPickle:
    """Parameters/buffers of G, D and G_ema of an official network pickle (nothing executed)."""
    obj = safe_io.load_pickle(path, _allowed(path))
    if not isinstance(obj, dict) or not all(k in obj for k in NETWORKS):
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: expected a dict with {NETWORKS} (official layout), got {have}.")
    tensors: dict[str, np.ndarray] = {}
    kwargs, classes, args = {}, {}, {}
    for key in NETWORKS:
        net = obj[key]
        if not isinstance(net, PersistentModule):
            raise ValueError(f"{path}: {key} is not a torch_utils.persistence network.")
        _collect(net, key + ".", tensors, path)
        kwargs[key] = _plain(net.state.get("_init_kwargs") or {})
        args[key] = _plain(net.state.get("_init_args") or ())
        classes[key] = net.class_name
    return NetworkPickle(tensors=tensors, init_kwargs=kwargs, class_names=classes, init_args=args)


def read_params(path: str) -> dict[str, np.ndarray]:
    """``{'G.…', 'D.…', 'G_ema.…': array}``: every parameter and buffer (incl. ``noise_const``)."""
    return load(path).tensors


# ------------------------------------------------------------------ conversion to our StyleGAN2


class Unsupported(ValueError):
    """The pickle holds a network this suite cannot represent (one line naming the setting)."""


FILTER = (1, 3, 3, 1)  # The only resample filter the configs express (every official network's).
WHOLE_BATCH = 1 << 16  # Our minibatch-std group size for the official None (the whole batch).
# Constructor kwargs this converter understands (training/networks.py; the official defaults are
# below: the persistence wrapper records only the kwargs a network was built with). Anything
# else is refused rather than silently ignored.
_G_KEYS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs"}
_MAPPING_KEYS = {
    "num_layers",
    "embed_features",
    "layer_features",
    "activation",
    "lr_multiplier",
    "w_avg_beta",
}
# ada: G.synthesis_kwargs; stylegan3 repo (networks_stylegan2): flat in G's kwargs. The float16,
# memory-layout and fused-modconv switches leave the meaning of the stored weights unchanged.
_SYNTHESIS_KEYS = {
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "architecture",
    "resample_filter",
    "fp16_channels_last",
    "fused_modconv_default",
    "activation",
    "use_noise",
}
_D_KEYS = {
    "c_dim",
    "img_resolution",
    "img_channels",
    "architecture",
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "cmap_dim",
    "block_kwargs",
    "mapping_kwargs",
    "epilogue_kwargs",
}
_D_BLOCK_KEYS = {"activation", "resample_filter", "fp16_channels_last", "freeze_layers"}
_D_EPILOGUE_KEYS = {"mbstd_group_size", "mbstd_num_channels", "activation"}
_STYLEGAN3 = re.compile(r"G(_ema)?\.synthesis\.(input\.|L\d+_)")


def _refuse_unknown(kwargs: dict, known: set, what: str, where: str) -> None:
    extra = sorted(set(kwargs) - known)
    if extra:
        raise Unsupported(
            f"{where}: unknown {what} setting(s) {', '.join(extra)}={kwargs[extra[0]]!r}: this "
            "converter maps only stylegan2-ada-pytorch StyleGAN2 networks."
        )


def settings(net: NetworkPickle, where: str = "<pickle>") -> dict:
    """The official settings of the pickle's networks (with the defaults filled in) and the
    ``config.model`` values of our equivalent networks (``'model'``). Raises `Unsupported` (one
    line) for a network this suite's StyleGAN2 cannot represent."""
    if any(_STYLEGAN3.match(k) for k in net.tensors):
        raise Unsupported(
            f"{where}: a StyleGAN3 (alias-free) generator; this suite has only the StyleGAN2 "
            "synthesis network: convert a StyleGAN2 pickle (stylegan2-ada-pytorch, or stylegan3 "
            "trained with --cfg=stylegan2)."
        )
    for key in NETWORKS:
        if net.init_args.get(key):
            raise Unsupported(
                f"{where}: {key} was built with positional arguments, which this converter cannot "
                "check (the official training passes keyword arguments only)."
            )
    gk, dk = net.init_kwargs["G"], net.init_kwargs["D"]
    if net.init_kwargs["G_ema"] != gk:
        raise Unsupported(f"{where}: G and G_ema were built with different settings.")
    for what, kw, keys in (("G", gk, sorted(_G_KEYS - {"mapping_kwargs"})), ("D", dk, ["c_dim"])):
        missing = [k for k in keys if k not in kw]
        if missing:
            raise Unsupported(f"{where}: {what}'s init_kwargs lack {', '.join(missing)}.")
    c_dim = max(int(gk["c_dim"]), int(dk["c_dim"]))
    if c_dim:
        raise Unsupported(
            f"{where}: a conditional network (c_dim={c_dim}); the stylegan2_dgl StyleGAN2 has no "
            "label embedding: only unconditional networks (c_dim=0) convert."
        )
    # The stylegan3 repository's networks_stylegan2.Generator takes the synthesis kwargs flat
    # (ada's Generator has a synthesis_kwargs argument) and has other defaults for these three.
    ada = "synthesis_kwargs" in gk
    defaults = dict(w_avg_beta=0.995, num_fp16_res=0, conv_clamp=None)
    if not ada:
        defaults = dict(w_avg_beta=0.998, num_fp16_res=4, conv_clamp=256)
    syn = dict(gk.get("synthesis_kwargs") or {})
    syn.update({k: v for k, v in gk.items() if k not in _G_KEYS | {"synthesis_kwargs"}})
    mk = dict(gk.get("mapping_kwargs") or {})
    bk, ek = dict(dk.get("block_kwargs") or {}), dict(dk.get("epilogue_kwargs") or {})
    _refuse_unknown(syn, _SYNTHESIS_KEYS, "G synthesis", where)
    _refuse_unknown(mk, _MAPPING_KEYS, "G mapping", where)
    _refuse_unknown(dk, _D_KEYS, "D", where)
    _refuse_unknown(bk, _D_BLOCK_KEYS, "D block", where)
    _refuse_unknown(ek, _D_EPILOGUE_KEYS, "D epilogue", where)
    w_dim = int(gk["w_dim"])
    required = (
        ("G synthesis architecture", syn.get("architecture", "skip"), "skip"),
        ("D architecture", dk.get("architecture", "resnet"), "resnet"),
        ("G activation", syn.get("activation", "lrelu"), "lrelu"),
        ("G mapping activation", mk.get("activation", "lrelu"), "lrelu"),
        ("D activation", bk.get("activation", "lrelu"), "lrelu"),
        ("D epilogue activation", ek.get("activation", "lrelu"), "lrelu"),
        ("G use_noise", syn.get("use_noise", True), True),
        ("G resample_filter", list(syn.get("resample_filter", FILTER)), list(FILTER)),
        ("D resample_filter", list(bk.get("resample_filter", FILTER)), list(FILTER)),
        ("G mapping layer_features", mk.get("layer_features") or w_dim, w_dim),
    )
    for what, got, want in required:
        if got != want:
            raise Unsupported(
                f"{where}: {what} = {got!r} is not supported (this suite's StyleGAN2: {want!r})."
            )
    if "w_avg_beta" in mk and mk["w_avg_beta"] is None:
        raise Unsupported(f"{where}: G mapping w_avg_beta = None: no tracked w_avg to convert.")
    group = ek.get("mbstd_group_size", 4)
    official = dict(
        z_dim=int(gk["z_dim"]),
        w_dim=w_dim,
        img_resolution=int(gk["img_resolution"]),
        img_channels=int(gk["img_channels"]),
        num_layers=int(mk.get("num_layers", 8)),
        lr_multiplier=float(mk.get("lr_multiplier", 0.01)),
        channel_base=int(syn.get("channel_base", 32768)),
        channel_max=int(syn.get("channel_max", 512)),
        # None (legacy.py's conversions of TF pickles): the whole batch is one group, which our
        # minibatch_std does for any group size >= the batch (it uses min(group, batch)).
        mbstd_group_size=WHOLE_BATCH if group is None else int(group),
        mbstd_num_channels=int(ek.get("mbstd_num_channels", 1)),
        num_fp16_res=int(syn.get("num_fp16_res", defaults["num_fp16_res"])),
        conv_clamp=_clamp(syn.get("conv_clamp", defaults["conv_clamp"]), "G", where),
    )
    d_clamp = _clamp(dk.get("conv_clamp", defaults["conv_clamp"]), "D", where)
    if d_clamp != official["conv_clamp"]:
        raise Unsupported(
            f"{where}: D's conv_clamp ({d_clamp}) differs from G's ({official['conv_clamp']}); "
            "our config gives both networks one value (model.conv_clamp)."
        )
    for key, d_default in (
        ("img_resolution", None),
        ("img_channels", None),
        ("channel_base", 32768),
        ("channel_max", 512),
    ):
        d_value = dk.get(key, d_default)
        if d_value is None or int(d_value) != official[key]:
            raise Unsupported(
                f"{where}: D's {key} ({d_value}) differs from G's ({official[key]}); our config "
                "gives both networks one value."
            )
    res = official["img_resolution"]
    if res < 8 or res & (res - 1):
        raise Unsupported(f"{where}: img_resolution {res} is not a power of two >= 8.")
    for key, low in (("z_dim", 1), ("mbstd_group_size", 2), ("mbstd_num_channels", 1)):
        if official[key] < low:
            raise Unsupported(
                f"{where}: {key} = {official[key]} is not supported (needs >= {low})."
            )
    if official["channel_base"] % 2:
        raise Unsupported(
            f"{where}: channel_base {official['channel_base']} is odd; ours is fmap_base = "
            "channel_base / 2 (ada's channels at resolution r are channel_base // r)."
        )
    official["model"] = dict(
        resolution=res,
        img_channels=official["img_channels"],
        z_dim=official["z_dim"],
        w_dim=w_dim,
        mapping_layers=official["num_layers"],
        fmap_base=official["channel_base"] // 2,
        fmap_max=official["channel_max"],
        mbstd_group_size=official["mbstd_group_size"],
        mbstd_num_features=official["mbstd_num_channels"],
        resample_filter=FILTER,
        w_avg_beta=float(mk.get("w_avg_beta", defaults["w_avg_beta"])),
        conv_clamp=float(official["conv_clamp"] or 0.0),  # Ours: 0 = off (official None).
    )
    return official


def _clamp(value, what: str, where: str) -> float | None:
    """A network's ``conv_clamp`` kwarg: None (off) or a positive number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise Unsupported(f"{where}: {what}'s conv_clamp = {value!r} is not None or a number > 0.")
    return float(value)


def _channels(s: dict, res: int) -> int:
    return min(s["channel_base"] // res, s["channel_max"])


def official_layout(s: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{'G': {'mapping.fc0.weight': shape, ...}, 'D': {...}}``: every parameter and buffer the
    official ``training/networks.py`` creates for the `settings` ``s`` (G_ema is a copy of G)."""
    w, zc, img = s["w_dim"], s["z_dim"], s["img_channels"]
    lr = int(np.log2(s["img_resolution"]))
    filt = (len(FILTER), len(FILTER))
    g: dict[str, tuple[int, ...]] = {}
    for i in range(s["num_layers"]):
        g[f"mapping.fc{i}.weight"] = (w, zc if i == 0 else w)
        g[f"mapping.fc{i}.bias"] = (w,)
    g["mapping.w_avg"] = (w,)

    def synthesis_layer(name, cin, cout, r, k=3, noise=True):
        g[f"{name}.weight"] = (cout, cin, k, k)
        g[f"{name}.bias"] = (cout,)
        g[f"{name}.affine.weight"] = (cin, w)
        g[f"{name}.affine.bias"] = (cin,)
        if noise:
            g[f"{name}.resample_filter"] = filt
            g[f"{name}.noise_strength"] = ()
            g[f"{name}.noise_const"] = (r, r)

    for res in range(2, lr + 1):
        r, c = 2**res, _channels(s, 2**res)
        b = f"synthesis.b{r}"
        g[f"{b}.resample_filter"] = filt
        if r == 4:
            g[f"{b}.const"] = (c, 4, 4)
        else:
            synthesis_layer(f"{b}.conv0", _channels(s, r // 2), c, r)
        synthesis_layer(f"{b}.conv1", c, c, r)
        synthesis_layer(f"{b}.torgb", c, img, r, k=1, noise=False)
    d: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k, bias=True):
        d[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            d[f"{name}.bias"] = (cout,)
        d[f"{name}.resample_filter"] = filt

    for res in range(lr, 2, -1):
        r, c, c_out = 2**res, _channels(s, 2**res), _channels(s, 2 ** (res - 1))
        d[f"b{r}.resample_filter"] = filt
        if res == lr:
            conv(f"b{r}.fromrgb", img, c, 1)
        conv(f"b{r}.conv0", c, c, 3)
        conv(f"b{r}.conv1", c, c_out, 3)
        conv(f"b{r}.skip", c, c_out, 1, bias=False)
    c4 = _channels(s, 4)
    conv("b4.conv", c4 + s["mbstd_num_channels"], c4, 3)
    d.update({"b4.fc.weight": (c4, 16 * c4), "b4.fc.bias": (c4,)})
    d.update({"b4.out.weight": (1, c4), "b4.out.bias": (1,)})
    return {"G": g, "D": d}


def _check_layout(net: NetworkPickle, s: dict, where: str) -> None:
    """The pickle holds exactly the tensors the official code builds for its settings."""
    layout = official_layout(s)
    for key in NETWORKS:
        want = layout["D" if key == "D" else "G"]
        have = {k[len(key) + 1 :]: v for k, v in net.tensors.items() if k.split(".")[0] == key}
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        if missing or extra:
            name = f"{key}.{(missing or extra)[0]}"
            how = "is missing" if missing else "has no counterpart here"
            raise Unsupported(
                f"{where}: {name} {how} ({len(missing)} missing, {len(extra)} unexpected "
                "tensors): not the official StyleGAN2 layout for the pickle's init_kwargs."
            )
        for name, shape in want.items():
            if tuple(have[name].shape) != shape:
                raise Unsupported(
                    f"{where}: {key}.{name} has shape {tuple(have[name].shape)}, the official "
                    f"layout for the pickle's init_kwargs {shape}."
                )
    f = np.asarray(FILTER, np.float32)
    f2 = np.outer(f, f) / np.outer(f, f).sum()
    for name, value in net.tensors.items():
        if name.endswith(".resample_filter") and not np.allclose(value, f2, atol=1e-6):
            raise Unsupported(f"{where}: {name} is not the normalized [1, 3, 3, 1] filter.")


def _conv(w: np.ndarray, flip: bool = False) -> np.ndarray:
    """OIHW -> HWIO; ``flip``: rotate by 180 degrees (the up convs, see the module doc)."""
    w = np.asarray(w, np.float32).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(w[::-1, ::-1] if flip else w)


def _synthesis_layer(t: dict, name: str, up: bool = False, noise: bool = True) -> dict:
    p = {
        "weight": _conv(t[f"{name}.weight"], flip=up),
        "bias": t[f"{name}.bias"],
        "mod_weight": np.ascontiguousarray(t[f"{name}.affine.weight"].T),
        "mod_bias": t[f"{name}.affine.bias"] - np.float32(1.0),
    }
    if noise:
        p["noise_strength"] = t[f"{name}.noise_strength"].reshape(())
    return p


def _generator(t: dict, s: dict) -> dict:
    lr_mul = np.float32(s["lr_multiplier"])
    mapping = {
        f"fc{i}": {
            "weight": np.ascontiguousarray(t[f"mapping.fc{i}.weight"].T) * lr_mul,
            "bias": t[f"mapping.fc{i}.bias"] * lr_mul,
        }
        for i in range(s["num_layers"])
    }
    syn = {
        "const": np.ascontiguousarray(t["synthesis.b4.const"].transpose(1, 2, 0)),
        "b4_conv1": _synthesis_layer(t, "synthesis.b4.conv1"),
        "b4_torgb": _synthesis_layer(t, "synthesis.b4.torgb", noise=False),
    }
    for res in range(3, int(np.log2(s["img_resolution"])) + 1):
        b = f"synthesis.b{2**res}"
        syn[f"b{2**res}_conv0"] = _synthesis_layer(t, f"{b}.conv0", up=True)
        syn[f"b{2**res}_conv1"] = _synthesis_layer(t, f"{b}.conv1")
        syn[f"b{2**res}_torgb"] = _synthesis_layer(t, f"{b}.torgb", noise=False)
    return {"mapping": mapping, "synthesis": syn}


def _discriminator(t: dict, s: dict) -> dict:
    def conv(name, bias=True):
        p = {"weight": _conv(t[f"{name}.weight"])}
        if bias:
            p["bias"] = t[f"{name}.bias"]
        return p

    lr = int(np.log2(s["img_resolution"]))
    d = {f"b{2**lr}_fromrgb": conv(f"b{2**lr}.fromrgb")}
    for res in range(lr, 2, -1):
        r = 2**res
        d.update({f"b{r}_conv0": conv(f"b{r}.conv0"), f"b{r}_conv1": conv(f"b{r}.conv1")})
        d[f"b{r}_skip"] = conv(f"b{r}.skip", bias=False)
    d["b4_conv"] = conv("b4.conv")
    c = d["b4_conv"]["weight"].shape[-1]
    # The official epilogue flattens NCHW activations, ours NHWC: reorder the fc's input rows.
    fc = t["b4.fc.weight"].T.reshape(c, 4, 4, -1).transpose(1, 2, 0, 3).reshape(16 * c, -1)
    d["b4_fc"] = {"weight": np.ascontiguousarray(fc), "bias": t["b4.fc.bias"]}
    d["b4_out"] = {"weight": np.ascontiguousarray(t["b4.out.weight"].T), "bias": t["b4.out.bias"]}
    return d


def _check_our_shapes(tree: dict, model: dict, where: str) -> None:
    """The converted params have exactly the shapes of our networks built from ``model``."""
    import jax
    import jax.numpy as jnp

    from jaxpapers.layers import stylegan2 as sg

    m = model
    f = tuple(m["resample_filter"])
    g_net = sg.Generator(
        m["resolution"],
        m["img_channels"],
        m["z_dim"],
        m["w_dim"],
        m["mapping_layers"],
        m["fmap_base"],
        m["fmap_max"],
        1,
        f,
    )
    d_net = sg.Discriminator(
        m["resolution"],
        m["fmap_base"],
        m["fmap_max"],
        1,
        m["mbstd_group_size"],
        m["mbstd_num_features"],
        f,
    )
    z = jnp.zeros((1, m["z_dim"]))
    img = jnp.zeros((1, m["resolution"], m["resolution"], m["img_channels"]))
    want = {
        "g": jax.eval_shape(lambda k: g_net.init({"params": k, "noise": k}, z), jax.random.key(0)),
        "d": jax.eval_shape(lambda k: d_net.init(k, img), jax.random.key(0)),
    }
    for role, what in (("g", "G"), ("d", "D")):
        ours = {
            "/".join(str(p.key) for p in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(want[role]["params"])[0]
        }
        got = {
            "/".join(str(p.key) for p in path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree[role])[0]
        }
        for name in sorted(set(ours) | set(got)):
            if ours.get(name) != got.get(name):
                raise Unsupported(
                    f"{where}: {what} {name} converts to shape {got.get(name)} but this suite's "
                    f"StyleGAN2 with the pickle's settings has {ours.get(name)} (e.g. the TF/our "
                    "D's fc width is min(channel_base/2, channel_max), ada's min(channel_base/4, "
                    "channel_max))."
                )


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def convert(net: NetworkPickle, where: str = "<pickle>") -> tuple[dict, dict]:
    """An official StyleGAN2 network pickle (`load`) -> ``({'teacher': {g, d, g_ema, w_avg,
    noise_const}}, info)``, like `jaxpapers.convert.stylegan2.convert` for the TF pickles;
    ``info['model']`` holds the ``config.model`` values our networks need."""
    from jaxpapers.layers import stylegan2 as sg

    s = settings(net, where)
    _check_layout(net, s, where)
    per_net = {key: {} for key in NETWORKS}
    for name, value in net.tensors.items():
        key, _, rest = name.partition(".")
        per_net[key][rest] = np.asarray(value, np.float32)
    res = s["img_resolution"]
    g_ema = per_net["G_ema"]
    noise = [
        g_ema[f"synthesis.{name.replace('_', '.')}.noise_const"] for name, _ in sg.noise_layers(res)
    ]
    tree = {
        "teacher": {
            "g": _generator(per_net["G"], s),
            "d": _discriminator(per_net["D"], s),
            "g_ema": _generator(g_ema, s),
            "w_avg": g_ema["mapping.w_avg"],
            # The official per-layer noise buffers (noise_mode='const'), as for the TF pickles.
            "noise_const": sg.noise_const_from_official(noise, res),
        }
    }
    _check_our_shapes(tree["teacher"], s["model"], where)
    info = {
        "format": "stylegan2-ada-pytorch",
        "resolution": res,
        "const_channels": int(g_ema["synthesis.b4.const"].shape[0]),
        "img_channels": s["img_channels"],
        "w_dim": s["w_dim"],
        "mapping_layers": s["num_layers"],
        "model": _jsonable(s["model"]),
        "num_fp16_res": s["num_fp16_res"],
        "conv_clamp": s["conv_clamp"],
        "init_kwargs": _jsonable({k: net.init_kwargs[k] for k in ("G", "D")}),
    }
    return tree, info


def convert_file(path: str) -> tuple[dict, dict]:
    """`convert` of a pickle file (errors name the file)."""
    return convert(load(path), where=path)


_ADA_MARK, _TF_MARK = b"torch_utils.persistence", b"dnnlib.tflib.network"


def sniff(path: str) -> str:
    """``'ada'`` (stylegan2-ada-pytorch / stylegan3) or ``'tf'`` (NVlabs/stylegan2): the
    persistence module or the TF network class that the first objects of the pickle name. Reads
    the first MiB as bytes; nothing is unpickled."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    ada, tf = head.find(_ADA_MARK), head.find(_TF_MARK)
    if ada < 0 and tf < 0:
        raise ValueError(
            f"{path}: neither an official TF StyleGAN2 pickle (dnnlib.tflib.network) nor a "
            "stylegan2-ada-pytorch / stylegan3 one (torch_utils.persistence)."
        )
    return "ada" if tf < 0 or 0 <= ada < tf else "tf"
