"""Malicious and malformed pickles for every pickle reader: refused, file named, nothing run.

Files are written by hand with a pure-Python pickler whose ``G(module, name)`` objects become
GLOBAL opcodes, so the official layouts (torch tensors, ``torch_utils.persistence`` objects,
``dnnlib`` networks) are produced without torch/TensorFlow and any global can be planted.
"""

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from jaxpapers import safe_io
from jaxpapers.convert import stylegan2, stylegan2_ada, torch_pickle
from jaxpapers.methods.trace_vidsgg import formats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOCOLS = (0, 2, 4)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


class G:
    """A global written as a GLOBAL opcode (module, name) whatever exists in this process."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # the pickler insists on callables in reduce tuples
        raise AssertionError("never called while writing")


class R:
    """An object pickled as ``func(*args)`` (plus BUILD ``state`` when given)."""

    def __init__(self, func, args, state=None, items=None):
        self.func, self.args, self.state, self.items = func, args, state, items

    def __reduce__(self):
        if self.items is not None:
            return (self.func, self.args, self.state, None, iter(self.items.items()))
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


class StorageRef:
    def __init__(self, key, array, numel=None):
        self.key, self.array = key, np.ascontiguousarray(array).reshape(-1)
        self.numel = self.array.size if numel is None else numel


class _Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol, legacy=False):
        super().__init__(file, protocol=protocol)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            pid = ("storage", G("torch", _STORAGE[obj.array.dtype]), obj.key, "cpu", obj.numel)
            return pid + (None,) if self.legacy else pid
        return None


def _save_global(pickler, obj):
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())


_Pickler.dispatch[G] = _save_global


def dumps(obj, protocol=2, legacy=False) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol, legacy).dump(obj)
    return buf.getvalue()


def tensor(ref, offset=0, size=None, stride=None):
    size = ref.array.shape if size is None else size
    stride = (1,) if stride is None else stride
    args = (ref, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
    return R(G("torch._utils", "_rebuild_tensor_v2"), args)


def evil(marker):
    return R(G("os", "system"), (f"touch {marker}",))


def evil_exec(marker):
    return R(G("builtins", "exec"), (f"open({str(marker)!r}, 'w').close()",))


def write_torch_zip(path, tree, refs, member_bytes=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", dumps(tree))
        for ref in refs:
            data = ref.array.tobytes() if member_bytes is None else member_bytes
            zf.writestr(f"archive/data/{ref.key}", data)
        zf.writestr("archive/version", "3\n")


def legacy_bytes(tree, refs, counts=None, headers=None, keys=None) -> bytes:
    out = io.BytesIO()
    for h in headers or (LEGACY_MAGIC, 1001, dict(protocol_version=1001, little_endian=True)):
        out.write(dumps(h))
    out.write(dumps(tree, legacy=True))
    out.write(dumps(keys if keys is not None else [r.key for r in refs]))
    for i, ref in enumerate(refs):
        count = ref.array.size if counts is None else counts[i]
        out.write(struct.pack("<q", count) + ref.array.tobytes())
    return out.getvalue()


# --------------------------------------------------------------------------- Action Genome


def _ag_files(tmp_path, persons, objects, protocol=4):
    p, o = tmp_path / "person_bbox.pkl", tmp_path / "object_bbox_and_relationship.pkl"
    p.write_bytes(pickle.dumps(persons, protocol=protocol))
    o.write_bytes(pickle.dumps(objects, protocol=protocol))
    (tmp_path / "objects.txt").write_text("person\ncup\n")
    (tmp_path / "rels.txt").write_text("looking_at\nholding\n")
    return str(p), str(o), str(tmp_path / "objects.txt"), str(tmp_path / "rels.txt")


def _ag_objects():
    return {
        "v.mp4/000001.png": [
            {
                "class": "cup",
                "bbox": (1.0, 2.0, 3.0, 4.0),
                "attention_relationship": ["looking_at"],
                "spatial_relationship": [],
                "contacting_relationship": ["holding"],
                "metadata": {"tag": "v.mp4/cup/000001", "set": "test"},
                "visible": True,
            }
        ]
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_action_genome_real_layout_loads(tmp_path, protocol):
    persons = {
        "v.mp4/000001.png": {
            "bbox": np.array([[0.0, 1.0, 10.0, 20.0]], np.float32),
            "bbox_score": np.array([0.9], np.float32),
            "bbox_size": (480, 270),
            "bbox_mode": "xyxy",
        }
    }
    frames = formats.read_action_genome(*_ag_files(tmp_path, persons, _ag_objects(), protocol))
    assert len(frames) == 1
    np.testing.assert_allclose(frames[0]["boxes"], [[0, 1, 10, 20], [1, 2, 4, 6]])
    assert frames[0]["rels"].tolist() == [[0, 1, 0], [0, 1, 1]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("where", ["top", "frame", "nested"])
def test_action_genome_code_running_pickle_is_refused(tmp_path, protocol, where):
    marker = tmp_path / "pwned"
    bomb = evil(marker) if where != "nested" else [1, {"x": evil_exec(marker)}]
    persons = bomb if where == "top" else {"v.mp4/000001.png": {"bbox": bomb}}
    paths = _ag_files(tmp_path, {}, _ag_objects(), protocol)
    with open(paths[0], "wb") as f:
        f.write(dumps(persons, protocol))
    with pytest.raises(safe_io.UnsafeFileError, match="person_bbox.pkl.*refusing global"):
        formats.read_action_genome(*paths)
    assert not marker.exists()


def test_numpy_stand_ins_refuse_allocations(tmp_path):
    path = tmp_path / "x.pkl"
    huge = 1 << 42
    cases = [
        R(G("numpy", "ndarray"), ((huge,),)),  # the bare constructor
        R(G("numpy._core.multiarray", "_reconstruct"), (G("numpy", "ndarray"), (huge,), b"b")),
        R(G("builtins", "bytes"), (huge,)),
        R(G("_codecs", "encode"), ("abc", "hex_codec")),
        R(G("numpy", "dtype"), (G("os", "system"),)),
    ]
    for obj in cases:
        path.write_bytes(dumps(obj, 2))
        with pytest.raises(ValueError, match="x.pkl"):
            safe_io.load_numpy_pickle(str(path))
    # A real array whose state claims more elements than its bytes.
    state = (1, (huge,), np.dtype("f4"), False, b"\0" * 16)
    obj = R(G("numpy._core.multiarray", "_reconstruct"), (G("numpy", "ndarray"), (0,), b"b"), state)
    path.write_bytes(dumps(obj, 2))
    with pytest.raises(ValueError, match="x.pkl"):
        safe_io.load_numpy_pickle(str(path))
    path.write_bytes(pickle.dumps({"a": np.arange(3.0), "b": np.float64(2.5)}, protocol=2))
    out = safe_io.load_numpy_pickle(str(path))
    assert out["a"].tolist() == [0.0, 1.0, 2.0] and out["b"] == 2.5


@pytest.mark.parametrize("protocol", range(6))
def test_plain_numpy_and_container_pickles_load(protocol):
    obj = {
        "a": np.arange(6.0).reshape(2, 3),
        "f": np.asfortranarray(np.ones((2, 3), np.int16)),
        "s": np.float64(2.5),
        "rec": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]),
        "o": np.array([{"x": 1}, None], dtype=object),
        "set": {1, 2},
        "od": collections.OrderedDict(a=1),
        "bytes": b"xyz",
        "empty": b"",
    }
    allowed = {**safe_io.NUMPY_GLOBALS, **safe_io.CONTAINER_GLOBALS}
    out = safe_io.load_pickle(pickle.dumps(obj, protocol=protocol), allowed)
    for k in ("a", "f", "rec"):
        np.testing.assert_array_equal(out[k], obj[k])
        assert out[k].dtype == obj[k].dtype
    assert out["s"] == 2.5 and out["o"][0] == {"x": 1} and out["set"] == {1, 2}
    assert out["od"] == obj["od"] and out["bytes"] == b"xyz" and out["empty"] == b""


def test_build_on_an_allowed_global_cannot_poison_later_loads():
    allowed = {**safe_io.NUMPY_GLOBALS, **safe_io.CONTAINER_GLOBALS}
    # GLOBAL builtins.set; BUILD (None, {'__defaults__': ((7,),)}): rewrites set()'s default.
    poison = b"\x80\x02cbuiltins\nset\nN}X\x0c\x00\x00\x00__defaults__K\x07\x85\x85s\x86b."
    safe_io.load_pickle(poison, allowed)
    assert safe_io.load_pickle(dumps(R(G("builtins", "set"), ())), allowed) == set()
    token = b"\x80\x02cnumpy\nndarray\nN}X\x04\x00\x00\x00nameK\x07s\x86b."
    with pytest.raises(safe_io.UnsafeFileError):
        safe_io.load_pickle(token, allowed)
    assert safe_io.NDARRAY.name == "numpy.ndarray"


def test_malformed_pickle_names_the_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:-20])
    with pytest.raises(ValueError, match="cut.pkl"):
        safe_io.load_numpy_pickle(str(path))
    # BINBYTES8 claiming 2**40 bytes: refused without reading/allocating them.
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc")
    with pytest.raises(ValueError, match="cut.pkl"):
        safe_io.load_numpy_pickle(str(path))


# --------------------------------------------------------------------------- torch files


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_torch_zip_code_in_each_object_slot_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    ref = StorageRef("0", np.arange(4, dtype=np.float32))
    variants = {
        "top": evil(marker),
        "value": {"w": evil_exec(marker)},
        "size": {"w": R(G("torch._utils", "_rebuild_tensor_v2"), (ref, 0, evil(marker), (1,)))},
        "rebuild": {"w": R(G("torch._utils", "_rebuild_from_type_v2"), (evil(marker),))},
    }
    # Protocol 0 writes persistent ids as text, which no torch file does: refused as malformed.
    expected = torch_pickle.UnsafeCheckpointError if protocol else ValueError
    for name, tree in variants.items():
        path = tmp_path / f"{name}.pt"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", dumps(tree, protocol))
            zf.writestr("archive/data/0", ref.array.tobytes())
        with pytest.raises(expected, match=f"{name}.pt"):
            torch_pickle.load(str(path))
    # A storage type that is not a torch storage tag.
    path = tmp_path / "stype.pt"

    class BadPickler(_Pickler):
        def persistent_id(self, obj):
            return ("storage", G("os", "system"), "0", "cpu", 4) if obj is ref else None

    buf = io.BytesIO()
    BadPickler(buf, protocol).dump({"w": tensor(ref)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
    with pytest.raises(expected, match="stype.pt"):
        torch_pickle.load(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("slot", [0, 1, 2, 3, 4])
def test_torch_legacy_code_in_each_pickle_is_refused(tmp_path, slot):
    marker = tmp_path / "pwned"
    ref = StorageRef("0", np.arange(4, dtype=np.float32))
    headers = [LEGACY_MAGIC, 1001, {}]
    tree, keys = {"w": tensor(ref)}, None
    if slot < 3:
        headers[slot] = evil(marker)
    elif slot == 3:
        tree = {"w": evil(marker)}
    else:
        keys = evil(marker)
    path = tmp_path / "legacy.pt"
    path.write_bytes(legacy_bytes(tree, [ref], headers=headers, keys=keys))
    with pytest.raises(safe_io.UnsafeFileError, match="legacy.pt"):
        torch_pickle.load(str(path))
    assert not marker.exists()


# The cases below could crash the interpreter (as_strided on bad bounds) or exhaust memory:
# they run in a child process that reports each outcome and its peak memory.
_CHILD = r"""
import json, sys
from jaxpapers.convert import torch_pickle


