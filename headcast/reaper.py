"""The local Ray a command starts ends with the command, however the command ends.

`ray.init()` without an address starts Ray's processes as the command's children. GCS and the raylet
share its fate, but the agents and actors do not: after `kill -KILL` of `headcast serve` on this
machine, ray::DashboardAgent and ray::RuntimeEnvAgent (~230 MB, both ignoring SIGTERM) and at times
the ServeController lived on under PID 1 for minutes, and every restart started another Ray beside
them.

`reaping_descendants()` starts a small watcher (`python -m headcast.reaper PID`) in a session of its
own, so a Ctrl-C or a signal to the command's process group does not reach it. It notes the
command's descendants every `POLL_S` and holds the read end of a pipe whose write end only the
command holds: the pipe closes when the command ends in any way, SIGKILL included. Then it sends
SIGTERM to the descendants still running and SIGKILL to those left after `GRACE_S`. psutil checks
each process's start time before signalling it, so a reused PID is never hit.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator

import psutil

POLL_S = 0.5  # how often the descendants are noted: Ray's processes live far longer
GRACE_S = 3.0  # SIGTERM → SIGKILL


def watch(parent_pid: int) -> None:
    """Note `parent_pid`'s descendants until standard input closes, then end those still running. One line on
    standard output says the watch has begun."""
    me = os.getpid()
    seen: dict[int, psutil.Process] = {}
    try:
        parent = psutil.Process(parent_pid)
    except psutil.NoSuchProcess:
        return
    stdin = sys.stdin.buffer
    ready = False
    while True:
        try:
            for child in parent.children(recursive=True):
                if child.pid != me:
                    seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break  # the parent is gone: its pipe is closed or about to be
        if not ready:
            print("watching", flush=True)
            ready = True
        readable, _, _ = select.select([stdin], [], [], POLL_S)
        if readable and not os.read(stdin.fileno(), 1):
            break
    end(list(seen.values()))


def end(processes: list[psutil.Process], grace_s: float = GRACE_S) -> None:
    """SIGTERM every process of `processes` still running, SIGKILL those left after `grace_s`."""
    running = [p for p in processes if p.is_running()]
    for process in running:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.terminate()
    _, left = psutil.wait_procs(running, timeout=grace_s)
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.kill()
    psutil.wait_procs(left, timeout=grace_s)


@contextlib.contextmanager
def reaping_descendants() -> Iterator[None]:
    """Run the body with a watcher that ends this process's descendants once it ends (normally or killed).

    The body starts once the watcher is watching: what it starts is noted within `POLL_S`."""
    watcher = subprocess.Popen(  # this interpreter, this module, our PID
        [sys.executable, "-m", "headcast.reaper", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert watcher.stdin is not None and watcher.stdout is not None
    watcher.stdout.readline()  # "watching" (or nothing, should it fail to start: the body runs unwatched)
    try:
        yield
    finally:
        watcher.stdin.close()  # what the command's death does too
        with contextlib.suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout=2 * GRACE_S + 2 * POLL_S)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
