"""The conventions of every command-line tool: absl flags, ``--help``, one-line errors.

``cli.run(main, __doc__)`` runs ``main(argv)`` like ``absl.app.run`` but
- ``--help`` (``-h``, ``--helpshort``) prints the tool's docstring and its flags, exit status 0;
- bad input (an unknown or malformed flag, a missing required flag, extra arguments, a missing
  file, a ``BadInput``/``ValueError``/``FileNotFoundError``/checkpoint error raised by the tool)
  prints ONE line ``<tool>: error: <why>`` on stderr, exit status 2.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags

HELP_ARGS = ("--help", "-h", "--helpshort", "-?")


class BadInput(Exception):
    """The user's input is wrong; the message says what and how to fix it (one line)."""


def _prog(argv: Sequence[str]) -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else os.path.basename(argv[0])


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(2)


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (
        BadInput,
        app.UsageError,
        flags.Error,
        ValueError,
        FileNotFoundError,
        NotADirectoryError,
    )
    ckpt = sys.modules.get("jaxpapers.checkpoint")  # Only when the tool restored something.
    return errors + ((ckpt.CheckpointError,) if ckpt is not None else ())


def run(main: Callable[[list[str]], Any], doc: str, argv: Sequence[str] | None = None) -> None:
    """Parses the flags and runs ``main(argv)`` with the conventions above; exits."""
    argv = list(sys.argv if argv is None else argv)
    prog = _prog(argv)
    if any(a in HELP_ARGS for a in argv[1:]):
        print(doc.strip())
        print()
        print(flags.FLAGS.main_module_help())
        sys.exit(0)

    def parse(args):
        try:
            return flags.FLAGS(args)
        except flags.Error as e:
            _fail(prog, f"{e} (see --help)")

    def wrapped(args):
        if len(args) > 1:
            _fail(prog, f"unexpected arguments {args[1:]} (see --help)")
        try:
            main(args)
        except _user_errors() as e:
            _fail(prog, str(e))

    app.run(wrapped, argv=argv, flags_parser=parse)
