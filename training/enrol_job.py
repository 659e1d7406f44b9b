"""The enrolment Ray job's entrypoint: `python -m training.enrol_job VIDEO --name NAME …`.

`headcast enrol` submits this module as a Ray job (training/jobs/); it runs `enrol` and reports
its stages and fine-tuning progress through `report_progress`, so `headcast jobs` shows them with
an ETA. Exit code 0: the bundle is committed to the registry; 1: refused or failed, with the reason
as the last line of the job's log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from base import assets
from base.errors import HeadcastError
from training.enrol import EnrolConfig, enrol
from training.finetune import FinetuneProgress
from training.jobs import report_progress


def main(argv: list[str] | None = None) -> int:
    """Run one enrolment; return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.enrol_job", description=__doc__)
    parser.add_argument("video", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--subject", required=True, help="who consented to be enrolled")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--base", type=Path, default=None)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--person", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)

    def progress(update: FinetuneProgress) -> None:
        report_progress(update.step, update.total, "fine-tuning", eta_s=update.eta_s)

    try:
        overrides: dict[str, Any] = {"finetune": {"steps": args.steps}} if args.steps is not None else {}
        config = EnrolConfig.load(args.profile, **overrides)
        report_progress(0, 1, "fetching models")
        assets.ensure_for("enrol")  # base.assets.COMMAND_ASSETS: the same list as `headcast enrol`
        report_progress(0, 1, "tracking, checking and fitting the recording")
        result = enrol(args.video, args.name, args.registry, args.owner, args.subject, args.base, config,
                        args.work_dir, person=args.person, progress=progress)  # fmt: skip
    except HeadcastError as error:
        print(f"enrolment refused: {error}", flush=True)
        return 1
    for line in (*result.notes, *result.warnings):
        print(line, flush=True)
    report_progress(1, 1, "done", f"target {result.target_id} version {result.version}")
    print(f"enrolled {result.target_id} version {result.version} in {result.registry_root}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
