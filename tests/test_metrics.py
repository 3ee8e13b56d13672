"""The workdir record (metrics.jsonl, final_metrics.json, run_info.json, TensorBoard events read
back from disk) and the progress lines (ETA without compilation, first line at once)."""

import io
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from jaxpapers import config_lib, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_format_duration():
    assert metrics.format_duration(None) == "?"
    assert metrics.format_duration(float("inf")) == "?"
    assert metrics.format_duration(65) == "1:05"
    assert metrics.format_duration(3 * 3600 + 7) == "3:00:07"
    assert metrics.format_duration(2 * 86400 + 3600) == "2d 01:00:00"


def test_evals_remaining_matches_the_trainer_cadence():
    # The trainer evaluates when done % eval_every == 0 and done < total, then once at the end.
    def brute(step, total, every):
        return sum(1 for d in range(step + 1, total) if every and d % every == 0) + 1

    for step, total, every in [
        (0, 100, 10),
        (5, 100, 10),
        (10, 100, 10),
        (99, 100, 10),
        (0, 100, 0),
        (0, 7, 3),
        (6, 7, 3),
        (100, 100, 10),
    ]:
        assert metrics.evals_remaining(step, total, every) == brute(step, total, every)
    assert metrics.evals_remaining(0, 100, 10, final_eval=False) == 9


def test_eta_pure_function():
    assert metrics.eta_seconds([], 100) is None  # no measurement yet: unknown, not infinite
    assert metrics.eta_seconds([], 0) == 0.0
    # 10 steps in 1 s and 30 steps in 3 s -> 10 it/s; 50 steps left -> 5 s, plus 2 evals of 4 s.
    assert metrics.eta_seconds([(10, 1.0), (30, 3.0)], 50) == pytest.approx(5.0)
    assert metrics.eta_seconds([(10, 1.0)], 50, evals_left=2, eval_seconds=4.0) == pytest.approx(13)


def test_progress_eta_excludes_compilation_and_evaluation():
    """60 s compile, then 0.1 s/step: the first ETA must be ~ steps_left * 0.1 s, not a rate that
    includes the compile (which said 1 h 05 min for a minutes-long classifier run)."""
    clock, lines = FakeClock(), []
    p = metrics.Progress(
        1000, 128, 0, eval_every=500, final_eval=True, clock=clock, printer=lines.append
    )
    p.compile_started(0)
    clock.t += 60.0
    assert p.compile_finished(1) == pytest.approx(60.0)
    p.print(1, {"loss": 2.0})  # the first line, straight after the compilation
    assert lines[0].startswith("compiling the train step") and "60.0 s" in lines[1]
    assert lines[2].startswith("step 1/1000") and "ETA ?" in lines[2] and "loss=2" in lines[2]
    clock.t += 9.9  # steps 2..100
    p.print(100, {"loss": 1.0})
    assert "10.00 it/s" in lines[-1] and "1280.0 ex/s" in lines[-1]
    assert p.eta(100) == pytest.approx(90.0)  # 900 steps at 10 it/s (no eval measured yet)
    assert "ETA 1:30" in lines[-1]
    clock.t += 50.0  # steps 101..500 in 40 s would be 10 it/s; here 10 s of it are an eval:
    p.print(500, {"loss": 0.5})
    clock.t += 30.0
    p.eval_finished(500, {"acc": 0.9}, seconds=30.0)
    assert lines[-1] == "eval step 500 (30.0 s): acc=0.9"
    clock.t += 10.0
    p.print(600, {"loss": 0.4})
    # Recent rate 100 steps / 10 s plus the earlier intervals; remaining evals (none periodic
    # before 1000 except the final one) at the measured 30 s.
    rate = p.rate()
    assert 8.0 < rate <= 10.0
    assert p.eta(600) == pytest.approx(400 / rate + 30.0)


def test_progress_slow_steps_read_as_seconds_per_step():
    clock, lines = FakeClock(), []
    p = metrics.Progress(10, 4, 0, clock=clock, printer=lines.append)
    clock.t += 25.0
    p.print(5, {})
    assert "5.00 s/it" in lines[-1] and "ETA 0:25" in lines[-1]


