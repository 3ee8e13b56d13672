"""Every ``python -m jaxpapers.tools.<name>``: --help exits 0; bad input is one line, exit 2."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(ROOT, "jaxpapers", "tools")
TOOLS = sorted(
    f[:-3]
    for f in os.listdir(TOOLS_DIR)
    if f.endswith(".py") and f not in ("__init__.py", "cli.py")
)


def _run_all(commands: dict) -> dict:
    """Runs the commands concurrently (each pays the JAX import once); returns CompletedProcess-like
    tuples (returncode, stdout, stderr) by key."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = {
        k: subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k, args in commands.items()
    }
    out = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[k] = (p.returncode, stdout, stderr)
    return out


@pytest.fixture(scope="module")
def helps():
    return _run_all({t: [f"jaxpapers.tools.{t}", "--help"] for t in TOOLS})


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_zero_and_describes_the_tool(tool, helps):
    code, stdout, stderr = helps[tool]
    assert code == 0, stderr[-2000:]
    assert f"python -m jaxpapers.tools.{tool}" in stdout  # the usage line of its docstring
    assert "--" in stdout.split("\n\n", 1)[1]  # and its flags


BAD = {
    "missing_flag": (["jaxpapers.tools.robust"], "workdir"),
    "unknown_flag": (["jaxpapers.tools.convert_inception", "--src=x", "--bogus=1"], "bogus"),
    "extra_argument": (["jaxpapers.tools.face_topology", "--wheel=x", "stray"], "stray"),
    "not_a_run": (["jaxpapers.tools.robust", "--workdir=/nonexistent_dir"], "config.json"),
    "exclusive": (
        ["jaxpapers.tools.gan_metrics", "--images=a", "--checkpoint=b", "--workdir=/tmp"],
        "images",
    ),
}


def test_bad_input_is_one_line_and_exit_two():
    results = _run_all({k: args for k, (args, _) in BAD.items()})
    for key, (code, _, stderr) in results.items():
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert code == 2, (key, code, stderr[-2000:])
        assert len(lines) == 1, (key, stderr[-2000:])
        assert lines[0].startswith("jaxpapers.tools.") and ": error: " in lines[0], (key, lines)
        assert BAD[key][1] in lines[0], (key, lines)


def test_readme_names_every_tool():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    missing = [t for t in TOOLS if f"`{t}`" not in readme]
    assert not missing, f"README.md's list of command lines lacks {missing}"
