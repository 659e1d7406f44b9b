"""Preprocessing a corpus of talking-head videos into clips, one Ray task per video.

Per video: track it (faces, shots, people), keep its most frequent person, fit that person's
PersonModel (paper eq. 2), and for every fitted frame cut a square crop around the face (the size
from the median landmark extent, the centre smoothed over a few frames), render the NMFC directly
in crop coordinates, segment the foreground and place the mouth box. Fitted frames are split into
runs of consecutive frames of one shot, and each run long enough becomes one `Clip`: clips promise
consecutive frames, so the K-frame windows that `ClipWindows` cuts can never straddle a cut or a gap.

Output folder:

    manifest.json                           per video: status, reason, frames, source sha256, config
    shards/<identity>/<key>[-<run>].npz     one clip per run (`training.clips.save_clip`, atomic)
    tracks/<identity>/<key>/                the video's tracks and the fitted person.npz

The manifest is rewritten atomically after every video (at most once a second) and when a run
ends or is interrupted, so a killed run loses at most the videos in flight and those finished in
its last second (their shards are simply written again); a rerun skips every
video whose source (sha256) and configuration are unchanged and whose shards are all there.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

import configs
from base.files import sha256_of, write_json_atomic
from edge.capture import VideoFile
from edge.errors import TrackingError
from edge.pipeline import track_video
from edge.segmentation import ForegroundSegmenter
from edge.tracking import TrackedFrame
from edge.tracks import save_tracks
from face3d.fit import FitConfig, FitError, fit_person
from face3d.nmfc import NmfcMode, nmfc_topology, render_nmfc_px
from training.clips import CLIP_FORMAT_VERSION, Clip, ClipError, load_clip, save_clip
from training.corpus import Corpus, CorpusError, CorpusVideo, discover_corpus
from training.geometry import CropBox, FittedFrame, fitted_frames, load_fit_config, mesh_in_crop

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
# Raised whenever what a shard holds changes for the same configuration, so old shards are redone.
PREPROCESS_VERSION = 1
SHARDS_DIR = "shards"
TRACKS_DIR = "tracks"
MANIFEST_INTERVAL_S = 1.0

Status = Literal["done", "skipped", "failed"]


class PreprocessConfig(configs.StrictConfig):
    """How videos become clips (filled from configs/preprocess.yaml)."""

    config_name = "preprocess"
    size_px: int = Field(128, ge=16, le=2048, description="side of the square frames, NMFC images and masks")
    crop_margin: float = Field(
        1.8, gt=1, le=5, description="crop side = the run's median face-landmark extent (px) × this"
    )
    smooth_frames: int = Field(
        5, ge=1, description="the crop centre is averaged over this many frames (centred) so the crop does not shake"
    )
    min_run: int = Field(
        8, ge=1, description="shortest run of consecutive fitted frames of one shot kept as a clip; shorter runs "
        "are dropped (training windows and the temporal discriminator need several consecutive frames)"
    )  # fmt: skip
    min_frames: int = Field(50, ge=1, description="an identity with fewer usable frames over all its videos is dropped")
    nmfc_mode: NmfcMode = Field(
        "centre", description="NMFC colour per triangle centre (the paper) or interpolated barycentrically"
    )


@dataclass(frozen=True)
class VideoReport:
    """What preprocessing did with one video (one manifest entry).

    status: done (shards written), skipped (the video cannot give clips: reason says why; not retried
    while the source and configuration stay the same) or failed (the task itself broke: retried by
    the next run). frames_total: decoded frames; frames_fitted: frames of the kept person with a fit;
    frames: frames written to shards. shards: paths relative to the output folder. resumed: taken
    from an earlier run without recomputation. config: the configuration the entry was made with.
    """

    identity: str
    key: str
    source: str
    status: Status
    reason: str | None = None
    sha256: str = ""
    frames_total: int = 0
    frames_fitted: int = 0
    frames: int = 0
    shards: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    resumed: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.identity}/{self.key}"

    def to_json(self) -> dict[str, Any]:
        """Return the manifest entry (JSON-ready) of this report; `resumed` is not stored."""
        entry = asdict(self)
        del entry["resumed"]
        entry["shards"], entry["notes"] = list(self.shards), list(self.notes)
        return entry

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> VideoReport:
        """Return the report of a manifest entry; raises CorpusError when the entry is malformed."""
        try:
            return cls(**{**entry, "shards": tuple(entry["shards"]), "notes": tuple(entry["notes"])})
        except (TypeError, KeyError) as error:
            raise CorpusError(f"a manifest entry is malformed ({error})") from None


@dataclass(frozen=True)
class IdentityReport:
    """One identity's standing: usable (its shards train), dropped (reason says why) or pending."""

    status: Literal["usable", "dropped", "pending"]
    frames: int
    videos: int
    reason: str | None = None


