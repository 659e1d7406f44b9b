"""A command's local Ray ends with the command: real processes, real signals, real `headcast serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

# Each wait is for an event (a process gone, the gateway healthy) and returns when it happens; the
# bound only ends a test that would hang, with room for a loaded 2-core machine.
EVENT_TIMEOUT_S = 180.0

# A command that watches its descendants, then starts a child that ignores SIGTERM (as Ray's agents
# do) and a grandchild in a session of its own (as Ray's workers are), prints their PIDs and waits.
COMMAND = textwrap.dedent("""
    import subprocess, sys, time
    from headcast.reaper import reaping_descendants
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    nested = f"import subprocess, time; subprocess.Popen({sleeper!r}, start_new_session=True); time.sleep(600)"
    with reaping_descendants():
        children = [subprocess.Popen([sys.executable, "-c", code]) for code in (stubborn, nested)]
        time.sleep(2.0)  # the watcher, watching since the block began, notes new processes every 0.5 s
        print(" ".join(str(c.pid) for c in children), flush=True)
        time.sleep(600)
""")  # fmt: skip


def gone_within(processes: list[psutil.Process], timeout_s: float = EVENT_TIMEOUT_S) -> list[psutil.Process]:
    """Return those of `processes` still running after `timeout_s` (none, once every one has ended)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def ray_processes(pid: int) -> list[psutil.Process]:
    """Return the processes under `pid`, but for the reaper: Ray's, under a command that started Ray."""
    return [p for p in psutil.Process(pid).children(recursive=True) if "headcast.reaper" not in " ".join(p.cmdline())]


def test_a_killed_command_takes_its_descendants_with_it() -> None:
    command = subprocess.Popen([sys.executable, "-c", COMMAND], stdout=subprocess.PIPE, text=True)
    assert command.stdout is not None
    line = command.stdout.readline()
    children = [psutil.Process(int(pid)) for pid in line.split()]
    descendants = ray_processes(command.pid)
    assert set(children) <= set(descendants) and len(descendants) == 3  # the two children, the grandchild
    command.send_signal(signal.SIGKILL)
    command.wait()
    assert not gone_within(descendants), "descendants outlived the killed command"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_until_healthy(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """Return `headcast serve` (an empty registry, a free port) once its Serve app is up, and its URL."""
    port = free_port()
    env = {**os.environ, "HEADCAST_REGISTRY": str(tmp_path / "registry")}
    serve = subprocess.Popen([sys.executable, "-m", "headcast", "serve", "--port", str(port)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while True:
        assert serve.poll() is None, serve.communicate()[1][-3000:]
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                if json.loads(response.read())["serve"] == "up":
                    return serve, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            serve.kill()
            pytest.fail(f"headcast serve was not healthy within {EVENT_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


@pytest.mark.slow
def test_serve_killed_leaves_no_ray_behind(tmp_path: Path) -> None:
    serve, _ = serve_until_healthy(tmp_path)
    ray = ray_processes(serve.pid)
    names = {p.name() for p in ray}
    assert any("raylet" in name for name in names), names
    serve.send_signal(signal.SIGKILL)
    serve.communicate()
    left = gone_within(ray)
    assert not left, f"outlived serve: {[(p.pid, p.name()) for p in left]}"


@pytest.mark.slow
def test_serve_stopped_by_sigterm_ends_quietly_and_completely(tmp_path: Path) -> None:
    serve, _ = serve_until_healthy(tmp_path)
    ray = ray_processes(serve.pid)
    serve.send_signal(signal.SIGTERM)
    _, err = serve.communicate(timeout=EVENT_TIMEOUT_S)
    assert serve.returncode == 0, err[-3000:]
    assert "gateway stopped; stopped the local Ray and the app avatar" in err
    assert "Traceback" not in err and "killed by" not in err
    assert not gone_within(ray)
