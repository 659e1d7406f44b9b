"""Long runs (enrolment) as Ray jobs: a local head, submission, listing, logs, cancellation and progress.

A job runs on a Ray cluster through the Jobs API. By default that cluster is a *local head* that headcast
starts on 127.0.0.1 with free ports and remembers in `<cache>/ray-head.json` (`<cache>` is
`$HEADCAST_CACHE_DIR` or the user cache directory); `address="http://host:8265"` uses an existing
cluster's dashboard instead. `LocalCluster.stop()` (what `headcast jobs stop-cluster` is to call) stops
only that head's process group, never other Ray instances of the same user, which `ray stop` would kill.
Jobs run as long as the head does; stopping the head stops them.

Authentication (Ray 2.60): token authentication is on by default. The dashboard wants
`Authorization: Bearer <token>` on every API call (401 without one, 403 with a wrong one). The token is
looked up the way Ray's own loader does it: `$RAY_AUTH_TOKEN`, else the file `$RAY_AUTH_TOKEN_PATH`,
else `~/.ray/auth_token`. Before starting a local head headcast writes a token there when none exists
(`ray start` with `RAY_AUTH_MODE=token` refuses to start without one) and sends it explicitly as a
header, so the client works whatever `RAY_AUTH_MODE` the calling process has.

The progress contract for a job entrypoint:

- The job's environment holds `HEADCAST_JOB_PROGRESS`, the path of a JSON file (its folder may not
  exist yet). The entrypoint calls `report_progress(step, total, stage=..., message=..., eta_s=...)`
  — or `write_progress(path, JobProgress(...))` — whenever it has news; the file is replaced
  atomically, so a reader never sees half a record. `report_progress` also prints one line
  `HEADCAST_PROGRESS {json}` so progress shows in the job's logs and can be recovered from them when
  the file is not reachable (a remote cluster).
- The file's path is stored in the job's metadata (`headcast.progress`), which is how `list_jobs`
  finds it. Field meanings are `JobProgress`'s.
- An entrypoint is a `python -m module …` command. For a local cluster it runs in the submitter's
  working directory with the project root on `PYTHONPATH` and the submitter's `HEADCAST_*` settings
  (not `HEADCAST_SECRET`) in its environment; `module_entrypoint` builds the command with this
  interpreter. Pass absolute paths anyway: a remote cluster has neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import secrets
import shlex
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
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.cache import cache_dir
from base.errors import HeadcastError
from base.files import write_atomic, write_json_atomic

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

logger = logging.getLogger(__name__)

PROGRESS_ENV = "HEADCAST_JOB_PROGRESS"
PROGRESS_LOG_PREFIX = "HEADCAST_PROGRESS "
METADATA_NAME = "headcast.name"
METADATA_PROGRESS = "headcast.progress"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
STATE_FILE = "ray-head.json"
# Settings a job must see like the submitter does (asset cache, registry root …); the signing secret
# stays out because a job's runtime environment is readable by anyone holding the cluster token.
_FORWARDED_ENV_PREFIX = "HEADCAST_"
_NEVER_FORWARDED = frozenset({"HEADCAST_SECRET", PROGRESS_ENV})
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class JobError(HeadcastError, RuntimeError):
    """A job or the cluster it runs on could not be reached, started, or asked; the message says what to do."""


# ---------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    """Where a job stands: `step` of `total` units of work in the current `stage`.

    step, total: non-negative ints, step <= total (total 0 while the amount of work is not known yet).
    stage: a short name ("tracking", "fitting", "finetuning" …). message: one human line.
    eta_s: seconds until the job is expected to finish, None while unknown.
    updated_at: Unix time (seconds) the record was written.
    """

    step: int
    total: int
    stage: str = ""
    message: str = ""
    eta_s: float | None = None
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.step < 0 or self.total < 0 or (self.total and self.step > self.total):
            raise JobError(f"progress step {self.step} of {self.total} is out of range; need 0 <= step <= total")

    @property
    def fraction(self) -> float | None:
        """Return the finished share of the stage in [0, 1], or None while the total is unknown."""
        return self.step / self.total if self.total else None

    def to_json(self) -> str:
        """Return the record as one line of JSON."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobProgress:
        """Return the record from its JSON fields; JobError when a field is missing or has the wrong type."""
        try:
            eta = data.get("eta_s")
            return cls(
                step=int(data["step"]),
                total=int(data["total"]),
                stage=str(data.get("stage", "")),
                message=str(data.get("message", "")),
                eta_s=None if eta is None else float(eta),
                updated_at=float(data.get("updated_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise JobError(f"not a progress record ({error!r}): {dict(data)}") from error


def write_progress(path: str | Path, progress: JobProgress) -> None:
    """Write `progress` to `path` atomically (a temporary file in the same folder, then a rename)."""
    write_atomic(path, progress.to_json())


def read_progress(path: str | Path) -> JobProgress | None:
    """Return the progress record at `path`, or None when there is none yet; JobError when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise JobError(
            f"{path} is not a progress record ({error}); the job must write it with write_progress"
        ) from error
    if not isinstance(data, dict):
        raise JobError(f"{path} is not a progress record (a JSON object was expected)")
    return JobProgress.from_dict(data)


def report_progress(
    step: int, total: int, stage: str = "", message: str = "", eta_s: float | None = None
) -> JobProgress:
    """Return the record after writing it to `$HEADCAST_JOB_PROGRESS` (when set) and printing it to the log.

    Called from inside a job. A progress file that cannot be written costs a warning, not the job:
    the printed line still carries the progress.
    """
    progress = JobProgress(step=step, total=total, stage=stage, message=message, eta_s=eta_s)
    print(PROGRESS_LOG_PREFIX + progress.to_json(), flush=True)
    path = os.environ.get(PROGRESS_ENV)
    if path:
        try:
            write_progress(path, progress)
        except OSError as error:
            logger.warning("could not write progress to %s (%s); progress is in the log only", path, error)
    return progress


def progress_from_logs(logs: str) -> JobProgress | None:
    """Return the last progress record printed by `report_progress` in a job's logs, or None."""
    for line in reversed(logs.splitlines()):
        if line.startswith(PROGRESS_LOG_PREFIX):
            with contextlib.suppress(json.JSONDecodeError, JobError):
                data = json.loads(line[len(PROGRESS_LOG_PREFIX) :])
                if isinstance(data, dict):
                    return JobProgress.from_dict(data)
    return None


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


def _auth_headers(token: str | None) -> dict[str, str]:
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
    request = urllib.request.Request(url + "/api/version", headers=_auth_headers(token))
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
        env = {key: value for key, value in os.environ.items() if key not in _NEVER_FORWARDED}
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


# ---------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobInfo:
    """One submitted job as the cluster reports it.

    id: the submission id. name: what the submitter called it. status: PENDING, RUNNING, SUCCEEDED,
    FAILED or STOPPED. message: Ray's one-line explanation of the status. start_time/end_time: UTC,
    None until they happen. progress: the last record the job wrote, None when it wrote none or the
    file is not reachable from here. metadata: what was submitted with the job.
    """

    id: str
    name: str
    status: str
    entrypoint: str
    message: str
    start_time: datetime | None
    end_time: datetime | None
    progress: JobProgress | None
    metadata: dict[str, str]

    @property
    def finished(self) -> bool:
        """Return whether the job has reached a terminal status."""
        return self.status in TERMINAL_STATUSES


def _is_local(address: str | None) -> bool:
    if address is None:
        return True
    host = urllib.parse.urlsplit(address if "://" in address else "http://" + address).hostname
    return host in _LOCAL_HOSTS


def _resolve_address(address: str | None, start: bool) -> str:
    if address is not None:
        return address.rstrip("/")
    cluster = LocalCluster()
    head = cluster.ensure() if start else cluster.find()
    if head is None:
        raise JobError(
            "no local Ray head is running (headcast starts one when a job is submitted); "
            "pass --address http://HOST:8265 to use another cluster"
        )
    return head.dashboard_url


@contextlib.contextmanager
def _translated(address: str) -> Iterator[None]:
    """Turn Ray's and requests' errors into JobErrors that say what to do."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as error:
        where = "$RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else str(auth_token_path())
        reason = error.message.splitlines()[0]
        problem = (
            f"refused the authentication token from {where}"
            if auth_token()
            else f"needs an authentication token and there is none in $RAY_AUTH_TOKEN or {where}"
        )
        raise JobError(
            f"the Ray cluster at {address} {problem} ({reason}). "
            "Put that cluster's token (`ray get-auth-token` on its head) in $RAY_AUTH_TOKEN or in that file."
        ) from error
    except (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise JobError(
            f"cannot reach a Ray dashboard at {address} ({error}); check the address (the dashboard port, "
            "8265 by default) or leave --address out to use the local head"
        ) from error
    except RuntimeError as error:
        if isinstance(error, JobError):
            raise
        # The Jobs client reports every refused request (unknown id, duplicate id …) as RuntimeError.
        hint = "; `headcast jobs` lists the jobs it knows" if "does not exist" in str(error) else ""
        raise JobError(f"the Ray cluster at {address} refused the request: {error}{hint}") from error


def _client(address: str) -> JobSubmissionClient:
    from ray.job_submission import JobSubmissionClient

    with _translated(address):
        # The token goes in explicitly: Ray adds it only when this process runs with RAY_AUTH_MODE=token.
        return JobSubmissionClient(address, headers=_auth_headers(auth_token()))


def module_entrypoint(module: str, *args: str, address: str | None = None) -> list[str]:
    """Return `python -m module args…`, with this interpreter when the cluster runs on this machine."""
    python = sys.executable if _is_local(address) else "python"
    return [python, "-m", module, *args]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "job"


def progress_path_for(submission_id: str) -> Path:
    """Return where the job with this submission id is told to write its progress."""
    return cache_dir() / "jobs" / submission_id / "progress.json"


def submit_job(
    entrypoint: Sequence[str],
    address: str | None = None,
    *,
    name: str,
    metadata: Mapping[str, str] | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    num_cpus: float | None = None,
) -> str:
    """Return the submission id of a new job running `entrypoint` (argv) on the cluster at `address`.

    `address` None means the local head, started when none runs. `metadata` is stored with the job
    (string values); `runtime_env` is Ray's, its `env_vars` winning over the ones headcast adds.
    `num_cpus` reserves CPUs for the entrypoint itself (Ray's default: none).
    """
    if not entrypoint:
        raise JobError("an empty entrypoint; give the command as a list, e.g. module_entrypoint('training.enrol', …)")
    target = _resolve_address(address, start=True)
    submission_id = f"headcast-{_slug(name)}-{uuid.uuid4().hex[:8]}"
    progress_path = progress_path_for(submission_id)
    command = shlex.join(entrypoint)
    env_vars = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(_FORWARDED_ENV_PREFIX) and key not in _NEVER_FORWARDED
    }
    if _is_local(target):
        # Same machine: run where the submitter stands and import this checkout even without an install.
        command = f"cd {shlex.quote(str(Path.cwd()))} && {command}"
        env_vars["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    environment = dict(runtime_env or {})
    env_vars.update(environment.get("env_vars", {}))
    env_vars[PROGRESS_ENV] = str(progress_path)
    environment["env_vars"] = env_vars
    job_metadata = {**(metadata or {}), METADATA_NAME: name, METADATA_PROGRESS: str(progress_path)}
    bad = [key for key, value in job_metadata.items() if not isinstance(value, str)]
    if bad:
        raise JobError(f"job metadata must map strings to strings; convert {bad} with str() first")
    client = _client(target)
    with _translated(target):
        submitted: str = client.submit_job(
            entrypoint=command,
            submission_id=submission_id,
            runtime_env=environment,
            metadata=job_metadata,
            entrypoint_num_cpus=num_cpus,
        )
    logger.info("submitted %s (%s) to %s", submitted, name, target)
    return submitted


def _from_ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if value else None


def _job_info(details: JobDetails) -> JobInfo:
    metadata = dict(details.metadata or {})
    progress_file = metadata.get(METADATA_PROGRESS)
    progress = None
    if progress_file:
        try:
            progress = read_progress(progress_file)
        except (JobError, OSError) as error:
            logger.warning("job %s: unreadable progress (%s)", details.submission_id, error)
    return JobInfo(
        id=details.submission_id or details.job_id or "",
        name=metadata.get(METADATA_NAME, ""),
        status=str(details.status.value),
        entrypoint=details.entrypoint,
        message=details.message or "",
        start_time=_from_ms(details.start_time),
        end_time=_from_ms(details.end_time),
        progress=progress,
        metadata=metadata,
    )


def list_jobs(address: str | None = None, include_foreign: bool = False) -> list[JobInfo]:
    """Return the cluster's submitted jobs, oldest first ([] when no local head runs and `address` is None).

    Only headcast's jobs unless `include_foreign`; drivers that ran `ray.init()` themselves never.
    """
    if address is None and LocalCluster().find() is None:
        return []  # nothing to list, and `headcast jobs` should not start a head to say so
    target = _resolve_address(address, start=False)
    client = _client(target)
    with _translated(target):
        details = client.list_jobs()
    jobs = [
        _job_info(item)
        for item in details
        if item.submission_id and (include_foreign or METADATA_NAME in (item.metadata or {}))
    ]
    return sorted(jobs, key=lambda job: job.start_time or datetime.max.replace(tzinfo=UTC))


def job_info(submission_id: str, address: str | None = None) -> JobInfo:
    """Return one job's status, times and progress; JobError when the cluster does not know the id.

    Progress comes from the job's progress file, or from its HEADCAST_PROGRESS log lines where that
    file is out of reach (a job on a remote cluster writes it on another machine).
    """
    target = _resolve_address(address, start=False)
    client = _client(target)
    with _translated(target):
        info = _job_info(client.get_job_info(submission_id))
        if info.progress is None:
            info = dataclasses.replace(info, progress=progress_from_logs(client.get_job_logs(submission_id)))
    return info


def job_logs(submission_id: str, address: str | None = None) -> str:
    """Return everything the job's entrypoint has written to stdout and stderr so far."""
    target = _resolve_address(address, start=False)
    client = _client(target)
    with _translated(target):
        logs: str = client.get_job_logs(submission_id)
        return logs


def cancel_job(submission_id: str, address: str | None = None) -> bool:
    """Return True when the job was still running and has been asked to stop (SIGTERM, then SIGKILL)."""
    target = _resolve_address(address, start=False)
    client = _client(target)
    with _translated(target):
        return bool(client.stop_job(submission_id))


def follow_job(submission_id: str, address: str | None = None, poll_s: float = 1.0) -> Iterator[JobInfo]:
    """Yield the job's JobInfo every `poll_s` seconds until it has ended; the last one yielded is final."""
    while True:
        info = job_info(submission_id, address)
        yield info
        if info.finished:
            return
        time.sleep(poll_s)