@dataclass(frozen=True)
class PreprocessReport:
    """The outcome of `preprocess_corpus`: every video, every identity, rejected corpus entries."""

    out_dir: Path
    videos: tuple[VideoReport, ...]
    identities: dict[str, IdentityReport]
    rejected: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def computed(self) -> tuple[VideoReport, ...]:
        """Return the videos processed by this run (not resumed from an earlier one)."""
        return tuple(v for v in self.videos if not v.resumed)

    @property
    def skipped(self) -> tuple[VideoReport, ...]:
        """Return the videos that gave no clips (skipped or failed), with their reasons."""
        return tuple(v for v in self.videos if v.status != "done")

    @property
    def usable_identities(self) -> tuple[str, ...]:
        """Return the names of the identities whose shards are used for training."""
        return tuple(name for name, report in self.identities.items() if report.status == "usable")

    @property
    def dropped_identities(self) -> dict[str, str]:
        """Return identity → the reason it was dropped."""
        return {name: r.reason or "" for name, r in self.identities.items() if r.status == "dropped"}


ProgressCallback = Callable[[VideoReport, int, int], None]
"""Called after every video with (its report, videos finished, videos in all)."""


# --- crops ---------------------------------------------------------------------------------------------------------


def crop_boxes(landmarks_px: npt.NDArray[np.floating[Any]], margin: float, smooth_frames: int) -> list[CropBox]:
    """Return one square CropBox per frame of a run, from its (T, N, 2) landmark pixels.

    The side is the run's median landmark extent × `margin`, one value for the whole run so the
    face keeps its size in the crop; the centre is the landmarks' box centre averaged over
    `smooth_frames` frames centred on each frame (the ends repeat), so tracker jitter does not shake it.
    """
    points = np.asarray(landmarks_px, dtype=np.float64)
    low, high = points.min(axis=1), points.max(axis=1)
    side = max(2, round(float(np.median((high - low).max(axis=1))) * margin))
    centres = (low + high) / 2
    window = min(smooth_frames, len(centres))
    before = (window - 1) // 2
    padded = np.pad(centres, ((before, window - 1 - before), (0, 0)), mode="edge")
    kernel = np.full(window, 1.0 / window)
    smoothed = np.stack([np.convolve(padded[:, axis], kernel, mode="valid") for axis in range(2)], axis=1)
    return [CropBox(round(x - side / 2), round(y - side / 2), side) for x, y in smoothed]


def crop_square(image: npt.NDArray[np.uint8], box: CropBox, size_px: int) -> npt.NDArray[np.uint8]:
    """Return `box` of an (H, W[, C]) image resized to (size_px, size_px[, C]); black where the box leaves the image."""
    import cv2

    height, width = image.shape[:2]
    canvas = np.zeros((box.side, box.side, *image.shape[2:]), dtype=image.dtype)
    left, top = max(box.x0, 0), max(box.y0, 0)
    right, bottom = min(box.x0 + box.side, width), min(box.y0 + box.side, height)
    if right > left and bottom > top:
        canvas[top - box.y0 : bottom - box.y0, left - box.x0 : right - box.x0] = image[top:bottom, left:right]
    # Area averaging when shrinking (no aliasing); bilinear when a small face must be enlarged.
    interpolation = cv2.INTER_AREA if box.side > size_px else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(canvas, (size_px, size_px), interpolation=interpolation), dtype=np.uint8)


