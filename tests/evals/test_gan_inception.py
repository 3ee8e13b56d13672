"""FID Inception-v3: converter round trip (torch files written here without torch) and shapes.

The writer below produces ``torch.save`` bytes as torch/serialization.py does: tensors pickle as
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` and
storages as persistent ids ``('storage', torch.FloatStorage, key, 'cpu', numel[, view])``.
Globals are emitted as raw GLOBAL opcodes by name, so torch need not be importable.
"""

import collections
import io
import pickle
import struct
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxpapers.convert import inception as convert
from jaxpapers.layers import inception

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TYPE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce callables to be callable
        raise NotImplementedError


class _StorageRef:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _StorageRef, shape):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce__(self):
        stride, acc = [], 1
        for dim in reversed(self.shape):
            stride.insert(0, acc)
            acc *= dim
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (
            self.storage,
            0,
            self.shape,
            tuple(stride),
            False,
            collections.OrderedDict(),
        )


class _TorchPickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            stype = _Global("torch", _TYPE_NAMES[obj.array.dtype])
            pid = ("storage", stype, obj.key, "cpu", obj.array.size)
            return pid + (None,) if self.legacy else pid
        return None


def _save_global_marker(pickler, obj):
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())


_TorchPickler.dispatch[_Global] = _save_global_marker


def write_state_dict(path: str, state: dict[str, np.ndarray], legacy: bool = False) -> None:
    """Saves ``state`` (name -> float32/int64 array) as torch.save would."""
    refs = {}
    tree = collections.OrderedDict()
    for i, (name, value) in enumerate(state.items()):
        value = np.ascontiguousarray(value)
        refs[str(i)] = _StorageRef(str(i), value.reshape(-1))
        tree[name] = _Tensor(refs[str(i)], value.shape)
    if legacy:
        with open(path, "wb") as f:
            for header in (_LEGACY_MAGIC, 1001, dict(protocol_version=1001, little_endian=True)):
                pickle.dump(header, f, protocol=2)
            _TorchPickler(f, legacy=True).dump(tree)
            keys = sorted(refs)
            pickle.dump(keys, f, protocol=2)
            for key in keys:
                arr = refs[key].array
                f.write(struct.pack("<q", arr.size) + arr.tobytes())
        return

    buf = io.BytesIO()
    _TorchPickler(buf, legacy=False).dump(tree)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for key, ref in refs.items():
            zf.writestr(f"archive/data/{key}", ref.array.tobytes())
        zf.writestr("archive/version", "3\n")


# ----------------------------------------------------------------------------- tests

SMALL = 0.125  # width scale of the test-written file (same keys, 1/64 of the values)


def _torch_state_like(scale: float, seed: int = 0) -> dict[str, np.ndarray]:
    """A random state dict with pytorch-fid's key names/layouts for a model of this width."""
    model = inception.FIDInceptionV3(scale=scale)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    rng = np.random.default_rng(seed)
    state = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        coll, *mod, name = path
        key = ".".join(mod)
        shape = leaf.shape
        if name == "kernel" and mod[-1] == "conv":  # HWIO -> OIHW
            kh, kw, ci, co = shape
            state[key + ".weight"] = rng.normal(0, np.sqrt(2 / (kh * kw * ci)), (co, ci, kh, kw))
        elif name == "kernel":  # fc (in, out) -> (out, in)
            state[key + ".weight"] = rng.normal(0, 0.05, shape[::-1])
        elif coll == "params" and name == "scale":
            state[key + ".weight"] = rng.uniform(0.5, 1.5, shape)
        elif coll == "params" and name == "bias":
            state[key + ".bias"] = rng.normal(0, 0.1, shape)
        elif name == "mean":
            state[key + ".running_mean"] = rng.normal(0, 0.1, shape)
        elif name == "var":
            state[key + ".running_var"] = rng.uniform(0.5, 1.5, shape)
        else:
            raise AssertionError(path)
    state = {k: v.astype(np.float32) for k, v in state.items()}
    # Real BN state dicts also carry int64 counters; the converter must skip them.
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(7, np.int64)
    return state


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    state = _torch_state_like(SMALL)
    path = tmp_path_factory.mktemp("inc") / "pt_inception_small.pth"
    write_state_dict(str(path), state)
    return str(path), state


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_reader_round_trip(tmp_path, legacy):
    state = _torch_state_like(SMALL, seed=1)
    path = str(tmp_path / "w.pth")
    write_state_dict(path, state, legacy=legacy)
    got = convert.read_torch_state_dict(path)
    assert got.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(got[k], state[k])
        assert got[k].dtype == state[k].dtype


