"""Where a command's output goes: the console for the person running it, a log file for the rest.

Ray (its start-up banner, the token set-up, the "(raylet) … killed by ray.kill" lines that Serve's
shutdown causes), MediaPipe's native side (glog, absl, TFLite), aiortc, torch's warnings and Ray's
workers write to stdout and stderr as they please, from Python and from C++. A command that runs
them points file descriptors 1 and 2 at its log file, `<cache>/logs/<command>.log` (the run before
kept as `<command>.log.1`), and keeps the original streams for its own consoles: progress, results,
headcast's warnings and errors. Every Python log record at INFO goes to the file too.

`--verbose` leaves the descriptors alone: everything shows on the console as well, headcast's own
log lines from INFO up.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.console import Console
from rich.markup import escape

from base.cache import cache_dir

# The packages whose log lines are meant for the person at the console (the rest are libraries').
OWN_PACKAGES = ("headcast", "edge", "face3d", "inference", "signaling", "training")
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_dir() -> Path:
    """Return the folder of the commands' log files: `logs/` beside the asset cache."""
    return cache_dir() / "logs"


@dataclass(frozen=True)
class Routed:
    """Where one command's output went."""

    path: Path
    verbose: bool

    @property
    def hidden(self) -> bool:
        """Return True when the libraries' output goes to the file only (not --verbose)."""
        return not self.verbose


_ROUTED: list[Routed] = []  # this process's command's, once `route` ran


def routed() -> Routed | None:
    """Return where this process's command sends its output, None before `route` (or for light commands)."""
    return _ROUTED[-1] if _ROUTED else None


class _OwnPackages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in OWN_PACKAGES


class _ConsoleLines(logging.Handler):
    """One console line per record, as the CLI's own lines look: the time, "warning:" or "error:", the message."""

    _LABELS: ClassVar[dict[int, str]] = {logging.WARNING: "[yellow]warning:[/] ", logging.ERROR: "[bold red]error:[/] "}

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            when = time.strftime("%H:%M:%S", time.localtime(record.created))
            level = logging.ERROR if record.levelno >= logging.ERROR else record.levelno
            label = self._LABELS.get(level, "")
            self.console.print(f"[dim]{when}[/] {label}{escape(record.getMessage())}", highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


def route(command: str, stdout: Console, stderr: Console, *, verbose: bool, own_level: int = logging.WARNING) -> Routed:
    """Send the libraries' output of `command` to its log file and keep `stdout` and `stderr` on the console.

    own_level: from which level headcast's own log records also show on the console (INFO for
    `serve`, whose operator follows the sessions there).
    """
    path = log_dir() / f"{command.replace(' ', '-')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(_FILE_FORMAT))
    root.addHandler(to_file)
    logging.getLogger("aioice").setLevel(logging.WARNING)  # a dozen ICE state lines per connection, even in a file
    to_console = _ConsoleLines(stderr)
    to_console.setLevel(logging.INFO if verbose else own_level)
    if not verbose:
        to_console.addFilter(_OwnPackages())
    root.addHandler(to_console)
    # edge.native stops dropping MediaPipe's start-up lines: they go where descriptor 2 goes, with the rest.
    os.environ["HEADCAST_NATIVE_LOGS"] = "1"
    if not verbose:
        _redirect_descriptors(path, stdout, stderr)
    _ROUTED.append(Routed(path, verbose))
    return _ROUTED[-1]


def _redirect_descriptors(path: Path, stdout: Console, stderr: Console) -> None:
    """Point descriptors 1 and 2 at `path`; the consoles keep writing to what they were before."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for fd, console in ((1, stdout), (2, stderr)):
            terminal = os.dup(fd)
            # Line-buffered: progress and results show as they are printed, as on the original stream.
            console.file = os.fdopen(terminal, "w", encoding="utf-8", errors="replace", buffering=1)
            os.dup2(log_fd, fd)
    finally:
        os.close(log_fd)


def report_crash(error: BaseException, stderr: Console) -> bool:
    """Put an unexpected error's traceback in the log file and one line about it on the console.

    Return False when the command's output is not routed (the traceback then goes to the console,
    as Python prints it).
    """
    where = routed()
    if where is None or not where.hidden:
        return False
    traceback.print_exception(error, file=sys.stderr)  # descriptor 2: the log file
    sys.stderr.flush()
    stderr.print(
        f"[bold red]error:[/] unexpected {type(error).__name__}: {error} (the traceback is in {where.path})",
        highlight=False,
        soft_wrap=True,
    )
    return True