def consecutive_runs(frames: Sequence[TrackedFrame]) -> list[list[TrackedFrame]]:
    """Return the frames split into runs: consecutive frame indices within one shot."""
    runs: list[list[TrackedFrame]] = []
    for frame in sorted(frames, key=lambda f: f.index):
        last = runs[-1][-1] if runs else None
        if last is not None and last.index + 1 == frame.index and last.shot == frame.shot:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


# --- one video -----------------------------------------------------------------------------------------------------


def config_record(config: PreprocessConfig, fit: FitConfig) -> dict[str, Any]:
    """Return the JSON-ready record of everything that decides a video's shards (compared on resume)."""
    record = {
        "preprocess": config.model_dump(mode="json"),
        "fit": asdict(fit),
        "clip_format": CLIP_FORMAT_VERSION,
        "version": PREPROCESS_VERSION,
    }
    normalised: dict[str, Any] = json.loads(json.dumps(record))
    return normalised


def _still_valid(previous: VideoReport, digest: str, record: dict[str, Any], out: Path) -> bool:
    """Return True when an earlier entry can stand: same source, same configuration, its shards all there."""
    if previous.status == "failed" or previous.sha256 != digest or previous.config != record:
        return False
    return all((out / shard).is_file() for shard in previous.shards)


def _shard_paths(video: CorpusVideo, runs: int) -> list[str]:
    folder = f"{SHARDS_DIR}/{video.identity}"
    if runs == 1:
        return [f"{folder}/{video.key}.npz"]
    return [f"{folder}/{video.key}-{run}.npz" for run in range(runs)]