def peak_kb():  # VmHWM: this process image's peak RSS (ru_maxrss would include the parent's)
    with open("/proc/self/status") as f:
        return int(next(ln for ln in f if ln.startswith("VmHWM")).split()[1])


out = {}
for path in sys.argv[1:]:
    try:
        value = torch_pickle.load(path)
        out[path] = ["ok", {k: v.tolist() for k, v in value.items()}]
    except (ValueError, torch_pickle.UnsafeCheckpointError) as e:
        out[path] = ["refused", str(e)]
    out[path].append(peak_kb())
out["maxrss_kb"] = peak_kb()
print(json.dumps(out))
"""


def _load_in_child(paths):
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert run.returncode == 0, f"reader crashed (rc {run.returncode}): {run.stderr[-2000:]}"
    import json

    return json.loads(run.stdout.strip().splitlines()[-1])


def test_torch_bad_views_bombs_and_lying_lengths_refused_without_crash(tmp_path):
    data = np.arange(16, dtype=np.float32)
    ref = StorageRef("0", data)
    cases = {}

    def zip_case(name, view, **kw):
        r = StorageRef("0", data, **kw)
        path = tmp_path / f"{name}.pt"
        write_torch_zip(path, {"w": tensor(r, *view)}, [r])
        cases[name] = path

    zip_case("beyond", (0, (64,), (1,)))  # size exceeds storage: as_strided would read the heap
    zip_case("stride", (0, (4, 4), (16, 1)))  # stride walks past the end
    zip_case("negoff", (-8, (4,), (1,)))  # negative offset would wrap
    zip_case("negstride", (15, (4,), (-1,)))
    zip_case("expand", (0, (1 << 40,), (0,)))  # stride 0 of a huge size: would allocate 4 TiB
    zip_case("lying_numel", (0, (64,), (1,)), numel=64)  # storage bytes shorter than declared
    zip_case("ok_overlap", (2, (3, 4), (4, 1)))  # in bounds: allowed, values checked
    # Compression bomb: a 16-byte tensor whose storage member inflates to 256 MiB.
    bomb = tmp_path / "bomb.pt"
    big = StorageRef("0", data, numel=(256 << 20) // 4)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", dumps({"w": tensor(big, 0, (4,), (1,))}))
        with zf.open("archive/data/0", "w", force_zip64=True) as m:
            chunk = bytes(1 << 20)
            m.write(data[:4].tobytes())
            for _ in range(256):
                m.write(chunk)
    cases["bomb"] = bomb
    assert os.path.getsize(bomb) < 2 << 20
    # Legacy format: a size field of 2**40 and a storage count that lies.
    legacy = tmp_path / "legacy_huge.pt"
    legacy.write_bytes(legacy_bytes({"w": tensor(ref, 0, (4,), (1,))}, [ref], counts=[1 << 40]))
    cases["legacy_huge"] = legacy
    huge_numel = StorageRef("0", data, numel=1 << 40)
    legacy2 = tmp_path / "legacy_numel.pt"
    legacy2.write_bytes(
        legacy_bytes({"w": tensor(huge_numel, 0, (4,), (1,))}, [huge_numel], counts=[1 << 40])
    )
    cases["legacy_numel"] = legacy2
    out = _load_in_child(cases.values())
    for name, path in cases.items():
        status, detail, _ = out[str(path)]
        if name in ("ok_overlap", "bomb"):
            assert status == "ok", (name, detail)
        else:
            assert status == "refused", (name, detail)
            assert str(path) in detail, (name, detail)
    assert out[str(cases["ok_overlap"])][1]["w"] == data[2:14].reshape(3, 4).tolist()
    assert out[str(cases["bomb"])][1]["w"] == [0.0, 1.0, 2.0, 3.0]
    rss = {name: out[str(p)][2] for name, p in cases.items()}
    assert out["maxrss_kb"] < 150_000, rss  # nothing inflated or allocated from lying fields


# --------------------------------------------------------------------------- StyleGAN2 (TF)


def _tf_net(variables, components=None):
    state = {
        "version": 4,
        "name": "G",
        "static_kwargs": {"resolution": 8},
        "components": components or {},
        "build_module_src": "import os\nos.system('touch /tmp/never')\n",
        "build_func_name": "G_main",
        "variables": variables,
    }
    return R(G("dnnlib.tflib.network", "Network"), (), state)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stylegan2_tf_pickle_refuses_code_and_bare_ndarray(tmp_path, protocol):
    marker = tmp_path / "pwned"
    ok = (_tf_net([("w", np.ones(3, np.float32))]),) * 3
    nets = stylegan2.load_pickle(dumps(ok, protocol))
    assert nets[0].variables[0][1].tolist() == [1.0, 1.0, 1.0]
    bad = {
        "code": (_tf_net([("w", evil(marker))]),) * 3,
        "ndarray": (_tf_net([("w", R(G("numpy", "ndarray"), ((1 << 40,),)))]),) * 3,
        "foreign": (R(G("subprocess", "call"), (["touch", str(marker)],)),) * 3,
    }
    for name, obj in bad.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(dumps(obj, protocol))
        with pytest.raises((pickle.UnpicklingError, ValueError), match=f"{name}.pkl"):
            stylegan2.convert_file(str(path))
    assert not marker.exists()


# --------------------------------------------------------------------------- StyleGAN2-ADA


def _storage_bytes(array) -> bytes:
    """``torch.save(storage, _use_new_zipfile_serialization=False)`` of one storage."""
    ref = StorageRef("0", array)
    return legacy_bytes(ref, [ref])


def _ada_tensor(array, parameter=False):
    flat = np.ascontiguousarray(array).reshape(np.shape(array))  # 0-d stays 0-d
    storage = R(G("torch.storage", "_load_from_bytes"), (_storage_bytes(flat.reshape(-1)),))
    stride = tuple(s // flat.itemsize for s in flat.strides)
    t = R(
        G("torch._utils", "_rebuild_tensor_v2"),
        (storage, 0, flat.shape, stride, False, collections.OrderedDict()),
    )
    if parameter:
        t = R(G("torch._utils", "_rebuild_parameter"), (t, False, collections.OrderedDict()))
    return t


def _persistent(class_name, params=None, buffers=None, modules=None, src="", **attrs):
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(
            (k, _ada_tensor(v, True)) for k, v in (params or {}).items()
        ),
        "_buffers": collections.OrderedDict(
            (k, _ada_tensor(v)) for k, v in (buffers or {}).items()
        ),
        "_non_persistent_buffers_set": set(),
        "_forward_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(modules or {}),
        "_init_args": (),
        "_init_kwargs": R(G("dnnlib.util", "EasyDict"), (), None, attrs.pop("kwargs", {})),
        **attrs,
    }
    meta = {
        "type": "class",
        "version": 6,
        "module_src": src or "import os\nos.system('touch /tmp/never')\n",
        "class_name": class_name,
        "state": state,
    }
    return R(G("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,))


def _ada_snapshot(rng, src=""):
    fc = rng.standard_normal((4, 3)).astype(np.float32)
    noise = rng.standard_normal((4, 4)).astype(np.float32)
    d_w = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)

    def gen():
        fc0 = _persistent("FullyConnectedLayer", {"weight": fc, "bias": np.zeros(4, np.float32)})
        mapping = _persistent(
            "MappingNetwork", buffers={"w_avg": np.ones(4, np.float32)}, modules={"fc0": fc0}
        )
        conv1 = _persistent(
            "SynthesisLayer",
            {"weight": d_w},
            buffers={"noise_const": noise},
            in_size=np.array([4, 4]),
            src=src,
        )
        b4 = _persistent("SynthesisBlock", modules={"conv1": conv1})
        synthesis = _persistent("SynthesisNetwork", modules={"b4": b4})
        return _persistent(
            "Generator",
            modules={"mapping": mapping, "synthesis": synthesis},
            kwargs={"z_dim": 4, "mapping_kwargs": R(G("dnnlib.util", "EasyDict"), (), None, {})},
        )

    disc = _persistent("Discriminator", {"b4.weight": d_w})
    snapshot = {
        "G": gen(),
        "D": disc,
        "G_ema": gen(),
        "augment_pipe": None,
        "training_set_kwargs": {"path": "ffhq.zip", "resolution": 4},
    }
    return snapshot, dict(fc=fc, noise=noise, d_w=d_w)


@pytest.mark.parametrize("protocol", [2, 4])
def test_stylegan2_ada_reader_values(tmp_path, protocol):
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').close()\n"  # the official loader would exec this source
    snapshot, ref = _ada_snapshot(np.random.default_rng(0), src=src)
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(dumps(snapshot, protocol))
    net = stylegan2_ada.load(str(path))
    t = net.tensors
    np.testing.assert_array_equal(t["G.mapping.fc0.weight"], ref["fc"])
    np.testing.assert_array_equal(t["G_ema.synthesis.b4.conv1.noise_const"], ref["noise"])
    np.testing.assert_array_equal(t["D.b4.weight"], ref["d_w"])
    assert t["G.mapping.w_avg"].tolist() == [1.0] * 4
    assert set(k.split(".")[0] for k in t) == {"G", "D", "G_ema"}
    assert net.class_names == {"G": "Generator", "D": "Discriminator", "G_ema": "Generator"}
    assert net.init_kwargs["G"] == {"z_dim": 4, "mapping_kwargs": {}}
    assert not marker.exists(), "module_src must never be executed"


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_stylegan2_ada_malicious_variants_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    snapshot, _ = _ada_snapshot(np.random.default_rng(0))
    inner_evil = R(G("torch.storage", "_load_from_bytes"), (legacy_bytes(evil(marker), []),))
    variants = {
        "top": evil(marker),
        "state": {**snapshot, "G": _persistent("Generator", training=evil_exec(marker))},
        "storage": {**snapshot, "D": _persistent("D", buffers={}, x=inner_evil)},
        "torch_module": {**snapshot, "D": R(G("torch.nn.modules.linear", "Linear"), (3, 4))},
        "subclass": {
            **snapshot,
            "D": _persistent(
                "D",
                y=R(
                    G("torch._utils", "_rebuild_from_type_v2"),
                    (G("os", "system"), G("torch", "Tensor"), (f"touch {marker}",), {}),
                ),
            ),
        },
    }
    for name, obj in variants.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(dumps(obj, protocol))
        with pytest.raises((safe_io.UnsafeFileError, ValueError), match=f"{name}.pkl"):
            stylegan2_ada.load(str(path))
    assert not marker.exists()


# ------------------------------------------------- StyleGAN2-ADA -> this suite's StyleGAN2 trees

_ADA_BUFFERS = {"resample_filter", "noise_const", "w_avg"}


def _ada_module(class_name, flat, kwargs=None):
    """Persistent modules nested by the dotted names of ``flat`` (the official module state)."""
    params, buffers, children = {}, {}, {}
    for name, value in flat.items():
        head, _, rest = name.partition(".")
        if rest:
            children.setdefault(head, {})[rest] = value
        else:
            (buffers if name in _ADA_BUFFERS else params)[name] = value
    modules = {k: _ada_module("Module", v) for k, v in children.items()}
    return _persistent(class_name, params, buffers, modules, kwargs=kwargs or {})


def _ada_network_snapshot(seed=0, extra=None):
    """A whole official snapshot of a tiny StyleGAN2 (8x8, 2 mapping layers, 8 channels): random
    tensors in the layout ``stylegan2_ada.official_layout`` derives from the init kwargs."""
    g = dict(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=8,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={
            "channel_base": 64,
            "channel_max": 8,
            "num_fp16_res": 4,
            "conv_clamp": 256,
        },
    )
    d = dict(
        c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8, conv_clamp=256
    )
    kwargs = {"G": g, "G_ema": g, "D": d}
    layout = stylegan2_ada.official_layout(
        stylegan2_ada.settings(stylegan2_ada.NetworkPickle({}, kwargs, {}))
    )
    rng = np.random.default_rng(seed)
    f2 = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    flat = {}
    for key in stylegan2_ada.NETWORKS:
        for name, shape in layout["D" if key == "D" else "G"].items():
            v = f2 if name.endswith("resample_filter") else rng.standard_normal(shape)
            flat[f"{key}.{name}"] = np.asarray(v, np.float32)
    flat.update(extra or {})
    snapshot = {"training_set_kwargs": {"path": "ffhq.zip", "resolution": 8}}
    for key in stylegan2_ada.NETWORKS:
        own = {k.partition(".")[2]: v for k, v in flat.items() if k.partition(".")[0] == key}
        snapshot[key] = _ada_module(
            "Discriminator" if key == "D" else "Generator", own, kwargs[key]
        )
    snapshot["augment_pipe"] = None
    return snapshot, flat, kwargs


def test_stylegan2_ada_pickle_converts_with_the_tool_and_generates(tmp_path):
    """File -> ``tools.convert_stylegan2`` (format detected) -> checkpoint equal to the in-memory
    conversion, with the official noise buffers -> ``tools.generate`` with the recorded settings;
    an unsupported network is refused with one line and exit status 2."""
    import jax

    from jaxpapers import checkpoint
    from jaxpapers.layers import stylegan2 as sg
    from jaxpapers.tools import generate

    snapshot, flat, kwargs = _ada_network_snapshot()
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(dumps(snapshot, 4))
    tf_path = tmp_path / "tf.pkl"
    tf_path.write_bytes(dumps((_tf_net([("w", np.ones(3, np.float32))]),) * 3, 2))
    assert stylegan2_ada.sniff(str(path)) == "ada" and stylegan2_ada.sniff(str(tf_path)) == "tf"
    want_tree, _ = stylegan2_ada.convert(stylegan2_ada.NetworkPickle(flat, kwargs, {}))
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "jaxpapers.tools.convert_stylegan2", f"--pkl={path}"]
    ok = subprocess.run(cmd + [f"--out={tmp_path / 't'}"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "--config=configs/stylegan2_dgl.py:ffhq256,model.resolution=8," in ok.stdout
    tree = checkpoint.restore_params(str(tmp_path / "t"))
    assert jax.tree.structure(tree) == jax.tree.structure(want_tree)
    for a, b in zip(jax.tree.leaves(want_tree), jax.tree.leaves(tree), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(tree["teacher"]["noise_const"]) == sorted(n for n, _ in sg.noise_layers(8))
    conf = generate.load_config(str(tmp_path / "t"))  # the settings recorded in arch.json
    assert (conf.model.resolution, conf.model.fmap_base, conf.model.mapping_layers) == (8, 32, 2)
    assert conf.model.conv_clamp == 256.0 and ",model.conv_clamp=256.0" in ok.stdout
    images = generate.generate(conf, tree, [0, 1], role="teacher", trunc=0.7)
    t = tree["teacher"]
    g_net = sg.Generator(8, 3, 8, 8, 2, 32, 8, conv_clamp=256.0)
    variables = {"params": t["g_ema"], "noise_const": {"synthesis": t["noise_const"]}}
    z = generate.latents([0, 1], 8)
    want = g_net.apply(variables, z, t["w_avg"], 0.7, noise_mode="const")
    np.testing.assert_allclose(images, np.clip(want, -1, 1), atol=1e-5)
    sg3 = {"G_ema.synthesis.L0_36_512.weight": np.ones((2, 2), np.float32)}
    bad = tmp_path / "stylegan3.pkl"
    bad.write_bytes(dumps(_ada_network_snapshot(extra=sg3)[0], 4))
    cmd[-1] = f"--pkl={bad}"
    refused = subprocess.run(
        cmd + [f"--out={tmp_path / 'u'}"], capture_output=True, text=True, env=env
    )
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and "StyleGAN3" in last and str(bad) in last, refused.stderr
    assert refused.stderr.count("error:") == 1 and not os.path.exists(tmp_path / "u")
