"""The method contract: every train method's smoke preset jit-steps; get() refuses bad methods."""

import os
import types

import jax
import jax.numpy as jnp
import pytest

from jaxpapers import config_lib, methods, parallel, testing, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_METHODS = [n for n in methods.names() if methods.get(n).kind == "train"]


# The contract run of a method whose smoke job starts with something other than its own training
# (the DGL jobs train a teacher first): the student's stage 1 and stage 2, which the method's own
# tests check on this same run (the session fixture ``jit_check`` runs it once).
JIT_OVERRIDES = {
    "biggan_dgl": ",teacher.steps=0,num_train_steps=2",
    "stylegan2_dgl": ",teacher.steps=0,num_train_steps=2",
}


def smoke_config(name: str, extra: str = ""):
    return config_lib.load_config_file(os.path.join(ROOT, "configs", f"{name}.py"), "smoke" + extra)


def jit_config(name: str):
    """The config of the contract's jit run of ``name``."""
    return smoke_config(name, JIT_OVERRIDES.get(name, ""))


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    """Generated ORL-layout faces for the face methods' smoke presets (no download)."""
    root = tmp_path_factory.mktemp("data")
    testing.write_orl_faces(str(root / "att_faces"))
    return str(root)


@pytest.mark.parametrize("name", TRAIN_METHODS)
def test_train_step_jit(name, faces_root, monkeypatch, jit_check):
    monkeypatch.setenv("JAXPAPERS_DATA_DIR", faces_root)
    jit_check(name, jit_config(name))


def _fake(kind="train", **names) -> types.ModuleType:
    module = types.ModuleType("fake_method")
    module.kind = kind
    for key, value in names.items():
        setattr(module, key, value)
    return module


def _train_names():
    return dict(
        input_spec=lambda config: {},
        init_state=lambda rng, config: {},
        train_step=lambda state, batch, *, config: (state, {"loss": 0.0}),
    )


def test_check_accepts_a_complete_fake_and_finds_its_hooks():
    evaluate = lambda state, config, workdir: {}  # noqa: E731
    module = _fake(**_train_names(), evaluate=evaluate, submodule=types.ModuleType("steps"))
    methods.check("fake", module)
    assert methods.hook(module, "evaluate") is evaluate
    assert methods.hook(module, "make_source") is None
    assert methods.hook(_fake("analysis", run=lambda c, w: {}), "evaluate") is None
    with pytest.raises(ValueError, match="not a method hook"):
        methods.hook(module, "evalute")


def test_check_refuses_missing_required_name():
    names = _train_names()
    del names["train_step"]
    with pytest.raises(TypeError, match="lacks callable train_step"):
        methods.check("fake", _fake(**names))
    with pytest.raises(TypeError, match="lacks callable run"):
        methods.check("fake", _fake("analysis"))


def test_check_refuses_unknown_public_name():
    with pytest.raises(TypeError, match="exports helper"):
        methods.check("fake", _fake(**_train_names(), helper=lambda: 0))
    # A train hook is unknown to an analysis method.
    with pytest.raises(TypeError, match="exports evaluate"):
        methods.check("fake", _fake("analysis", run=lambda c, w: {}, evaluate=lambda s, c, w: {}))
    # Private names and modules are fine.
    methods.check("fake", _fake(**_train_names(), _helper=1, np=types.ModuleType("numpy")))


def test_check_refuses_bad_kind_and_inconsistent_hooks():
    with pytest.raises(TypeError, match="must define kind"):
        methods.check("fake", _fake("training", **_train_names()))
    with pytest.raises(TypeError, match="must define kind"):
        methods.check("fake", types.ModuleType("no_kind"))
    with pytest.raises(TypeError, match="init_state must take prepared"):
        methods.check("fake", _fake(**_train_names(), prepare=lambda config: {}))
    with pytest.raises(TypeError, match="train_step must take phase"):
        methods.check("fake", _fake(**_train_names(), phase=lambda config, step: 0))
    with pytest.raises(TypeError, match="must be callable"):
        methods.check("fake", _fake(**_train_names(), evaluate=3))


def test_contributing_table_matches_the_code():
    with open(os.path.join(ROOT, "CONTRIBUTING.md")) as f:
        text = f.read()
    begin, end = "<!-- contract-table:begin -->\n", "\n<!-- contract-table:end -->"
    assert begin in text and end in text
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == methods.contract_markdown(), "regenerate with methods.contract_markdown()"


def test_prepare_result_reaches_init_state_traced(monkeypatch):
    """prepare() runs once on the host; its arrays reach init_state as traced arguments."""
    calls = []

    def prepare(config):
        calls.append(1)
        return {"table": jnp.arange(6.0)}

    def init_state(rng, config, *, prepared):
        assert isinstance(prepared["table"], jax.core.Tracer)  # not a baked-in constant
        return {"step": jnp.zeros((), jnp.int32), "table": prepared["table"] * 2}

    module = _fake(**{**_train_names(), "init_state": init_state}, prepare=prepare)
    methods.check("fake", module)
    config = smoke_config("classifier")
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, _ = trainer.init(module, config, mesh)
    assert calls == [1]
    assert jnp.array_equal(state["table"], jnp.arange(6.0) * 2)
