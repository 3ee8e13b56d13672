"""tools.memory_report: XLA's memory/cost analysis of a train step compiled from abstract inputs."""

import json
import subprocess
import sys

import jax
import pytest

from jaxpapers import config_lib, methods, trainer
from jaxpapers.tools import memory_report as mr


def test_smoke_report_fields_positive_and_json_well_formed(tmp_path):
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    preset = mr.find_preset("classifier:smoke", devices=2)  # paper batch 16 over 2 devices
    results = mr.report([preset], out=str(out), md=str(md))
    assert json.loads(out.read_text()) == results  # written after each preset, readable
    (r,) = results
    assert r["status"] == "measured", r.get("traceback")
    assert (r["paper_batch"], r["devices_assumed"], r["per_device_batch"]) == (16, 2, 8)
    m = r["memory"]
    for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"):
        assert m[field] > 0, field
    assert m["alias_size_in_bytes"] > 0  # the state is donated: outputs written in place
    # The state (params + optimizer) is held once as input; the batch adds to the arguments.
    assert r["state_bytes"] > 0 and m["argument_size_in_bytes"] > r["state_bytes"]
    assert r["peak_bytes_per_device"] >= m["argument_size_in_bytes"] + m["temp_size_in_bytes"]
    assert r["flops_per_step"] > 0 and r["compile_seconds"] > 0
    text = md.read_text()
    assert "`classifier:smoke`" in text and "fits a 16 GB TPU v4 core at batch 8/device" in text


def test_a_paper_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match="does not split"):
        mr.measure(mr.find_preset("classifier:smoke", devices=3))


def test_abstract_prepare_gives_the_real_state_shapes():
    # trace_vidsgg: the prepared values replace parameters of the same shapes (no files needed).
    config = config_lib.load("trace_vidsgg:smoke")
    method = methods.get("trace_vidsgg")
    shapes = []
    for prepared in (
        trainer.prepare(method, config),
        mr.abstract_prepared("trace_vidsgg", method, config),
    ):
        fn, args = trainer.init_fn(method, config, prepared)
        shapes.append(jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(fn, *args)))
    assert shapes[0] == shapes[1]


def test_verdict():
    assert mr.verdict(10e9, 4, 32).startswith("fits a 16 GB TPU v4 core at batch 4/device (8 ")
    assert "80 GB GPU" in mr.verdict(60e9, 32, 32) and "not a 40 GB" in mr.verdict(60e9, 32, 32)
    assert mr.verdict(105e9, 256, 2048).startswith("over 80 GB at batch 256/device (8 device(s)")


def test_cli_help_and_bad_input(tmp_path):
    def run(*args):
        cmd = [sys.executable, "-m", "jaxpapers.tools.memory_report", *args]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert run("--help").returncode == 0
    bad = run("--per_device_batch=-1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    nowhere = run(f"--out={tmp_path / 'missing' / 'r.json'}")
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr


@pytest.mark.slow
def test_faceanime_abstract_prepare_gives_the_real_state_shapes():
    config = config_lib.load("faceanime:smoke")
    method = methods.get("faceanime")
    shapes = []
    for prepared in (
        trainer.prepare(method, config),
        mr.abstract_prepared("faceanime", method, config),
    ):
        fn, args = trainer.init_fn(method, config, prepared)
        shapes.append(jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(fn, *args)))
    assert shapes[0] == shapes[1]


@pytest.mark.slow
def test_paper_presets_compile_with_positive_memory_and_flops(tmp_path):
    # Minutes to tens of minutes per preset on CPU; one child process per preset.
    results = mr.report(mr.PAPER_PRESETS, out=str(tmp_path / "r.json"), md=str(tmp_path / "r.md"))
    for r in results:
        assert r["status"] == "measured", (r["preset"], r.get("reason"))
        assert r["peak_bytes_per_device"] > r["state_bytes"] > 0, r["preset"]
        assert r["flops_per_step"] > 0, r["preset"]