def _png(rgb, size=(6, 4)):
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_metric_writer_tensorboard_roundtrip(tmp_path):
    workdir = str(tmp_path)
    config = config_lib.load_config_file(os.path.join(ROOT, "configs", "classifier.py"), "smoke")
    nested = tmp_path / "base_model"  # a nested run's pictures belong to that run
    nested.mkdir()
    (nested / "config.json").write_text("{}")
    (nested / "inner.png").write_bytes(_png((0, 0, 255)))
    w = metrics.MetricWriter(workdir)
    w.write_config(config)
    w.write(1, {"loss": 2.5, "acc": np.float32(0.25)}, "train/")
    (tmp_path / "samples.png").write_bytes(_png((255, 0, 0)))
    os.makedirs(tmp_path / "eval_student")
    (tmp_path / "eval_student" / "grid.png").write_bytes(_png((0, 255, 0), (3, 5)))
    w.write(10, {"fid": 12.0}, "eval/")
    assert sorted(os.path.basename(p) for p in w.write_new_pictures(10)) == [
        "grid.png",
        "samples.png",
    ]
    assert w.write_new_pictures(11) == []  # unchanged files are not logged again
    w.write_images(10, {"arrays/grid": np.zeros((2, 4, 4, 3), np.float32)})
    w.close()

    rows = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert rows == [
        {"step": 1, "train/loss": 2.5, "train/acc": 0.25},
        {"step": 10, "eval/fid": 12.0},
    ]
    events = metrics.read_tensorboard(os.path.join(workdir, metrics.TB_DIR))
    scalars = {(s, t): v for s, t, k, v in events if k == "scalar"}
    assert scalars == {(1, "train/loss"): 2.5, (1, "train/acc"): 0.25, (10, "eval/fid"): 12.0}
    images = {t: (s, v) for s, t, k, v in events if k == "image"}
    assert set(images) == {"pictures/samples", "pictures/eval_student/grid", "arrays/grid"}
    step, png = images["pictures/samples"]
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert step == 10 and img.shape == (4, 6, 3) and tuple(img[0, 0]) == (255, 0, 0)
    assert Image.open(io.BytesIO(images["arrays/grid"][1])).size == (2 * 4 + 3 * 2, 4 + 2 * 2)
    text = [v for s, t, k, v in events if k == "text"]
    assert len(text) == 1 and '"method": "classifier"' in text[0]
    hp = [t for s, t, k, v in events if k == "hparams"]
    assert hp == ["_hparams_/session_start_info", "_hparams_/session_end_info"]
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    start = next(v for s, t, k, v in events if t == "_hparams_/session_start_info")
    hparams = HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["batch_size"].number_value == config.batch_size
    assert hparams["optim.name"].string_value == config.optim.name
    assert hparams["model.stage_sizes"].string_value == str(config.model.stage_sizes)


def test_resumed_writer_skips_old_pictures_and_purges_later_steps(tmp_path):
    (tmp_path / "old.png").write_bytes(_png((1, 2, 3)))
    w = metrics.MetricWriter(str(tmp_path), start_step=40)
    assert w.write_new_pictures(41) == []
    w.close()
    from tensorboardX.proto import event_pb2  # the SessionLog START that purges steps >= 41

    data = open(next((tmp_path / "tb").iterdir()), "rb").read()
    assert event_pb2.SessionLog.START in [
        event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n]).session_log.status
        for pos, n in _records(data)
    ]


def _records(data):
    import struct

    pos = 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos : pos + 8])
        yield pos, n
        pos += 16 + n


def test_corrupt_event_file_is_reported(tmp_path):
    w = metrics.MetricWriter(str(tmp_path))
    w.write(1, {"x": 1.0})
    w.close()
    path = next((tmp_path / "tb").iterdir())
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum|corrupt"):
        metrics.read_tensorboard(str(tmp_path / "tb"))


