"""The gateway's enroller: uploads become `training.enrol_job` Ray jobs, as `headcast enrol` submits them.

signaling/enrolment.py defines what the gateway needs (`Enroller`: who owns a target, submit a job,
its progress) without importing training or torch; this module implements it on training/jobs/.
Jobs run on headcast's private local Ray head (started with the first submission) or, with
`address`, on a cluster's Jobs API — then the recordings' folder (`enrolment.uploads_dir`) and the
registry must be reachable from the cluster's nodes under the same paths.

Each job carries its target and owner in its metadata; `progress` answers only for such jobs, so
other jobs on the cluster (pretraining, a CLI enrolment) stay invisible to the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from base.cache import cache_dir
from signaling.config import EnrolmentConfig
from signaling.enrolment import EnrolmentProgress, EnrolmentState
from signaling.errors import GatewayError

if TYPE_CHECKING:
    from training.jobs import JobInfo

ENTRYPOINT = "training.enrol_job"
METADATA_TARGET = "target"  # what `headcast enrol` stores too
METADATA_OWNER = "owner"
_STATES: dict[str, EnrolmentState] = {
    "PENDING": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "failed",
}
# What the page shows before the job's first progress record (the interpreter starting, models loading).
_STAGE_BEFORE_PROGRESS: dict[EnrolmentState, str] = {
    "queued": "waiting for a worker", "running": "starting", "succeeded": "done", "failed": "",
}  # fmt: skip
_REFUSED_PREFIX = "enrolment refused: "  # training/enrol_job.py's last line when it refuses a recording


class JobEnroller:
    """Enrolments as Ray jobs on the local head (or the cluster at `address`); the gateway's `Enroller`.

    registry: the registry root the jobs commit to (None: inference.registry's default). profile,
    steps, base: configs/enrol.yaml profile, fine-tuning steps and stage-1 checkpoint of every job.
    address: a Ray dashboard URL; None: headcast's local head. work_root: the jobs' work folders
    (None: `<cache>/enrol`, as `headcast enrol` uses, so a CLI run and a page run resume each other).
    """

    def __init__(
        self,
        registry: str | None = None,
        profile: str = "default",
        steps: int | None = None,
        base: Path | None = None,
        address: str | None = None,
        work_root: Path | None = None,
    ) -> None:
        self.registry = registry
        self.profile = profile
        self.steps = steps
        self.base = base
        self.address = address
        self.work_root = work_root
        # Checking for a running job of the target and submitting must not interleave (one work folder each).
        self._submitting = threading.Lock()

    @classmethod
    def from_config(cls, config: EnrolmentConfig, registry: str | None = None) -> JobEnroller:
        """Return the enroller configs/gateway.yaml's `enrolment` section describes, committing to `registry`."""
        return cls(registry, config.profile, config.steps, config.base, config.jobs_address)

    # ------------------------------------------------------------------------------------ the Enroller protocol

    async def owner_of(self, target_id: str) -> str | None:
        """Return the owner of the target's newest version, None when the target is not enrolled."""
        return await asyncio.to_thread(self._owner_of, target_id)

    async def submit(self, video: Path, target_id: str, owner: str, consent_subject: str) -> str:
        """Return the id of a new job enrolling `video`; 409 `enrolment_running` while one for the target runs."""
        return await asyncio.to_thread(self._submit, video, target_id, owner, consent_subject)

    async def progress(self, job_id: str) -> EnrolmentProgress:
        """Return the job's state and progress; 404 `unknown_job` for an id that is no enrolment job."""
        return await asyncio.to_thread(self._progress, job_id)

    async def revoke(self, target_id: str, by: str, reason: str) -> dict[str, str]:
        """Revoke the target in the registry; return the revocation record."""
        return await asyncio.to_thread(self._revoke, target_id, by, reason)

    # ------------------------------------------------------------------------------------- blocking halves

    def _registry_root(self) -> str:
        from inference.registry import default_registry_root

        return self.registry or default_registry_root()

    def _owner_of(self, target_id: str) -> str | None:
        from inference.registry import RegistryError, TargetRegistry

        try:
            registry = TargetRegistry(self._registry_root())
            if not registry.versions(target_id):
                return None
            return registry.metadata(target_id).owner
        except RegistryError as error:
            # Whose target it is cannot be told: refusing is the only safe answer.
            raise GatewayError(503, "unavailable", f"the registry cannot say who owns {target_id!r}: {error}") from None

    def _revoke(self, target_id: str, by: str, reason: str) -> dict[str, str]:
        from inference.registry import RegistryError, TargetRegistry

        try:
            return dataclasses.asdict(TargetRegistry(self._registry_root()).revoke(target_id, by, reason))
        except RegistryError as error:
            raise GatewayError(503, "unavailable", f"the registry could not revoke {target_id!r}: {error}") from None

    def _submit(self, video: Path, target_id: str, owner: str, consent_subject: str) -> str:
        from training.jobs import list_jobs, module_entrypoint, submit_job

        work_dir = (self.work_root or cache_dir() / "enrol") / target_id
        args = [str(video), "--name", target_id, "--registry", self._registry_root(), "--owner", owner,
                "--subject", consent_subject, "--work-dir", str(work_dir), "--profile", self.profile]  # fmt: skip
        args += ["--base", str(self.base.resolve())] if self.base is not None else []
        args += ["--steps", str(self.steps)] if self.steps is not None else []
        with self._submitting, _unavailable():
            running = [
                job.id
                for job in list_jobs(self.address)
                if job.metadata.get(METADATA_TARGET) == target_id and not job.finished
            ]
            if running:
                raise GatewayError(
                    409, "enrolment_running", f"{target_id!r} is being enrolled already (job {running[0]}): "
                    "wait for it to finish, or choose another name",
                )  # fmt: skip
            return submit_job(
                module_entrypoint(ENTRYPOINT, *args, address=self.address),
                self.address,
                name=f"enrol {target_id}",
                metadata={METADATA_TARGET: target_id, METADATA_OWNER: owner},
            )

    def _progress(self, job_id: str) -> EnrolmentProgress:
        from training.jobs import job_info, job_logs

        unknown = GatewayError(404, "unknown_job", f"no enrolment job {job_id!r}: check the id")
        with _unavailable(unknown):
            info = job_info(job_id, self.address)
            if METADATA_TARGET not in info.metadata or METADATA_OWNER not in info.metadata:
                raise unknown  # a job, but not one the gateway submitted
            state = _STATES.get(info.status, "running")
            message = info.progress.message if info.progress is not None else ""
            if state == "failed":
                message = _failure_reason(info, job_logs(job_id, self.address))
        progress = info.progress
        return EnrolmentProgress(
            job=info.id,
            state=state,
            target=info.metadata[METADATA_TARGET],
            owner=info.metadata[METADATA_OWNER],
            stage=progress.stage if progress is not None else _STAGE_BEFORE_PROGRESS[state],
            step=progress.step if progress is not None else 0,
            total=progress.total if progress is not None else 0,
            eta_s=progress.eta_s if progress is not None and state == "running" else None,
            message=message,
        )


def _failure_reason(info: JobInfo, logs: str) -> str:
    """Return why a job failed, in words for the person who recorded: the job's refusal, else its last line."""
    if info.status == "STOPPED":
        return "the enrolment was cancelled (`headcast jobs cancel`); enrol again to resume it"
    lines = [line.strip() for line in logs.splitlines() if line.strip() and not line.startswith("HEADCAST_PROGRESS")]
    reason = next((line.removeprefix(_REFUSED_PREFIX) for line in reversed(lines) if line.startswith(_REFUSED_PREFIX)),
                  lines[-1] if lines else info.message or "the enrolment job failed; its log says why")  # fmt: skip
    # The person reading this has no use for the server's paths (and should not learn them).
    video = _video_argument(info.entrypoint)
    return reason.replace(video, "the recording") if video else reason


def _video_argument(entrypoint: str) -> str:
    """Return the recording's path in an enrolment job's entrypoint ("" when there is none)."""
    try:
        words = shlex.split(entrypoint)
    except ValueError:
        return ""
    after = words.index(ENTRYPOINT) + 1 if ENTRYPOINT in words else len(words)
    return words[after] if after < len(words) else ""


@contextlib.contextmanager
def _unavailable(unknown: GatewayError | None = None) -> Iterator[None]:
    """Turn training.jobs' JobErrors into the gateway's errors: `unknown` for a job the cluster does not know."""
    from training.jobs import JobError

    try:
        yield
    except JobError as error:
        text = str(error)
        # training.jobs says so in words only: Ray's "Job … does not exist", or no local head to ask at all.
        if unknown is not None and ("does not exist" in text or "no local Ray head is running" in text):
            raise unknown from None
        raise GatewayError(503, "unavailable", f"the enrolment jobs cannot be reached: {text}") from None
