"""lib/face_identity: training separates identities; embed is normalised, grey, differentiable."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import parallel
from jaxpapers.lib import face_identity as fi

TINY = fi.IdentityConfig(size=(16, 16), widths=(4, 8, 8, 16, 16), depths=(1, 1, 1, 1), embed_dim=16)


def synthetic_identities(n_ids: int, per_id: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each 'identity' is a fixed random smooth pattern; samples add noise and brightness."""
    r = np.random.default_rng(0)
    protos = r.normal(size=(n_ids, 4, 4))
    protos = np.kron(protos, np.ones((5, 5)))  # 20x20 blocky, smooth at 16x16
    r = np.random.default_rng(seed)
    imgs, labs = [], []
    for k in range(n_ids):
        for _ in range(per_id):
            x = protos[k] + 0.4 * r.normal(size=protos[k].shape) + r.uniform(-0.3, 0.3)
            imgs.append(np.clip(127.5 + 50 * x, 0, 255).astype(np.uint8)[..., None])
            labs.append(k)
    return np.stack(imgs), np.asarray(labs, np.int32)


@pytest.fixture(scope="module")
def trained():
    images, labels = synthetic_identities(6, 12, seed=1)
    model, log = fi.train_identity_net(
        images, labels, steps=80, seed=0, batch_size=24, lr=0.05, config=TINY, return_log=True
    )
    return model, log


def test_training_separates_identities(trained):
    model, log = trained
    assert np.all(np.isfinite(log["loss"]))
    assert log["loss"][-10:].mean() < log["loss"][:10].mean()
    images, labels = synthetic_identities(6, 6, seed=7)  # fresh samples of the same identities
    s = fi.verification_scores(model, images, labels)
    assert s["cos_same"] > s["cos_diff"] + 0.2, s
    assert s["auc"] > 0.9, s
    # Embedded data-parallel over the 8 devices by default: the scores of one device.
    one = fi.verification_scores(model, images, labels, mesh=parallel.make_mesh(jax.devices()[:1]))
    assert one["auc"] == s["auc"]
    for k in ("cos_same", "cos_diff"):
        assert one[k] == pytest.approx(s[k], abs=1e-6)


def test_embed_normalised_grey_and_differentiable(trained):
    model, _ = trained
    r = np.random.default_rng(0)
    x = jnp.asarray(r.uniform(-1, 1, (3, 24, 20, 3)), jnp.float32)  # any size: resized inside
    e = jax.jit(model.embed)(x)
    assert e.shape == (3, TINY.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, rtol=1e-5)
    grey = fi.to_grey(x)
    np.testing.assert_allclose(model.embed(jnp.repeat(grey, 3, -1)), e, atol=1e-5)
    np.testing.assert_allclose(model.embed(grey), e, atol=1e-5)
    g = jax.jit(jax.grad(lambda z: fi.identity_loss(model, z, x[::-1])))(x)
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0
    np.testing.assert_allclose(fi.identity_loss(model, x, x), 1e-6, rtol=1e-3)
    sim = fi.identity_similarity(e, e)
    np.testing.assert_allclose(sim, 1.0, rtol=1e-5)


def test_save_load_roundtrip(trained, tmp_path):
    model, _ = trained
    fi.save(model, str(tmp_path / "idnet"))
    back = fi.load(str(tmp_path / "idnet"))
    assert back.config == model.config
    x = jnp.zeros((2, 16, 16, 1)) + 0.1
    np.testing.assert_allclose(back.embed(x), model.embed(x), atol=1e-6)
    with pytest.raises(FileNotFoundError):
        fi.load(str(tmp_path / "missing"))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        fi.train_identity_net(np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32), steps=1)
    with pytest.raises(ValueError):
        fi.to_grey(jnp.zeros((1, 4, 4, 2)))


def test_load_or_train_uses_the_cache(trained, tmp_path):
    model, _ = trained
    fi.save(model, str(tmp_path / "cached"))
    # images=None would fail if it trained: the cached model must be loaded instead.
    back = fi.load_or_train(str(tmp_path / "cached"), None, None, steps=1)
    assert back.config == model.config