def test_run_info(tmp_path):
    info = metrics.write_run_info(str(tmp_path), ["python", "-m", "jaxpapers.main", "--x"])
    on_disk = json.loads((tmp_path / "run_info.json").read_text())
    assert on_disk["command"] == ["python", "-m", "jaxpapers.main", "--x"]
    assert set(on_disk["packages"]) == {
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
    }
    assert on_disk["packages"]["jax"] and on_disk["packages"]["numpy"] == np.__version__
    assert on_disk["devices"]["count"] == 8 and on_disk["process_count"] == 1
    assert on_disk["previous_launches"] == [] and info["backend"] == "cpu"
    if os.path.isdir(os.path.join(ROOT, ".git")) or os.path.isfile(os.path.join(ROOT, ".git")):
        assert len(on_disk["git"]["commit"]) == 40
    assert metrics._git_revision(str(tmp_path)) is None  # outside git: no revision, no failure
    metrics.write_run_info(str(tmp_path), ["again"])  # a resume keeps the earlier launch
    again = json.loads((tmp_path / "run_info.json").read_text())
    assert again["command"] == ["again"]
    assert [p["command"] for p in again["previous_launches"]] == [on_disk["command"]]


def test_scalar_items_flattens_and_drops_non_scalars():
    out = metrics.scalar_items(
        {"a": 1, "t": {"x": np.float32(2), "y": "s", "z": None}, "arr": np.zeros(3), "b": True},
        "eval/",
    )
    assert out == {"eval/a": 1.0, "eval/t/x": 2.0, "eval/b": 1.0}


def test_analysis_run_writes_the_same_workdir_record(tmp_path):
    """An analysis method's returned numbers become eval/<k> in metrics.jsonl,
    final_metrics.json and TensorBoard, with config.json, run_info.json and its pictures."""
    from jaxpapers import main

    config = config_lib.load_config_file(
        os.path.join(ROOT, "configs", "granular_avalanche.py"), "smoke"
    )

    def run(cfg, workdir):
        Image.new("RGB", (5, 5), (9, 9, 9)).save(os.path.join(workdir, "figure.png"))
        return {"rough": {"n_drops": 3}, "smooth/tau": 1.5, "table": "text is left out"}

    result = main.run_analysis(types.SimpleNamespace(run=run), config, str(tmp_path))
    assert result["eval/rough/n_drops"] == 3.0 and result["eval/smooth/tau"] == 1.5
    assert "eval/seconds" in result and not any("table" in k for k in result)
    final = json.loads((tmp_path / "final_metrics.json").read_text())
    assert final == result
    rows = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert rows == [{"step": 0, "eval/rough/n_drops": 3.0, "eval/smooth/tau": 1.5}]
    for name in ("config.json", "run_info.json"):
        assert (tmp_path / name).exists()
    tags = {(t, k) for s, t, k, v in metrics.read_tensorboard(str(tmp_path / "tb"))}
    assert {("eval/smooth/tau", "scalar"), ("pictures/figure", "image")} <= tags


def test_trainer_prints_compile_first_step_and_writes_prefixed_metrics(tmp_path, capsys):
    from jaxpapers import trainer

    config = config_lib.load_config_file(
        os.path.join(ROOT, "configs", "classifier.py"),
        "smoke,num_train_steps=3,log_every=2,eval_every=2,ckpt_every=0",
    )
    result = trainer.train(config, str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    order = [
        next(i for i, ln in enumerate(out) if ln.startswith(prefix))
        for prefix in (
            "compiling the train step",
            "compiled the train step in",
            "step 1/3",
            "step 2/3",
            "eval step 2 (",
            "step 3/3",
            "eval step 3 (",
        )
    ]
    assert order == sorted(order), out
    assert set(result) == {
        "train/accuracy",
        "train/grad_norm",
        "train/loss",
        "train/seconds",
        "eval/test_accuracy",
        "eval/test_examples",
    }
    assert json.loads((tmp_path / "final_metrics.json").read_text()) == pytest.approx(result)
    rows = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 2, 3, 3]
    assert all(all(k == "step" or k.startswith(("train/", "eval/")) for k in r) for r in rows)
    events = metrics.read_tensorboard(str(tmp_path / "tb"))
    steps = sorted({s for s, t, k, v in events if t == "train/loss"})
    assert steps == [1, 2, 3]
    assert {s for s, t, k, v in events if t == "eval/test_accuracy"} == {2, 3}
