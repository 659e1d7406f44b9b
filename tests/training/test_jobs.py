"""Ray jobs on a real local head: submit, progress, logs, cancel, failure, and the errors users meet."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from training import jobs
from training.jobs import JobError, JobProgress, LocalCluster

# How long a job may take to start, run its few lines and be reported ended: a loaded 2-core machine
# starts a job's driver in seconds to tens of seconds; every wait returns as soon as the job is there.
JOB_TIMEOUT_S = 180.0

# Entrypoints are `python -c` programs so the tests need no module of their own on the cluster.
REPORTS_THREE_TIMES = """
import os
from training.jobs import report_progress
for step in (1, 2, 3):
    report_progress(step, 3, stage="counting", message=f"step {step}", eta_s=float(3 - step))
print("cache:", os.environ.get("HEADCAST_CACHE_DIR"), "secret:", os.environ.get("HEADCAST_SECRET"))
print("job says hello")
"""

RUNS_UNTIL_STOPPED = """
import time
from training.jobs import report_progress
for step in range(1, 601):
    report_progress(step, 600, stage="sleeping")
    time.sleep(0.1)
"""

FAILS = """
import sys
print("about to fail")
sys.stderr.write("boom: the recording has no face\\n")
sys.exit(1)
"""


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[jobs.HeadInfo]:
    """A real local Ray head (1 CPU) with its own cache folder and token; stopped, leaving no process."""
    root = tmp_path_factory.mktemp("ray-jobs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEADCAST_CACHE_DIR", str(root / "cache"))
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(root / "auth_token"))
        patch.delenv("RAY_AUTH_TOKEN", raising=False)
        patch.setenv("HEADCAST_SECRET", "must-not-reach-the-job")
        cluster = LocalCluster(num_cpus=1)
        info = cluster.ensure()
        try:
            yield info
        finally:
            assert cluster.stop()
            # The head led its own process group: nothing of it may be left.
            with pytest.raises(ProcessLookupError):
                os.killpg(info.pid, 0)
            assert not Path(info.temp_dir).exists()
            assert not cluster.state_path.exists()


def final(submission_id: str) -> jobs.JobInfo:
    """Return the job's last JobInfo, following it as `headcast enrol` does (JOB_TIMEOUT_S is only a safety net)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    for info in jobs.follow_job(submission_id, poll_s=0.5):
        assert time.monotonic() < deadline, f"job {submission_id} still {info.status} after {JOB_TIMEOUT_S} s"
    return info


def test_a_job_that_reports_progress_succeeds(head: jobs.HeadInfo) -> None:
    submission_id = jobs.submit_job(
        [sys.executable, "-c", REPORTS_THREE_TIMES], name="Count to three", metadata={"target": "anna"}
    )
    info = final(submission_id)

    assert info.status == "SUCCEEDED", jobs.job_logs(submission_id)
    assert info.name == "Count to three" and info.metadata["target"] == "anna"
    assert info.start_time is not None and info.end_time is not None and info.end_time >= info.start_time
    assert info.progress is not None
    assert (info.progress.step, info.progress.total, info.progress.stage) == (3, 3, "counting")
    assert info.progress.eta_s == 0.0 and info.progress.fraction == 1.0
    logs = jobs.job_logs(submission_id)
    assert "job says hello" in logs
    assert logs.count(jobs.PROGRESS_LOG_PREFIX) == 3
    # The asset cache setting travels with the job; the signing secret does not.
    assert f"cache: {os.environ['HEADCAST_CACHE_DIR']} secret: None" in logs
    assert submission_id in [job.id for job in jobs.list_jobs()]


def test_the_running_head_is_found_not_started_again(head: jobs.HeadInfo) -> None:
    assert LocalCluster().ensure() == head


def test_a_cancelled_job_stops(head: jobs.HeadInfo) -> None:
    submission_id = jobs.submit_job([sys.executable, "-c", RUNS_UNTIL_STOPPED], name="sleeper", metadata={})
    deadline = time.monotonic() + JOB_TIMEOUT_S
    progress = None
    while progress is None and time.monotonic() < deadline:
        progress = jobs.job_info(submission_id).progress
        time.sleep(0.2)
    assert progress is not None, "the job never reported progress"

    assert jobs.cancel_job(submission_id)
    info = final(submission_id)

    assert info.status == "STOPPED"
    assert info.progress is not None and 1 <= info.progress.step < 600


