"""export_teacher -> teacher file -> a job that starts from it (smoke size, written here)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxpapers import checkpoint, config_lib, methods, parallel, trainer
from jaxpapers.lib import dgl
from jaxpapers.tools import export_teacher

CFG = "configs/stylegan2_dgl.py"


def _teacher_run(tmp_path):
    """A smoke run directory as the trainer writes it; its seed differs from the student job's,
    so a teacher equal to it in that job can only have come from the file."""
    cfg = config_lib.load_config_file(CFG, "smoke,seed=7")
    method = methods.get(cfg.method)
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, _ = trainer.init(method, cfg, mesh)
    state = state.replace(
        step=state.step + 1, teacher=state.teacher.replace(w_avg=state.teacher.w_avg + 0.5)
    )
    workdir = str(tmp_path / "teacher_run")
    trainer.write_config(cfg, workdir)
    ck = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, async_save=False)
    ck.save(1, jax.device_get(state), force=True)
    ck.close()
    return cfg, workdir, jax.device_get(state)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cfg, workdir, state = _teacher_run(tmp)
    out = str(tmp / "teacher.msgpack")
    digest = export_teacher.export(workdir, out)
    return cfg, state, out, digest


def _student_job(path: str):
    cfg = config_lib.load_config_file(CFG, f"smoke,teacher.steps=0,teacher.weights={path}")
    method = methods.get(cfg.method)
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, _ = trainer.init(method, cfg, mesh)
    return cfg, method, jax.device_get(state)


def test_exported_teacher_loads_into_a_job_with_equal_images(exported):
    cfg, trained, path, digest = exported
    with open(os.path.splitext(path)[0] + ".json") as f:
        meta = json.load(f)
    assert meta["sha256"] == digest == dgl.file_sha256(path)
    assert meta["step"] == 1 and meta["model"]["z_dim"] == cfg.model.z_dim
    cfg0, method, state = _student_job(path)
    for name in ("g", "d", "g_ema", "w_avg"):
        a, b = (
            jax.tree.leaves(getattr(state.teacher, name)),
            jax.tree.leaves(getattr(trained.teacher, name)),
        )
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), name
    assert method.phase(cfg0, 0).stage == 1  # Straight to the student.
    key = jax.random.key(3)
    got = method.gan_sampler(state, cfg0, "teacher")(key, 4)
    want = method.gan_sampler(trained, cfg, "teacher")(key, 4)
    np.testing.assert_array_equal(got, want)
    assert float(np.abs(got[0] - got[1]).max()) > 1e-4


def test_a_changed_or_missing_file_fails_in_one_line(exported, tmp_path):
    _, _, path, _ = exported
    bad = str(tmp_path / "bad.msgpack")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open(bad, "wb").write(bytes(data))
    with pytest.raises(FileNotFoundError, match="export_teacher"):
        dgl.load_teacher_file(bad, ("g",))  # No sidecar.
    os.link(os.path.splitext(path)[0] + ".json", str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="sha256"):
        dgl.load_teacher_file(bad, ("g",))
    with pytest.raises(ValueError, match=r"model\.z_dim=16"):
        config_lib.load_config_file(CFG, "smoke")  # (parses)
        cfg = config_lib.load_config_file(
            CFG, f"smoke,teacher.steps=0,teacher.weights={path},model.z_dim=8,model.w_dim=8"
        )
        methods.get("stylegan2_dgl").prepare(cfg)
    with pytest.raises(ValueError, match="not a file name inside"):
        dgl.resolve_weights("..", str(tmp_path))
    shipped = dgl.resolve_weights("x.msgpack", str(tmp_path))
    assert shipped == os.path.realpath(str(tmp_path / "x.msgpack"))


def test_cli_prints_the_hash_and_rejects_bad_input(exported, tmp_path):
    _, _, path, digest = exported
    run_dir = os.path.dirname(path) + "/teacher_run"
    out = str(tmp_path / "again.msgpack")
    cmd = [sys.executable, "-m", "jaxpapers.tools.export_teacher", f"--workdir={run_dir}"]
    r = subprocess.run(cmd + [f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert digest in r.stdout  # The same checkpoint exports byte-identically.
    r = subprocess.run(
        cmd + [f"--out={tmp_path}/x.npz"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and ".msgpack" in r.stderr