def preprocess_video(
    video: CorpusVideo,
    out_dir: str | Path,
    config: PreprocessConfig,
    fit: FitConfig,
    previous: VideoReport | None = None,
) -> VideoReport:
    """Return the report of preprocessing one video into shards under `out_dir` (the body of a Ray task).

    Videos that cannot give clips (unreadable, no face, too few fitted frames) come back as
    "skipped" with the reason; the report is small, the arrays go to disk.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    record = config_record(config, fit)
    base = VideoReport(video.identity, video.key, video.relative, "skipped", config=record)
    try:
        digest = sha256_of(video.path)
    except OSError as error:
        return replace(base, reason=f"cannot read the file ({error})")
    if previous is not None and _still_valid(previous, digest, record, out):
        return replace(previous, resumed=True)
    base = replace(base, sha256=digest)
    try:
        report = _make_clips(video, out, config, fit, base)
    except (TrackingError, FitError, ClipError) as error:
        # Problems of this video. Anything else (a missing model file, a bug) fails the task, and
        # failed videos are retried by the next run instead of being remembered as skipped.
        report = replace(base, reason=str(error))
    report = replace(report, seconds=round(time.perf_counter() - start, 3))
    stale = set(previous.shards if previous is not None else ()) - set(report.shards)
    for shard in stale:
        (out / shard).unlink(missing_ok=True)
    return report


def _make_clips(
    video: CorpusVideo, out: Path, config: PreprocessConfig, fit: FitConfig, base: VideoReport
) -> VideoReport:
    """Return the report after tracking, fitting and writing the clips of one video."""
    tracks = track_video(video.path, identities=True, masks=False)
    notes = list(tracks.warnings)
    base = replace(base, frames_total=len(tracks.frames), notes=tuple(notes))
    if not tracks.frames:
        return replace(base, reason=f"not a readable video: {'; '.join(notes) or 'no frame decoded'}")
    if tracks.face_frames == 0:
        return replace(base, reason=f"no face in any of its {len(tracks.frames)} frames")
    if not tracks.people:
        return replace(base, reason=f"faces in {tracks.face_frames} frames, all too small to tell who they are")
    person = tracks.main_person()
    if len(tracks.people) > 1:
        others = ", ".join(f"person {p.id} ({p.frames} frames)" for p in tracks.people if p.id != person)
        notes.append(f"{len(tracks.people)} people: kept the most frequent, person {person}; left out {others}")
    result = fit_person(tracks.frames_of(person), fit)
    fitted = fitted_frames(result)
    tracks_dir = out / TRACKS_DIR / video.identity / video.key
    save_tracks(tracks, tracks_dir)
    result.model.save(tracks_dir / "person.npz")

    runs = consecutive_runs([f for f in tracks.frames if f.index in fitted])
    kept = [run for run in runs if len(run) >= config.min_run]
    short = sum(len(run) for run in runs) - sum(len(run) for run in kept)
    if short:
        notes.append(f"{short} fitted frames in runs shorter than {config.min_run} frames left out")
    base = replace(base, frames_fitted=len(fitted), notes=tuple(notes))
    if not kept:
        longest = max(len(run) for run in runs)
        return replace(base, reason=f"no run of {config.min_run} consecutive fitted frames (longest {longest})")
    shards, frames = write_runs(video, kept, fitted, config, out)
    return replace(base, status="done", frames=frames, shards=tuple(shards))


def write_runs(
    video: CorpusVideo,
    runs: list[list[TrackedFrame]],
    fitted: dict[int, FittedFrame],
    config: PreprocessConfig,
    out: Path,
) -> tuple[list[str], int]:
    """Return the shards written (relative to `out`) and their frame count: one Clip per run, from a
    second decoding in which the runs' frames are cropped, segmented and rendered."""
    boxes: dict[int, CropBox] = {}
    for run in runs:
        landmarks = np.stack([f.landmarks_px()[:468] for f in run])
        boxes.update(zip((f.index for f in run), crop_boxes(landmarks, config.crop_margin, config.smooth_frames),
                         strict=True))  # fmt: skip
    run_of = {frame.index: r for r, run in enumerate(runs) for frame in run}
    names = _shard_paths(video, len(runs))
    size = config.size_px
    topology = nmfc_topology()
    parts: dict[int, dict[str, list[npt.NDArray[Any]]]] = {}
    written: list[str] = []
    frames = 0

    def finish(r: int) -> None:
        # Each run is written as soon as it is complete, so a long video never holds more than one
        # run's crops; a run cut short (the file changed since tracking) is kept if still long enough.
        nonlocal frames
        part = parts.pop(r, None)
        if part is None or len(part["frames"]) < config.min_run:
            return
        first, count = runs[r][0].index, len(part["frames"])
        clip = Clip(
            identity=video.identity,
            source=f"{video.relative}#{first}-{first + count - 1}",
            frames=np.stack(part["frames"]),
            masks=np.stack(part["masks"]),
            nmfc=np.stack(part["nmfc"]),
            mouth_boxes=np.stack(part["mouth_boxes"]),
            vertices_px=np.stack(part["vertices_px"]).astype(np.float32),
        )
        save_clip(clip, out / names[r])
        written.append(names[r])
        frames += count

    last = max(run_of)
    # Masks are computed here, on the kept frames only, rather than by tracking: the segmenter has
    # no state between frames, and full-resolution masks of a whole video need not sit in memory.
    with VideoFile(video.path) as source, ForegroundSegmenter() as segmenter:
        image_size = (source.info.width, source.info.height)
        for frame in source:
            r = run_of.get(frame.index)
            if r is not None:
                box = boxes[frame.index]
                mask = np.round(segmenter.mask(frame.rgb) * 255).astype(np.uint8)
                mesh = mesh_in_crop(fitted[frame.index], image_size, box, size)
                nmfc = render_nmfc_px(mesh, (size, size), topology, config.nmfc_mode)
                part = parts.setdefault(
                    r, {"frames": [], "masks": [], "nmfc": [], "mouth_boxes": [], "vertices_px": []}
                )
                part["vertices_px"].append(mesh)
                part["frames"].append(crop_square(frame.rgb, box, size))
                part["masks"].append(crop_square(mask, box, size))
                part["nmfc"].append(nmfc.to_uint8())
                part["mouth_boxes"].append(np.asarray(nmfc.mouth_box, dtype=np.int64))
                if frame.index == runs[r][-1].index:
                    finish(r)
            if frame.index >= last:
                break
    for r in list(parts):
        finish(r)
    if not written:
        raise ClipError(f"{video.relative}: the second decoding gave fewer frames than tracking; is it being written?")
    return written, frames


# --- the manifest --------------------------------------------------------------------------------------------------


