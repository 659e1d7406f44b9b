"""A job's progress: the record, how an entrypoint reports it (file and log line), how it is read back."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.files import write_atomic
from training.jobs.errors import JobError

if TYPE_CHECKING:
    pass


logger = logging.getLogger(__name__)

PROGRESS_ENV = "HEADCAST_JOB_PROGRESS"
PROGRESS_LOG_PREFIX = "HEADCAST_PROGRESS "


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
        except (KeyError, TypeError, ValueError, OverflowError) as error:
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
    except UnicodeDecodeError as error:
        raise JobError(f"{path} is not a progress record ({error}); write it with write_progress") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
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
            with contextlib.suppress(json.JSONDecodeError, RecursionError, JobError):
                data = json.loads(line[len(PROGRESS_LOG_PREFIX) :])
                if isinstance(data, dict):
                    return JobProgress.from_dict(data)
    return None
