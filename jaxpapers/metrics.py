"""What a run records in its workdir, and the progress lines it prints (process 0 only).

Every workdir (train and analysis methods alike) holds:
  config.json          the locked config of the run
  run_info.json        command line, git revision, package versions, devices, process count
  metrics.jsonl        one JSON row per logged step: ``{"step": n, "train/<k>": ..}`` or
                       ``{"step": n, "eval/<k>": ..}``
  final_metrics.json   the run's final numbers: ``train/<k>`` (last logged training scalars,
                       ``train/seconds``) and ``eval/<k>`` (final evaluation, or an analysis's
                       results)
  tb/                  TensorBoard events: the same scalars, every PNG picture the method writes
                       (at the step of the evaluation that wrote it), the config as text and the
                       config as hyperparameters (HParams dashboard)
  *.png                the method's pictures

TensorBoard files are written with ``tensorboardX``: a pure-Python event writer (numpy +
protobuf) that needs neither TensorFlow nor PyTorch. The alternatives were clu's writers (they
need TensorFlow, which this suite does not install) and TensorBoard's own ``tensorboard.summary``
writer (its writing API is the TensorFlow one; the package also pulls in the web server and its
dependencies). To look at the files, ``pip install tensorboard`` and ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import collections
import datetime
import json
import math
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

TB_DIR = "tb"
# Pictures bigger than this are not copied into the event file (they stay in the workdir).
MAX_PICTURE_BYTES = 16 << 20
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def _is_main_process() -> bool:
    import jax

    return jax.process_index() == 0


def _atomic_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)


def scalar_items(result: dict, prefix: str = "") -> dict[str, float]:
    """The numeric scalars of a (possibly nested) result dict as ``{prefix + a/b: float}``.

    Arrays with more than one element, strings and None are left out (they belong in the
    method's own files, not in metric tables).
    """
    out: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalar_items(value, f"{name}/"))
        elif isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
        elif isinstance(value, (int, float, np.number)) or (
            hasattr(value, "shape") and hasattr(value, "dtype") and np.size(value) == 1
        ):
            try:
                out[name] = float(np.asarray(value).reshape(()))
            except (TypeError, ValueError):
                continue
    return out


def flat_config(config) -> dict[str, bool | int | float | str]:
    """``a.b.c -> value`` for every leaf of a config; tuples, lists and None as text."""
    tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out: dict = {}

    def visit(node, path):
        for key, value in node.items():
            name = f"{path}{key}"
            if isinstance(value, dict):
                visit(value, f"{name}.")
            elif isinstance(value, (bool, int, float, str)):
                out[name] = value
            else:
                out[name] = str(value)

    visit(tree, "")
    return out


class MetricWriter:
    """Writes ``metrics.jsonl`` and TensorBoard events of one workdir; silent on other processes.

    ``start_step`` > 0 (a resumed run) makes TensorBoard drop the events a previous launch wrote
    after that step, as the resumed run writes them again.
    """

    def __init__(self, workdir: str, tensorboard: bool = True, start_step: int = 0):
        self.active = _is_main_process()
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        self._pictures_seen: dict[str, int] = {}
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:  # Declared dependency: never drop TensorBoard silently.
                raise ImportError(
                    "Writing TensorBoard files needs tensorboardX: pip install tensorboardX "
                    "(or pip install -e . in the repository)."
                ) from e
            self._tb = SummaryWriter(
                os.path.join(workdir, TB_DIR),
                purge_step=start_step + 1 if start_step > 0 else None,
                flush_secs=30,
            )
        # Pictures already present (a resumed run) are logged only when rewritten.
        self._pictures_seen = dict(self._pictures())

    def write(self, step: int, scalars: dict, prefix: str = "") -> None:
        if not self.active:
            return
        row = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **row}) + "\n")
        if self._tb is not None:
            for tag, value in row.items():
                self._tb.add_scalar(tag, value, int(step))
            self._tb.flush()

    def write_config(self, config) -> None:
        """The config as a text panel and as hyperparameters (HParams dashboard)."""
        if self._tb is None:
            return
        from tensorboardX import summary

        text = json.dumps(
            config.to_dict() if hasattr(config, "to_dict") else dict(config), indent=2, default=str
        )
        # TensorBoard renders text as Markdown: indent by four spaces for a code block.
        self._tb.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)
        # Only the session-start record: TensorBoard's HParams dashboard then lists every
        # scalar tag of the run as a metric column (an experiment record would fix the columns
        # before the run has produced them).
        _, session_start, _ = summary.hparams(flat_config(config), {})
        self._tb.file_writer.add_summary(session_start)
        self._tb.flush()

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """HWC or NHWC arrays (uint8, or float in [0, 1] / [-1, 1]) as TensorBoard images."""
        if self._tb is None:
            return
        from jaxpapers import viz

        for tag, image in images.items():
            image = np.asarray(image)
            if image.ndim == 4:
                image = viz.image_grid(image)
            image = viz.to_uint8(image)
            if image.ndim == 2:
                image = image[..., None]
            self._tb.add_image(tag, image, int(step), dataformats="HWC")
        self._tb.flush()

    def write_new_pictures(self, step: int) -> list[str]:
        """Copies every PNG in the workdir that is new or rewritten since the last call into the
        event file at ``step`` (tag ``pictures/<relative path>``); returns their paths.

        Sub-directories holding their own ``config.json`` are separate runs and are skipped.
        """
        if self._tb is None:
            return []
        from tensorboardX.proto.summary_pb2 import Summary

        written = []
        for path, mtime in self._pictures():
            if self._pictures_seen.get(path) == mtime:
                continue
            self._pictures_seen[path] = mtime
            if os.path.getsize(path) > MAX_PICTURE_BYTES:
                continue
            with open(path, "rb") as f:
                png = f.read()
            width, height = _png_size(png)
            if not width:
                continue
            tag = "pictures/" + os.path.relpath(path, self.workdir)[: -len(".png")]
            image = Summary.Image(
                height=height, width=width, colorspace=4, encoded_image_string=png
            )
            self._tb.file_writer.add_summary(
                Summary(value=[Summary.Value(tag=tag, image=image)]), int(step)
            )
            written.append(path)
        self._tb.flush()
        return written

    def _pictures(self) -> Iterable[tuple[str, int]]:
        for root, dirs, files in os.walk(self.workdir):
            if root != self.workdir and os.path.exists(os.path.join(root, "config.json")):
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if d not in (TB_DIR, "checkpoints"))
            for name in sorted(files):
                if name.lower().endswith(".png"):
                    path = os.path.join(root, name)
                    try:
                        yield path, os.stat(path).st_mtime_ns
                    except FileNotFoundError:  # Replaced while we looked.
                        continue

    def close(self, success: bool = True) -> None:
        if self._tb is None:
            return
        if success:
            from tensorboardX import summary

            _, _, session_end = summary.hparams({}, {})
            self._tb.file_writer.add_summary(session_end)
        self._tb.close()
        self._tb = None


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG header, (0, 0) for anything else."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return 0, 0
    return struct.unpack(">II", data[16:24])


def truncate_after(path: str, step: int) -> None:
    """Keeps only the rows with ``step <= step`` of a metrics file (atomically; process 0).

    A run killed after its last checkpoint has already written rows for the steps it will redo
    on resume; dropping them makes a resumed run's file equal an uninterrupted run's.
    """
    if not _is_main_process() or not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        if not line.strip():
            continue
        try:
            row_step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut off by the kill
        if row_step <= step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) == len(lines):
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_tensorboard(logdir: str) -> list[tuple[int, str, str, object]]:
    """Every summary value in the event files of ``logdir``, in file order, as
    ``(step, tag, kind, value)``: kind "scalar" (float), "image" (PNG bytes), "text" (str) or
    "hparams" (the plugin's serialized record). Checks the record checksums."""
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto import event_pb2

    def masked(data: bytes) -> int:
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    out = []
    for name in sorted(os.listdir(logdir)):
        if "tfevents" not in name:
            continue
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            if header_crc != masked(header) or pos + 16 + length > len(data):
                raise ValueError(f"{name}: corrupt record at byte {pos}.")
            body = data[pos + 12 : pos + 12 + length]
            (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
            if body_crc != masked(body):
                raise ValueError(f"{name}: checksum mismatch at byte {pos}.")
            pos += 16 + length
            event = event_pb2.Event.FromString(body)
            if not event.HasField("summary"):
                continue
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name
                if v.HasField("simple_value"):
                    out.append((event.step, v.tag, "scalar", float(v.simple_value)))
                elif v.HasField("image"):
                    out.append((event.step, v.tag, "image", v.image.encoded_image_string))
                elif plugin == "text":
                    text = v.tensor.string_val[0].decode() if v.tensor.string_val else ""
                    out.append((event.step, v.tag, "text", text))
                elif plugin == "hparams":
                    out.append((event.step, v.tag, "hparams", v.metadata.plugin_data.content))
    return out


# ----------------------------------------------------------------------------- run_info.json


def _git_revision(directory: str) -> dict | None:
    """The commit and dirty flag of the git checkout holding ``directory``; None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {
        "commit": head.stdout.strip(),
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_info(argv: Sequence[str] | None = None) -> dict:
    """What produced a run: command line, code revision, package versions, devices, processes."""
    import jax

    devices = jax.devices()
    package_dir = os.path.dirname(os.path.abspath(__file__))
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": list(sys.orig_argv if argv is None else argv),
        "cwd": os.getcwd(),
        "git": _git_revision(package_dir),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "backend": jax.default_backend(),
        "devices": {
            "count": len(devices),
            "local_count": jax.local_device_count(),
            "kinds": sorted({d.device_kind for d in devices}),
        },
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "host": os.uname().nodename if hasattr(os, "uname") else None,
    }


def write_run_info(workdir: str, argv: Sequence[str] | None = None) -> dict:
    """Writes ``run_info.json``; earlier launches in the same workdir (resumes) stay listed
    under ``previous_launches`` (their start time, command and git revision)."""
    info = run_info(argv)
    if not _is_main_process():
        return info
    path = os.path.join(workdir, "run_info.json")
    previous = []
    if os.path.isfile(path):
        try:
            with open(path) as f:
                old = json.load(f)
            previous = list(old.get("previous_launches", []))
            previous.append({k: old.get(k) for k in ("started", "command", "git")})
        except (OSError, ValueError, AttributeError):
            previous = []
    _atomic_json(path, {**info, "previous_launches": previous})
    return info


def write_final(workdir: str, result: dict) -> None:
    """``final_metrics.json``: the run's numbers (scalars only), keys as given."""
    if _is_main_process():
        _atomic_json(os.path.join(workdir, "final_metrics.json"), scalar_items(result))


def write_config(config, workdir: str) -> None:
    if _is_main_process():
        os.makedirs(workdir, exist_ok=True)
        tmp = os.path.join(workdir, f"config.json.tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        os.replace(tmp, os.path.join(workdir, "config.json"))


# ----------------------------------------------------------------------------- progress


def format_duration(seconds: float | None) -> str:
    """``1:05:03``, ``4:07`` or ``2d 03:00:00``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if days:
        return f"{days}d {h:02d}:{m:02d}:{s:02d}"
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def evals_remaining(step: int, total: int, eval_every: int, final_eval: bool = True) -> int:
    """Evaluations the trainer still runs after ``step``: every ``eval_every`` steps before the
    last one, plus the final one."""
    periodic = 0
    if eval_every > 0 and total > step:
        periodic = (total - 1) // eval_every - step // eval_every
    return periodic + int(final_eval)


def steady_rate(intervals: Sequence[tuple[int, float]]) -> float | None:
    """Steps per second over ``(steps, seconds)`` intervals; None before any is measured."""
    steps = sum(n for n, _ in intervals)
    seconds = sum(t for _, t in intervals)
    return steps / seconds if steps > 0 and seconds > 0 else None


def eta_seconds(
    intervals: Sequence[tuple[int, float]],
    steps_left: int,
    *,
    evals_left: int = 0,
    eval_seconds: float | None = None,
) -> float | None:
    """Seconds until the run ends, from recent steady-state step intervals.

    The intervals must not contain compilation or evaluation (the caller restarts its clock
    after those): a rate that includes a one-off 60 s compilation overestimates a two-minute run
    several times over. Evaluations still to come are added at the last measured duration.
    """
    if steps_left <= 0:
        steps_time = 0.0
    else:
        rate = steady_rate(intervals)
        if rate is None:
            return None
        steps_time = steps_left / rate
    return steps_time + evals_left * (eval_seconds or 0.0)


class Progress:
    """Progress lines: compilation start/end, ``step n/N | it/s | ex/s | ETA | scalars``, evals.

    Rates come from the last few log intervals measured while only training steps ran: the
    clock restarts after each compilation and each evaluation (``restart``).
    """

    def __init__(
        self,
        total_steps: int,
        batch_size: int,
        start_step: int = 0,
        *,
        eval_every: int = 0,
        final_eval: bool = False,
        window_seconds: float = 120.0,
        clock: Callable[[], float] = time.perf_counter,
        printer: Callable[[str], None] | None = None,
    ):
        self.total, self.batch = total_steps, batch_size
        self.eval_every, self.final_eval = eval_every, final_eval
        self._clock = clock
        self._window = window_seconds
        self._intervals: collections.deque = collections.deque(maxlen=200)
        self._mark = (start_step, clock())
        self._compile_t0 = None
        self.eval_seconds: float | None = None
        self._printer = printer

    # Timing -----------------------------------------------------------------------------
    def restart(self, step: int) -> None:
        """Starts a new steady-state interval at ``step`` (after a compilation or evaluation)."""
        self._mark = (step, self._clock())

    def tick(self, step: int) -> None:
        """Closes the interval since the last mark at ``step`` (call when the step is done)."""
        s0, t0 = self._mark
        now = self._clock()
        if step > s0 and now > t0:
            self._intervals.append((step - s0, now - t0))
            # Keep the recent past only: drop the oldest interval while the others still span
            # the window (the rate follows a phase or data-loading change within minutes).
            while (
                len(self._intervals) > 1
                and sum(t for _, t in self._intervals) - self._intervals[0][1] >= self._window
            ):
                self._intervals.popleft()
        self._mark = (step, now)

    def rate(self) -> float | None:
        return steady_rate(self._intervals)

    def eta(self, step: int) -> float | None:
        evals = evals_remaining(step, self.total, self.eval_every, self.final_eval)
        if self.eval_seconds is None:
            evals = 0
        return eta_seconds(
            self._intervals, self.total - step, evals_left=evals, eval_seconds=self.eval_seconds
        )

    # Lines ------------------------------------------------------------------------------
    def line(self, step: int, scalars: dict) -> str:
        rate = self.rate()
        if rate is None:
            speed = "rate after the next log interval"
        elif rate >= 1:
            speed = f"{rate:.2f} it/s | {rate * self.batch:.1f} ex/s"
        else:
            speed = f"{1 / rate:.2f} s/it | {rate * self.batch:.2f} ex/s"
        vals = " ".join(f"{k}={float(np.asarray(v)):.4g}" for k, v in scalars.items())
        return (
            f"step {step}/{self.total} | {speed} | ETA {format_duration(self.eta(step))} | {vals}"
        )

    def print(self, step: int, scalars: dict) -> None:
        """Closes the current interval at ``step`` and prints the step line."""
        self.tick(step)
        self._emit(self.line(step, scalars))

    def compile_started(self, step: int, phase=None) -> None:
        self._compile_t0 = self._clock()
        what = "the train step" + ("" if phase is None else f" (phase {phase!r})")
        self._emit(f"compiling {what} for step {step + 1} ...")

    def compile_finished(self, step: int, phase=None) -> float:
        """Prints the compilation time and restarts the step clock at ``step`` (steps done)."""
        seconds = self._clock() - (self._compile_t0 or self._clock())
        what = "the train step" + ("" if phase is None else f" (phase {phase!r})")
        self._emit(f"compiled {what} in {seconds:.1f} s")
        self.restart(step)
        return seconds

    def eval_finished(self, step: int, result: dict, seconds: float) -> None:
        self.eval_seconds = seconds
        vals = " ".join(f"{k}={v:.4g}" for k, v in scalar_items(result).items())
        self._emit(f"eval step {step} ({seconds:.1f} s): {vals}")
        self.restart(step)

    def _emit(self, text: str) -> None:
        if self._printer is not None:
            self._printer(text)
        elif _is_main_process():
            print(text, file=sys.stdout, flush=True)
