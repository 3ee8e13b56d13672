"""``python -m jaxpapers.tools.generate`` on smoke run directories and a converted checkpoint."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxpapers import checkpoint, config_lib, testing
from jaxpapers.layers import stylegan2 as sg
from jaxpapers.methods.stylegan2_dgl.model import make_nets
from jaxpapers.tools import generate as G


def _smoke_run(tmp_path, cfg_file: str, arg: str):
    """A run directory as the trainer writes it (config.json + checkpoints) at step 0."""
    cfg = config_lib.load_config_file(cfg_file, arg)
    workdir = str(tmp_path / cfg.method)
    return cfg, workdir, testing.initial_run(cfg, workdir)


@pytest.fixture(scope="module")
def sg_run(tmp_path_factory):
    return _smoke_run(tmp_path_factory.mktemp("sg"), "configs/stylegan2_dgl.py", "smoke")


def test_parse_seeds():
    assert G.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert G.parse_seeds("5") == [5]
    for bad in ("a-b", "", "-1", "3-x"):
        with pytest.raises(ValueError, match="seeds"):
            G.parse_seeds(bad)


def test_stylegan2_run_images_are_per_seed_and_follow_psi(sg_run, tmp_path):
    cfg, workdir, state = sg_run
    loaded = G.load_config(workdir)
    assert loaded.method == "stylegan2_dgl" and loaded.model.resample_filter == (1, 3, 3, 1)
    tree = checkpoint.restore_params(workdir)
    a = G.generate(loaded, tree, [0, 1, 2], role="student")
    r, c = cfg.model.resolution, cfg.model.img_channels
    assert a.shape == (3, r, r, c) and np.all(np.abs(a) <= 1)
    # A seed's image does not depend on the other seeds of the call (const noise).
    np.testing.assert_allclose(G.generate(loaded, tree, [2], role="student")[0], a[2], atol=1e-6)
    assert float(np.abs(a[0] - a[1]).max()) > 1e-4
    # psi = 0: every latent is truncated onto w_avg, so all seeds give the same image.
    flat = G.generate(loaded, tree, [0, 1], role="teacher", trunc=0.0)
    np.testing.assert_allclose(flat[0], flat[1], atol=1e-6)
    # Random noise: reproducible per seed, different from the const buffers.
    rnd = G.generate(loaded, tree, [0, 1], role="student", noise_mode="random")
    np.testing.assert_array_equal(
        rnd[1], G.generate(loaded, tree, [1], role="student", noise_mode="random")[0]
    )
    # Files: one grid, or one PNG per seed.
    grid = G.save(a, [0, 1, 2], str(tmp_path / "grid.png"))
    assert Image.open(grid[0]).size[0] > r
    files = G.save(a, [0, 1, 2], str(tmp_path / "each"))
    assert [os.path.basename(f) for f in files] == ["seed0000.png", "seed0001.png", "seed0002.png"]
    assert Image.open(files[0]).size == (r, r)


def test_converted_teacher_uses_its_noise_buffers(sg_run, tmp_path):
    """A converted checkpoint: teacher only, no config.json, official noise buffers stored."""
    cfg, _, state = sg_run
    t = state.teacher
    noise = sg.noise_const_buffers(jax.random.key(42), cfg.model.resolution)
    tree = {"teacher": {"g": t.g, "d": t.d, "g_ema": t.g_ema, "w_avg": t.w_avg}}
    tree["teacher"]["noise_const"] = noise
    out = str(tmp_path / "converted")
    ck = checkpoint.Checkpointer(os.path.join(out, "checkpoints"), keep=1, async_save=False)
    ck.save(0, tree, force=True)
    ck.close()
    with pytest.raises(FileNotFoundError, match="--config"):
        G.load_config(out)
    conf = G.load_config(out, "configs/stylegan2_dgl.py:smoke")
    restored = checkpoint.restore_params(out)
    with pytest.raises(ValueError, match="--role=teacher"):
        G.generate(conf, restored, [0], role="student")
    got = G.generate(conf, restored, [0, 1], role="teacher")
    g_net = make_nets(conf, "teacher")[0]
    z = G.latents([0, 1], cfg.model.z_dim)
    want = g_net.apply(
        {"params": t.g_ema, "noise_const": {"synthesis": noise}}, z, t.w_avg, noise_mode="const"
    )
    np.testing.assert_allclose(got, np.clip(want, -1, 1), atol=1e-5)


def test_biggan_run_class_and_truncation(tmp_path):
    cfg, workdir, _ = _smoke_run(tmp_path, "configs/biggan_dgl.py", "smoke")
    conf = G.load_config(workdir)
    tree = checkpoint.restore_params(workdir)
    a = G.generate(conf, tree, [3, 4], role="student", class_idx=1)
    r, c = cfg.model.resolution, cfg.model.img_channels
    assert a.shape == (2, r, r, c)
    b = G.generate(conf, tree, [3, 4], role="student", class_idx=2)
    assert float(np.abs(a - b).max()) > 1e-5  # The class conditions the image.
    z = G.latents([3, 4, 5], 16, trunc=0.5)
    assert float(np.abs(z).max()) <= 0.5
    with pytest.raises(ValueError, match="class_idx"):
        G.generate(conf, tree, [0], class_idx=cfg.model.num_classes)


def test_command_line_help_and_bad_input(sg_run, tmp_path):
    _, workdir, _ = sg_run
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "jaxpapers.tools.generate"]
    ok = subprocess.run(
        cmd + [f"--workdir={workdir}", "--seeds=0-1", f"--out={tmp_path / 'g.png'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert os.path.isfile(tmp_path / "g.png")
    bad = subprocess.run(
        cmd + [f"--workdir={workdir}", "--seeds=x", f"--out={tmp_path / 'b.png'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and last.startswith("generate: ") and "--seeds" in last, bad.stderr
    helped = subprocess.run(cmd + ["--help"], capture_output=True, text=True, env=env)
    assert "--noise_mode" in helped.stdout and "official" in helped.stdout
