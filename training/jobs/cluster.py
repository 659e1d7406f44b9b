"""The Ray cluster jobs run on: the Jobs API's auth token and the local head headcast starts, finds and stops."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from base.cache import cache_dir
from base.files import write_json_atomic
from training.jobs.errors import JobError
from training.jobs.progress import PROGRESS_ENV

if TYPE_CHECKING:
    pass


logger = logging.getLogger(__name__)

STATE_FILE = "ray-head.json"
# Settings a job must see like the submitter does (asset cache, registry root …); the signing secret
# stays out because a job's runtime environment is readable by anyone holding the cluster token.
FORWARDED_ENV_PREFIX = "HEADCAST_"
NEVER_FORWARDED = frozenset({"HEADCAST_SECRET", PROGRESS_ENV})


# ---------------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------------


def auth_token_path() -> Path:
    """Return the file Ray reads its token from: `$RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token`."""
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(custom) if custom else Path.home() / ".ray" / "auth_token"


def auth_token() -> str | None:
    """Return the Ray token this process would use (`$RAY_AUTH_TOKEN`, else the token file), or None."""
    from_env = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if from_env:
        return from_env
    try:
        token = auth_token_path().read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def ensure_auth_token() -> str:
    """Return the Ray token, first writing a new one (as `ray get-auth-token --generate` would) if none exists."""
    token = auth_token()
    if token:
        return token
    path = auth_token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)  # what Ray's own generator makes: 256 bits, hex
    # Created 0600 because the token lets anyone who reads it run code on the cluster.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(token)
    logger.info("wrote a new Ray authentication token to %s", path)
    return token


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# ---------------------------------------------------------------------------------------------------
# The local head
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadInfo:
    """A local Ray head started by headcast, as remembered in its state file.

    dashboard_url: the Jobs API address ("http://127.0.0.1:PORT"). gcs_address: "127.0.0.1:PORT".
    pid: the `ray start --block` process, leader of the head's process group. temp_dir: Ray's session
    root for this head (logs live there). num_cpus: CPUs the head offers. started_at: Unix time.
    """

    dashboard_url: str
    gcs_address: str
    pid: int
    temp_dir: str
    num_cpus: int
    started_at: float


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pid_is_ray_head(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process now holds the pid
    # The pid may have been reused since the state file was written; the command line tells.
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the signal check
    return b"start" in command and b"--block" in command


def _dashboard_answers(url: str, token: str | None, timeout_s: float = 2.0) -> bool:
    request = urllib.request.Request(url + "/api/version", headers=auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class LocalCluster:
    """The one Ray head headcast runs on this machine for jobs: found via its state file, started, stopped."""

    def __init__(
        self, state_dir: Path | None = None, num_cpus: int = 1, object_store_bytes: int | None = 200 * 1024**2
    ) -> None:
        self.state_dir = cache_dir() if state_dir is None else state_dir
        self.num_cpus = num_cpus
        self.object_store_bytes = object_store_bytes

    @property
    def state_path(self) -> Path:
        """Return the JSON file describing the running head."""
        return self.state_dir / STATE_FILE

    @property
    def log_path(self) -> Path:
        """Return the file `ray start` writes its own output to."""
        return self.state_dir / "ray-head.log"

    def _read_state(self) -> HeadInfo | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return HeadInfo(**data)
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError) as error:
            logger.warning("ignoring the unreadable head state %s (%s)", self.state_path, error)
            return None

    def find(self) -> HeadInfo | None:
        """Return the running head headcast started, or None (a stale state file is removed)."""
        head = self._read_state()
        if head is None:
            return None
        if not _pid_is_ray_head(head.pid):
            logger.info("the head in %s is gone (pid %d); forgetting it", self.state_path, head.pid)
            self.state_path.unlink(missing_ok=True)
            shutil.rmtree(head.temp_dir, ignore_errors=True)  # its session files are all that is left
            return None
        if not _dashboard_answers(head.dashboard_url, auth_token()):
            # Starting a second head here would orphan this one; the user has to decide.
            raise JobError(
                f"headcast's Ray head (pid {head.pid}) runs but its dashboard at {head.dashboard_url} does not "
                f"accept requests with the token from {auth_token_path()}; stop it with "
                "`headcast jobs stop-cluster` and submit again"
            )
        return head

    def ensure(self, timeout_s: float = 90.0) -> HeadInfo:
        """Return the running head, starting one when none runs."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Two submissions at once must share one head, not start two and lose track of one.
        with (self.state_dir / "ray-head.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self.find() or self.start(timeout_s)

    def start(self, timeout_s: float = 90.0) -> HeadInfo:
        """Return a freshly started head once its Jobs API answers; JobError when it does not come up."""
        if self.find() is not None:
            raise JobError(f"a headcast Ray head already runs ({self.state_path}); stop it first")
        token = ensure_auth_token()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        gcs_port, dashboard_port, client_port, agent_port = (_free_port() for _ in range(4))
        # A private, short temp dir: Ray's default /tmp/ray/ray_current_cluster would make every
        # `ray.init()` on this machine join our head, and socket paths must stay under 108 bytes.
        temp_dir = tempfile.mkdtemp(prefix="hc-ray-")
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}",
            f"--num-cpus={self.num_cpus}", "--num-gpus=0", f"--temp-dir={temp_dir}",
            "--disable-usage-stats", "--log-style=record",
        ]  # fmt: skip
        if self.object_store_bytes is not None:
            command.append(f"--object-store-memory={self.object_store_bytes}")
        # Every job inherits the head's environment, so the head must not carry what jobs may not see.
        env = {key: value for key, value in os.environ.items() if key not in NEVER_FORWARDED}
        env.update(RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
        # Draining waits for Serve proxies to quiesce; a jobs-only head has none, so stop at once.
        env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            # A session of its own: the head outlives this process and its group can be signalled whole.
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        head = HeadInfo(
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            gcs_address=f"127.0.0.1:{gcs_port}",
            pid=process.pid,
            temp_dir=temp_dir,
            num_cpus=self.num_cpus,
            started_at=time.time(),
        )
        try:
            while not _dashboard_answers(head.dashboard_url, token):
                if process.poll() is not None or time.monotonic() - began > timeout_s:
                    tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                    raise JobError(
                        f"the local Ray head did not come up within {timeout_s:.0f} s (exit code {process.poll()}); "
                        f"see {self.log_path}:\n{tail}"
                    )
                time.sleep(0.25)
            self._write_state(head)
        except BaseException:
            # Without a state file nobody could find this head again to stop it (Ctrl-C included).
            self._terminate(head, grace_s=10.0)
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        logger.info("local Ray head up at %s in %.1f s", head.dashboard_url, time.monotonic() - began)
        return head

    def _write_state(self, head: HeadInfo) -> None:
        write_json_atomic(self.state_path, asdict(head))

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Return True after stopping the head headcast started, False when none was running."""
        head = self._read_state()
        if head is None:
            return False
        running = _pid_is_ray_head(head.pid)
        if running:
            self._terminate(head, grace_s=timeout_s)
        self.state_path.unlink(missing_ok=True)
        shutil.rmtree(head.temp_dir, ignore_errors=True)  # session logs of a stopped head are of no use
        return running

    @staticmethod
    def _terminate(head: HeadInfo, grace_s: float) -> None:
        # SIGTERM makes `ray start --block` shut its node down (GCS, raylet, dashboard, workers; job
        # drivers die with their supervisors); the group kill catches anything that outlived that.
        with contextlib.suppress(ProcessLookupError):
            os.kill(head.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _pid_alive(head.pid):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(head.pid, signal.SIGKILL)
        # Orphans of the group linger as zombies until init reaps them (about a second); waiting for
        # that makes "stopped" mean no process of the head is left.
        while (_pid_alive(head.pid) or _group_alive(head.pid)) and time.monotonic() < deadline + 10.0:
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_alive(pid: int) -> bool:
    # Reap it first when it is our own child, or a zombie would look alive forever.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
