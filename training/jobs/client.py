"""Submitting, listing, following, reading and cancelling jobs through the Ray Jobs API."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.cache import cache_dir
from training.jobs.cluster import (
    FORWARDED_ENV_PREFIX,
    NEVER_FORWARDED,
    LocalCluster,
    auth_headers,
    auth_token,
    auth_token_path,
)
from training.jobs.errors import JobError
from training.jobs.progress import PROGRESS_ENV, JobProgress, progress_from_logs, read_progress

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient


logger = logging.getLogger(__name__)

METADATA_NAME = "headcast.name"
METADATA_PROGRESS = "headcast.progress"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
        return JobSubmissionClient(address, headers=auth_headers(auth_token()))


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
        if key.startswith(FORWARDED_ENV_PREFIX) and key not in NEVER_FORWARDED
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