def _read_manifest(out: Path) -> dict[str, Any]:
    """Return the manifest in `out`; raises CorpusError when it is missing or damaged."""
    path = out / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"{out} holds no {MANIFEST_FILE}: preprocess a corpus into it first") from None
    except (OSError, ValueError) as error:
        raise CorpusError(f"{path} is damaged ({error}): preprocess the corpus again") from None
    if not isinstance(data, dict) or data.get("format_version") != MANIFEST_VERSION:
        version = data.get("format_version") if isinstance(data, dict) else None
        raise CorpusError(f"{path}: manifest format {version}, this headcast reads {MANIFEST_VERSION}; "
                          "preprocess the corpus again")  # fmt: skip
    return data


def _previous_reports(out: Path) -> dict[str, VideoReport]:
    """Return video name → its entry of an earlier run; nothing (and a warning) when the manifest is unusable."""
    if not (out / MANIFEST_FILE).exists():
        return {}
    try:
        entries = _read_manifest(out).get("videos", {})
        return {name: VideoReport.from_json(entry) for name, entry in entries.items()}
    except CorpusError as error:
        logger.warning("%s; every video will be preprocessed again", error)
        return {}


def identity_reports(corpus: Corpus, reports: dict[str, VideoReport], min_frames: int) -> dict[str, IdentityReport]:
    """Return identity → its standing given the videos reported so far (pending while any is not)."""
    by_identity: dict[str, list[VideoReport]] = {}
    for report in reports.values():
        by_identity.setdefault(report.identity, []).append(report)
    standing: dict[str, IdentityReport] = {}
    for identity, paths in corpus.identities.items():
        mine = by_identity.get(identity, [])
        frames = sum(r.frames for r in mine if r.status == "done")
        if len(mine) < len(paths):
            standing[identity] = IdentityReport("pending", frames, len(paths))
        elif frames >= min_frames:
            standing[identity] = IdentityReport("usable", frames, len(paths))
        else:
            unusable = sum(r.status != "done" for r in mine)
            standing[identity] = IdentityReport("dropped", frames, len(paths), (
                f"{frames} usable frames in {len(paths)} video(s) ({unusable} without clips); "
                f"an identity needs at least {min_frames}"))  # fmt: skip
    return standing


def _manifest(corpus: Corpus, reports: dict[str, VideoReport], config: PreprocessConfig) -> dict[str, Any]:
    return {
        "format_version": MANIFEST_VERSION,
        "root": str(corpus.root),
        "layout": corpus.layout,
        "videos": {name: reports[name].to_json() for name in sorted(reports)},
        "identities": {name: asdict(r) for name, r in identity_reports(corpus, reports, config.min_frames).items()},
        "rejected": [list(entry) for entry in corpus.rejected],
    }


def _remove_partials(out: Path) -> None:
    """Delete the half-written files a killed run left (save_clip and save_tracks name them `.*.partial-*`)."""
    for partial in [*out.glob(f"{SHARDS_DIR}/*/.*.partial-*"), *out.glob(f"{TRACKS_DIR}/*/*/.*.partial-*")]:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class VideoJob:
    """The arguments of one video's Ray task (see `preprocess_video`)."""

    video: CorpusVideo
    out_dir: str
    config: PreprocessConfig
    fit: FitConfig
    previous: VideoReport | None


def run_video_job(job: VideoJob) -> VideoReport:
    """Return `preprocess_video`'s report for the job (the function each Ray task runs)."""
    return preprocess_video(job.video, job.out_dir, job.config, job.fit, job.previous)


# --- the corpus, on Ray --------------------------------------------------------------------------------------------