def test_converter_maps_keys_and_layouts(small_file):
    path, state = small_file
    variables = convert.load_variables(path, scale=SMALL)  # also checks the model's shapes
    p, bs = variables["params"], variables["batch_stats"]
    w = state["Mixed_6b.branch7x7_2.conv.weight"]  # (O, I, 1, 7) -> (1, 7, I, O)
    np.testing.assert_array_equal(
        p["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"], w.transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(p["fc"]["kernel"], state["fc.weight"].T)
    np.testing.assert_array_equal(
        bs["Mixed_7c"]["branch_pool"]["bn"]["var"], state["Mixed_7c.branch_pool.bn.running_var"]
    )
    np.testing.assert_array_equal(
        p["Conv2d_1a_3x3"]["bn"]["scale"], state["Conv2d_1a_3x3.bn.weight"]
    )
    with pytest.raises(ValueError, match="do not match"):
        convert.check_variables(variables, scale=1.0)  # a small file is not the real network
    bad = dict(state)
    bad["Mixed_5b.extra.conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="unexpected"):
        convert.check_variables(convert.convert_state_dict(bad), scale=SMALL)


def test_converted_network_forward_shapes(small_file, tmp_path):
    path, _ = small_file
    npz = str(tmp_path / "conv.npz")
    convert.save_variables(convert.load_variables(path, scale=SMALL), npz)
    variables = convert.load_variables(npz, scale=SMALL)
    model = inception.FIDInceptionV3(scale=SMALL)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))  # resized to 299 inside
    out = jax.jit(model.apply)(variables, x)
    pool_dim = out["pool"].shape[-1]
    assert out["pool"].shape == (2, pool_dim) and out["logits"].shape == (2, 1008)
    assert np.all(np.isfinite(np.asarray(out["pool"]))) and np.all(np.asarray(out["pool"]) >= 0)
    # IS logits drop the fc bias (StyleGAN2-ADA); FID logits keep it.
    np.testing.assert_allclose(
        out["logits"] - out["logits_unbiased"],
        np.broadcast_to(variables["params"]["fc"]["bias"], (2, 1008)),
        rtol=1e-4,
        atol=1e-4,
    )


def test_full_width_architecture_shapes():
    model = inception.FIDInceptionV3()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    p = shapes["params"]
    # Widths of pytorch-fid / torchvision Inception3 (HWIO kernels).
    assert p["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)
    assert p["Mixed_5b"]["branch_pool"]["conv"]["kernel"].shape == (1, 1, 192, 32)
    assert p["Mixed_6e"]["branch7x7dbl_5"]["conv"]["kernel"].shape == (1, 7, 192, 192)
    assert p["Mixed_7b"]["branch1x1"]["conv"]["kernel"].shape == (1, 1, 1280, 320)
    assert p["Mixed_7c"]["branch_pool"]["conv"]["kernel"].shape == (1, 1, 2048, 192)
    assert p["fc"]["kernel"].shape == (2048, 1008)
    n = sum(v.size for v in jax.tree.leaves(p))
    assert 23_000_000 < n < 24_500_000  # ~23.8 M parameters in Inception-v3 without aux head
    out = jax.eval_shape(model.apply, shapes, jnp.zeros((3, 64, 64, 3)))
    assert out["pool"].shape == (3, 2048) and out["logits"].shape == (3, 1008)


def _torch_bilinear_reference(x: np.ndarray, out: int) -> np.ndarray:
    """F.interpolate(bilinear, align_corners=False) for one HxW plane, from its formula."""

    def weights(n_in):
        scale = n_in / out
        src = np.maximum((np.arange(out) + 0.5) * scale - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = src - i0
        m = np.zeros((out, n_in))
        m[np.arange(out), i0] += 1 - lam
        m[np.arange(out), i1] += lam
        return m

    return weights(x.shape[0]) @ x @ weights(x.shape[1]).T


@pytest.mark.parametrize("size", [28, 64, 512])
def test_resize_matches_pytorch_bilinear(size):
    x = np.random.default_rng(size).uniform(size=(1, size, size, 1)).astype(np.float32)
    got = np.asarray(inception.resize_bilinear_299(jnp.asarray(x)))[0, :, :, 0]
    # float32 interpolation weights (jax and torch alike) differ from float64 by ~2e-5.
    np.testing.assert_allclose(got, _torch_bilinear_reference(x[0, :, :, 0], 299), atol=5e-5)


def test_tf_avg_pool_ignores_padding_and_max_pool_branch():
    x = np.random.default_rng(0).normal(size=(1, 5, 6, 2)).astype(np.float32)
    got = np.asarray(inception._avg_pool_tf(jnp.asarray(x)))
    ref = np.zeros_like(x)
    for i in range(5):
        for j in range(6):
            ref[0, i, j] = x[0, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].mean(axis=(0, 1))
    np.testing.assert_allclose(got, ref, atol=1e-6)
    got = np.asarray(inception._max_pool(jnp.asarray(x), 1, 1))
    assert got.shape == x.shape and np.all(got >= x)


def test_missing_weights_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXPAPERS_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        convert.find_weights("")
    with pytest.raises(FileNotFoundError, match="mseitzer/pytorch-fid"):
        convert.find_weights(str(tmp_path / "nope.pth"))


def test_reader_refuses_code_globals(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.GLOBAL + b"os\nsystem\n" + pickle.STOP)
    with pytest.raises(pickle.UnpicklingError, match="refusing global os.system"):
        convert.read_torch_state_dict(str(path))


@pytest.mark.slow
def test_inception_evaluator_end_to_end_with_full_size_file(tmp_path):
    """Full-width FID Inception from a test-written 95 MB file through evaluate_generator."""
    from jaxpapers.evals.gan import evaluator

    path = str(tmp_path / convert.FILE_NAME)
    write_state_dict(path, _torch_state_like(1.0), legacy=True)
    cfg = evaluator.default_eval_config()
    cfg.update(
        dict(
            feature_net="inception",
            inception_weights=path,
            num_samples=16,
            batch_size=8,
            is_splits=2,
            kid_subsets=5,
            kid_subset_size=8,
            pr_num_samples=16,
            stats_dir=str(tmp_path / "stats"),
        )
    )
    real = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    res = evaluator.evaluate_generator(
        lambda k, n: jax.random.uniform(k, (n, 32, 32, 3), minval=-1, maxval=1),
        cfg,
        str(tmp_path),
        real_images=real,
    )
    assert set(res) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"}
    assert all(np.isfinite(v) for v in res.values())
