"""Stop requests: SIGTERM (preemption, a launcher's time limit) or SIGINT (Ctrl-C) while a long
run is inside `install`/`on_signals` only sets a flag; the run polls `requested()` at its next
consistent point (the trainer after a step; an analysis that can resume, after a unit of work it
saves, e.g. one DEM chunk, then raises `Stopped`), saves there and stops with one line saying
how to resume. Code outside such a block keeps the default actions (Ctrl-C interrupts at once).

Why a flag and not an exception raised by the handler: the handler runs between any two
Python bytecodes, e.g. inside a checkpoint write or between two updates of a record that is
saved together; polling stops only where the saved state is consistent.

`jaxpapers.main` exits 0 after a SIGTERM stop (the trainer's convention: launch/slurm_gpu.sbatch
requeues the job on exit 0) and 130 (128 + SIGINT, the shell's Ctrl-C status) after a SIGINT
stop. A second SIGINT while the first is pending interrupts at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

_received: list[int] = []  # signal numbers received inside `on_signals`, in order


class Stopped(Exception):
    """Raised by an analysis at a consistent point after a stop request; its message says what
    was saved (``"<what> stopped after ...; checkpoint saved"``)."""

    def __init__(self, message: str, signum: int | None):
        super().__init__(message)
        self.signum = signum


def _handler(signum, frame):
    if signum == signal.SIGINT and signal.SIGINT in _received:
        signal.default_int_handler(signum, frame)  # the second Ctrl-C: stop now
    _received.append(signum)


def install(*signums: int) -> Callable[[], None]:
    """From now on ``signums`` set the stop flag instead of their default action; returns the
    function that puts the previous handlers back (and clears a pending request).

    Outside the main thread (where Python cannot set handlers) nothing changes: the signals
    keep their action and `requested()` stays None.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, _handler) for s in signums}
    _received.clear()

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()

    return restore


@contextlib.contextmanager
def on_signals(*signums: int):
    """`install` for the duration of a ``with`` block."""
    restore = install(*signums)
    try:
        yield
    finally:
        restore()


def requested() -> int | None:
    """The first signal received inside `on_signals` (not yet acted on), or None."""
    return _received[0] if _received else None


def name(signum: int | None) -> str:
    return "request" if signum is None else signal.Signals(signum).name


def exit_status(signum: int | None) -> int:
    """The process exit status after a stop by ``signum`` (see the module docstring)."""
    return 128 + signal.SIGINT if signum == signal.SIGINT else 0