def preprocess_corpus(
    root: str | Path,
    out_dir: str | Path,
    config: PreprocessConfig | None = None,
    address: str | None = None,
    progress: ProgressCallback | None = None,
) -> PreprocessReport:
    """Return the report of preprocessing every video of the corpus at `root` into `out_dir`.

    One Ray task (one CPU) per video; Ray is started locally unless it already runs in this process
    or `address` names a cluster to join (every node then needs headcast installed and `out_dir` on a
    shared file system). Results are gathered as they finish and the manifest is rewritten after
    each (see the module docstring). Videos unchanged since an earlier run into the same folder are
    not recomputed. Broken and faceless videos are skipped with a reason; identities with too few
    frames are dropped.
    """
    import ray
    from ray.exceptions import RayError

    start = time.perf_counter()
    corpus = discover_corpus(root)
    config = config or PreprocessConfig.load()
    fit = load_fit_config()
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    # No run can be writing into `out` now (one run per folder), so any half-written file is dead.
    _remove_partials(out)
    previous = _previous_reports(out)
    reports: dict[str, VideoReport] = {}
    started_ray = not ray.is_initialized()
    if started_ray and address:
        ray.init(address=address)
    elif started_ray:
        ray.init(include_dashboard=False)
    # A crashed worker (a decoder killed by a hostile file) is tried once more, then reported as failed.
    task = ray.remote(num_cpus=1, max_retries=1)(run_video_job)
    # Tasks are submitted a window at a time: the driver's bookkeeping stays small for any corpus size.
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    waiting = iter(corpus)
    pending: dict[Any, CorpusVideo] = {}
    written = 0.0
    try:
        while True:
            for video in waiting:
                job = VideoJob(video, str(out), config, fit, previous.get(f"{video.identity}/{video.key}"))
                pending[task.remote(job)] = video
                if len(pending) >= window:
                    break
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                video = pending.pop(ref)
                try:
                    report: VideoReport = ray.get(ref)
                except RayError as error:
                    message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                    logger.error("preprocessing %s failed: %s", video.relative, error)
                    report = VideoReport(video.identity, video.key, video.relative, "failed",
                                         reason=f"the preprocessing task failed: {message}")  # fmt: skip
                reports[report.name] = report
                # After every video, unless many finish within a second (resuming a large corpus):
                # rewriting the whole manifest for each would then cost more than the videos.
                if time.monotonic() - written >= MANIFEST_INTERVAL_S:
                    write_json_atomic(out / MANIFEST_FILE, _manifest(corpus, reports, config))
                    written = time.monotonic()
                if report.status != "done":
                    logger.info("no clips from %s: %s", video.relative, report.reason)
                if progress is not None:
                    progress(report, len(reports), len(corpus))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        write_json_atomic(out / MANIFEST_FILE, _manifest(corpus, reports, config))
        if started_ray:
            ray.shutdown()
    ordered = tuple(reports[f"{v.identity}/{v.key}"] for v in corpus)
    return PreprocessReport(
        out_dir=out,
        videos=ordered,
        identities=identity_reports(corpus, reports, config.min_frames),
        rejected=corpus.rejected,
        seconds=round(time.perf_counter() - start, 3),
    )


def load_corpus_clips(out_dir: str | Path) -> list[Clip]:
    """Return the clips of the usable identities of a preprocessed folder, in manifest order.

    Damaged shards are refused one by one: each is logged as a warning naming the file and left
    out, so one bad file does not stop training. Raises CorpusError when the manifest is missing or
    damaged, since then nothing says which shards are usable.
    """
    out = Path(out_dir).expanduser()
    manifest = _read_manifest(out)
    usable = {name for name, entry in manifest.get("identities", {}).items() if entry.get("status") == "usable"}
    clips = []
    for entry in manifest.get("videos", {}).values():
        report = VideoReport.from_json(entry)
        if report.status != "done" or report.identity not in usable:
            continue
        for shard in report.shards:
            try:
                clips.append(load_clip(out / shard))
            except ClipError as error:
                logger.warning("left out a damaged shard: %s", error)
    return clips


class PreprocessProgress:
    """A rich progress bar over the videos of `preprocess_corpus`, passed as its `progress`.

    `with PreprocessProgress() as bar: preprocess_corpus(root, out, progress=bar)`
    """

    def __init__(self, console: Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: Any = None
        self.skipped = 0

    def __enter__(self) -> PreprocessProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def __call__(self, report: VideoReport, finished: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task("preprocessing", total=total)
        self.skipped += report.status != "done"
        state = "resumed" if report.resumed else report.status
        description = f"{report.name} {state} ({self.skipped} skipped)"
        self._progress.update(self._task, completed=finished, description=description)