def test_a_failing_job_fails_with_its_stderr_in_the_logs(head: jobs.HeadInfo) -> None:
    submission_id = jobs.submit_job([sys.executable, "-c", FAILS], name="fails", metadata={})
    info = final(submission_id)

    assert info.status == "FAILED"
    logs = jobs.job_logs(submission_id)
    assert "about to fail" in logs and "boom: the recording has no face" in logs
    assert info.progress is None


def test_a_wrong_token_is_refused_with_a_clear_error(head: jobs.HeadInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
    with pytest.raises(JobError, match=r"refused the authentication token from \$RAY_AUTH_TOKEN"):
        jobs.list_jobs(head.dashboard_url)


def test_a_missing_token_is_named_in_the_error(
    head: jobs.HeadInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token-here"))
    with pytest.raises(JobError, match="needs an authentication token and there is none"):
        jobs.list_jobs(head.dashboard_url)


def test_an_unknown_job_id_is_a_job_error(head: jobs.HeadInfo) -> None:
    with pytest.raises(JobError, match=r"headcast-no-such-job does not exist.*`headcast jobs` lists"):
        jobs.job_logs("headcast-no-such-job")


def test_an_unreachable_address_is_named_in_the_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(JobError, match=f"cannot reach a Ray dashboard at {address}"):
        jobs.list_jobs(address)


def test_without_a_local_head_there_is_nothing_to_list_or_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADCAST_CACHE_DIR", str(tmp_path))
    assert jobs.list_jobs() == []
    assert not LocalCluster().stop()
    with pytest.raises(JobError, match="no local Ray head is running"):
        jobs.cancel_job("headcast-anything")


def test_a_stale_head_state_is_forgotten(tmp_path: Path) -> None:
    stale = jobs.HeadInfo("http://127.0.0.1:1", "127.0.0.1:2", pid=2**22 + 1, temp_dir=str(tmp_path / "gone"),
                          num_cpus=1, started_at=0.0)  # fmt: skip
    cluster = LocalCluster(state_dir=tmp_path)
    cluster.state_path.write_text(json.dumps(stale.__dict__))
    assert cluster.find() is None
    assert not cluster.state_path.exists()


def test_progress_round_trips_through_an_atomic_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "progress.json"
    assert jobs.read_progress(path) is None
    first = JobProgress(step=1, total=4, stage="fit", message="fitting", eta_s=12.5)
    jobs.write_progress(path, first)
    jobs.write_progress(path, JobProgress(step=2, total=4, stage="fit"))

    read = jobs.read_progress(path)
    assert read is not None and (read.step, read.total, read.eta_s, read.fraction) == (2, 4, None, 0.5)
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"]  # no temporary left behind
    assert JobProgress.from_dict(json.loads(first.to_json())) == first


def test_a_corrupt_progress_file_is_a_job_error(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text("{not json")
    with pytest.raises(JobError, match="write_progress"):
        jobs.read_progress(path)
    path.write_text('{"step": 1}')
    with pytest.raises(JobError, match="total"):
        jobs.read_progress(path)


def test_report_progress_writes_the_file_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "progress.json"
    monkeypatch.setenv(jobs.PROGRESS_ENV, str(path))
    reported = jobs.report_progress(5, 10, stage="tune", message="half way", eta_s=30.0)

    assert jobs.read_progress(path) == reported
    assert jobs.progress_from_logs("noise\n" + capsys.readouterr().out + "more noise\n") == reported
    assert jobs.progress_from_logs("no progress here") is None


def test_progress_out_of_range_is_refused() -> None:
    with pytest.raises(JobError, match="out of range"):
        JobProgress(step=4, total=3)
    with pytest.raises(JobError, match="out of range"):
        JobProgress(step=-1, total=3)


def test_module_entrypoint_uses_this_interpreter_only_for_a_local_cluster() -> None:
    assert jobs.module_entrypoint("training.enrol", "--name", "anna") == [
        sys.executable, "-m", "training.enrol", "--name", "anna"
    ]  # fmt: skip
    assert jobs.module_entrypoint("training.enrol", address="http://10.0.0.5:8265")[0] == "python"
