"""Long runs (enrolment) as Ray jobs: a local head, submission, listing, logs, cancellation and progress.

`cluster` starts, finds and stops the local head and holds the Jobs API token; `client` submits, lists,
follows and cancels jobs; `progress` is the record an entrypoint reports and how it is read back.

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

from training.jobs.client import (
    METADATA_NAME,
    METADATA_PROGRESS,
    TERMINAL_STATUSES,
    JobInfo,
    cancel_job,
    follow_job,
    job_info,
    job_logs,
    list_jobs,
    module_entrypoint,
    progress_path_for,
    submit_job,
)
from training.jobs.cluster import (
    FORWARDED_ENV_PREFIX,
    NEVER_FORWARDED,
    STATE_FILE,
    HeadInfo,
    LocalCluster,
    auth_headers,
    auth_token,
    auth_token_path,
    ensure_auth_token,
)
from training.jobs.errors import (
    JobError,
)
from training.jobs.progress import (
    PROGRESS_ENV,
    PROGRESS_LOG_PREFIX,
    JobProgress,
    progress_from_logs,
    read_progress,
    report_progress,
    write_progress,
)

__all__ = [
    "FORWARDED_ENV_PREFIX",
    "METADATA_NAME",
    "METADATA_PROGRESS",
    "NEVER_FORWARDED",
    "PROGRESS_ENV",
    "PROGRESS_LOG_PREFIX",
    "STATE_FILE",
    "TERMINAL_STATUSES",
    "HeadInfo",
    "JobError",
    "JobInfo",
    "JobProgress",
    "LocalCluster",
    "auth_headers",
    "auth_token",
    "auth_token_path",
    "cancel_job",
    "ensure_auth_token",
    "follow_job",
    "job_info",
    "job_logs",
    "list_jobs",
    "module_entrypoint",
    "progress_from_logs",
    "progress_path_for",
    "read_progress",
    "report_progress",
    "submit_job",
    "write_progress",
]
