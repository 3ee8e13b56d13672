"""``--config.profile_steps=a:b``: a jax.profiler trace of those steps in the workdir."""

import glob
import os

import pytest

from jaxpapers import config_lib, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_steps_writes_a_trace_of_the_range(tmp_path, capsys):
    cfg = config_lib.load_config_file(
        os.path.join(ROOT, "configs", "classifier.py"),
        "smoke,num_train_steps=4,ckpt_every=0,log_every=1,profile_steps=1:3",
    )
    trainer.train(cfg, str(tmp_path))
    out = capsys.readouterr().out
    assert "Profiling steps 1:3" in out and "Profile written to" in out
    traces = glob.glob(str(tmp_path / "profile" / "**" / "*.xplane.pb"), recursive=True)
    assert traces and all(os.path.getsize(t) > 0 for t in traces)


@pytest.mark.parametrize("spec", ["3", "5:5", "-1:2", "a:b", "1:2:3"])
def test_bad_profile_range_is_a_config_error(spec):
    with pytest.raises(config_lib.ConfigError, match="profile_steps"):
        config_lib.profile_range(spec)
    assert config_lib.profile_range("") is None and config_lib.profile_range("2:7") == (2, 7)
