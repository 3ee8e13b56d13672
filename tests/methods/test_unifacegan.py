"""UniFaceGAN: standard jit test, sample selection, smoke job end to end (synthetic faces)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import config_lib, methods
from jaxpapers.lib import face_identity
from jaxpapers.methods.unifacegan import inference, inputs, steps

CFG = "configs/unifacegan.py"


def test_unifacegan_train_step_jit(jit_check):
    cfg = config_lib.load_config_file(CFG, "smoke")
    _, metrics = jit_check("unifacegan", cfg)
    for m in metrics:
        assert float(m["g_temporal"]) > 0.0  # video samples with a next frame contribute
        assert float(m["p_self"]) <= 1.0


@pytest.fixture(scope="module")
def smoke():
    cfg = config_lib.load_config_file(CFG, "smoke")
    return cfg, inputs.make_source(cfg, "train")


def test_source_records_are_consistent(smoke):
    cfg, src = smoke
    spec = methods.get("unifacegan").input_spec(cfg)
    assert set(src) == set(spec)
    n = len(src["image"])
    for k, s in spec.items():
        assert src[k].shape[1:] == s.shape[1:] and src[k].dtype == s.dtype, k
        assert len(src[k]) == n
    # Pose (s R (identity + expr) + t) reproduces the tracked meshes of frames t and t+1.
    for sfx in ("", "_next"):
        rec = steps.conditioning.pose_points(
            jnp.asarray(src["identity"] + src["expr" + sfx]),
            jnp.asarray(src["pose_s" + sfx]),
            jnp.asarray(src["pose_R" + sfx]),
            jnp.asarray(src["pose_t" + sfx]),
        )
        np.testing.assert_allclose(np.asarray(rec), src["verts" + sfx], atol=1e-3)
    # Train split: last frame of each video has no next frame.
    assert 0 < src["has_next"].mean() < 1
    assert not np.array_equal(src["ref_image"], src["image"])


def test_dynamic_sample_selection_schedule(smoke):
    cfg, src = smoke
    c = config_lib.load_config_file(CFG, "default")
    assert float(steps.p_self(c, jnp.asarray(0))) == 1.0
    w, r = c.select.warmup_steps, c.select.ramp_steps
    assert float(steps.p_self(c, jnp.asarray(w + r // 2))) == pytest.approx(0.75)
    assert float(steps.p_self(c, jnp.asarray(w + 10 * r))) == pytest.approx(c.select.p_self_min)
    batch = {k: jnp.asarray(v[:8]) for k, v in src.items()}
    pairs = steps.select_pairs(batch, jax.random.key(0), jnp.asarray(1.0), 0.5)
    assert bool(jnp.all(pairs["self_pair"])) and bool(jnp.all(pairs["has_gt"]))
    assert not bool(jnp.any(pairs["reenact"]))
    np.testing.assert_array_equal(np.asarray(pairs["src_identity"]), src["identity"][:8])
    pairs = steps.select_pairs(batch, jax.random.key(0), jnp.asarray(0.0), 1.0)
    assert bool(jnp.all(pairs["reenact"])) and not bool(jnp.any(pairs["has_gt"]))
    np.testing.assert_array_equal(
        np.asarray(pairs["src_identity"]), src["identity"][np.roll(np.arange(8), 1)]
    )


def test_smoke_job_writes_videos_and_metrics(smoke_run):
    workdir, res = smoke_run("unifacegan")
    cfg = config_lib.load_config_file(CFG, "smoke")
    files = os.listdir(workdir)
    for name in ("swap.mp4", "reenact.mp4", "self.mp4", "strip_step2.png", "source.png"):
        assert name in files, (name, files)
    for k in ("eval/rec_l1", "eval/flicker_swap", "eval/flicker_real", "eval/fd_px_swap"):
        assert np.isfinite(res[k]), (k, res)
    import av

    with av.open(os.path.join(workdir, "swap.mp4")) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == cfg.data.synthetic_frames


def test_identity_net_is_carried_in_the_state(smoke):
    """The frozen identity net comes from ``prepare`` through the state, never from a cache."""
    cfg, src = smoke
    cfg = cfg.copy_and_resolve_references()
    cfg.loss.identity, cfg.loss.perceptual = 1.0, 1.0
    id_cfg = face_identity.IdentityConfig(size=(16, 16), widths=(4, 4, 4, 4, 4), embed_dim=8)
    v = face_identity.build_net(id_cfg).init(
        jax.random.key(1), jnp.zeros((1, 16, 16, 1)), train=False
    )
    net = face_identity.IdentityModel(v["params"], v["batch_stats"], id_cfg)
    state = jax.jit(lambda k, p: steps.init_state(k, cfg, prepared=p))(
        jax.random.key(0), {"identity": net}
    )
    batch = {k: jnp.asarray(v[: cfg.batch_size]) for k, v in src.items()}
    new, m = jax.jit(lambda s, b: steps.train_step(s, b, config=cfg))(state, batch)
    assert float(m["g_identity"]) > 0 and np.isfinite(float(m["g_perceptual"]))
    for a, b in zip(jax.tree.leaves(new.identity), jax.tree.leaves(net), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # frozen


def test_write_mp4_roundtrip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    p = inference.write_mp4(str(tmp_path / "x.mp4"), frames, fps=10, scale=1)
    import av

    with av.open(p) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == 5 and got[0].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="uint8"):
        inference.write_mp4(str(tmp_path / "y.mp4"), frames.astype(np.float32))


def test_every_preset_parses():
    for p in ("default", "paper", "smoke"):
        c = config_lib.load_config_file(CFG, p)
        assert c.method == "unifacegan"
    assert config_lib.load_config_file(CFG, "default,model.norm=spade").model.norm == "spade"
    with pytest.raises(ValueError, match="Unknown preset"):
        config_lib.load_config_file(CFG, "nope")
