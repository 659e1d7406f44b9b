"""Enrolling a new target: recording → checks → person model, NMFC and masks → fine-tuning → registry bundle.

`enrol(video, name, registry_root, owner, consent_subject, base, config, work_dir)` runs the whole
pipeline of the enrolment line of docs/design.md's flow in this process (a Ray job wraps it elsewhere):

1. the name is validated and the recording hashed (sha256: the consent record names exactly
   which recording the subject agreed to);
2. the recording is tracked and `check_recording` refuses it *before any training* when it is too
   short, faceless, corrupt or mostly occluded, and warns about dark, over-exposed or blurred faces;
3. the chosen person (or the most frequent one) is fitted (paper eq. 2) and their frames become
   clips with NMFC, masks and mouth boxes, exactly as corpus preprocessing makes them;
4. `training.finetune.finetune` runs stage 2 (§3.4) and measures §4's numbers on held-out frames;
5. a background plate is made from the training crops and the bundle is written through
   `TargetRegistry.save`, whose manifest-last protocol makes it appear all at once.

The work folder makes an enrolment resumable: `recording.json` (written once preprocessing is
done) lets a rerun skip tracking and fitting, and `finetune/` holds fine-tuning's checkpoints. The
registry is only written after the last step, so a killed enrolment leaves nothing loadable there,
and two enrolments of one name become two versions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

import configs
from base.files import sha256_of, write_json_atomic
from base.targets import TargetIdError, validate_target_id
from edge.capture import VideoFile
from edge.errors import TrackingError
from edge.pipeline import track_video
from edge.tracking import TrackedFrame
from edge.tracks import Tracks
from face3d.errors import FitError
from face3d.fit import fit_person
from face3d.framing import CropFraming
from face3d.person import PersonModel
from inference.registry import Consent, RegistryError, TargetBundle, TargetMetadata, TargetRegistry
from training.clips import Clip, ClipError, load_clip
from training.corpus import CorpusVideo
from training.finetune import (
    EnrolError,
    FinetuneConfig,
    FinetuneProgress,
    FinetuneResult,
    finetune,
    split_holdout,
    stage_one_start,
)
from training.geometry import fitted_frames, load_fit_config
from training.preprocess import PreprocessConfig, config_record, consecutive_runs, write_runs

__all__ = [
    "EnrolConfig",
    "EnrolError",
    "EnrolResult",
    "FinetuneConfig",
    "RecordingCheck",
    "RecordingChecks",
    "background_plate",
    "check_recording",
    "clips_sha256",
    "enrol",
    "enrol_clips",
]

logger = logging.getLogger(__name__)

RECORDING_FILE = "recording.json"
RECORDING_VERSION = 1
PREPROCESSED_DIR = "preprocessed"
FINETUNE_DIR = "finetune"
PERSON_FILE = "person.npz"


class RecordingChecks(configs.StrictConfig):
    """What a recording must offer before fine-tuning starts (configs/enrol.yaml `checks`, numbers justified there)."""

    min_frames: int = Field(50, ge=1, description="fewest decoded frames; shorter recordings are refused")
    min_face_frames: int = Field(50, ge=1, description="fewest frames with the chosen person's face")
    min_face_fraction: float = Field(
        0.5, ge=0, le=1, description="fewest frames with a face, as a fraction of all (mostly occluded below)"
    )
    quality_samples: int = Field(24, ge=1, description="face frames decoded to measure lighting and blur")
    dark_luminance: float = Field(40.0, ge=0, le=255, description="face-box mean luminance below this is dark")
    bright_luminance: float = Field(
        215.0, ge=0, le=255, description="face-box mean luminance above this is over-exposed"
    )
    min_sharpness: float = Field(
        60.0, ge=0, description="variance of the Laplacian of the face crop below this is blurred"
    )
    sharpness_px: int = Field(
        128, ge=16, description="the face crop is resized to this square size before the Laplacian"
    )
    warn_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="warn when at least this fraction of the sampled frames is dark, bright or blurred",
    )


class EnrolConfig(configs.StrictConfig):
    """An enrolment (configs/enrol.yaml): fine-tuning, the recording's checks and the background plate."""

    config_name = "enrol"
    finetune: FinetuneConfig = FinetuneConfig()
    checks: RecordingChecks = RecordingChecks()
    background_threshold: int = Field(
        64, ge=1, le=255, description="mask values (0–255) below this count as background for the plate"
    )
    inpaint_radius_px: int = Field(3, ge=1, description="cv2.inpaint (Telea) radius for plate pixels never seen")

    @model_validator(mode="after")
    def _enough_face_frames(self) -> EnrolConfig:
        if self.checks.min_face_frames < self.finetune.min_frames:
            raise ValueError(
                f"checks.min_face_frames ({self.checks.min_face_frames}) must be at least finetune.min_frames "
                f"({self.finetune.min_frames}): a recording passing the checks must be able to train"
            )
        return self


# --- checking the recording ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingCheck:
    """A recording that passed the checks, and what was measured.

    person: the identity whose frames are enrolled (-1: faces were not grouped into people);
    frames: decoded frames; face_frames: frames with any face; person_frames: frames with the chosen
    person's face; luminance, sharpness: medians over the sampled face frames (None when not
    measured); warnings: problems that do not stop the enrolment; notes: choices made (which person).
    """

    person: int
    frames: int
    face_frames: int
    person_frames: int
    luminance: float | None
    sharpness: float | None
    warnings: tuple[str, ...]
    notes: tuple[str, ...]


def check_recording(
    tracks: Tracks, config: RecordingChecks, video: Path | None = None, person: int | None = None
) -> RecordingCheck:
    """Return the check of a tracked recording, or raise EnrolError saying what to record instead.

    Refused: no decodable frame (corrupt), fewer than `min_frames` frames (too short), no face, a
    face in fewer than `min_face_fraction` of the frames (mostly occluded or out of view), fewer
    than `min_face_frames` frames of the chosen person, an unknown `person`. With `video` (the
    tracked file), up to `quality_samples` face frames are decoded for the lighting and blur warnings.
    """
    count = len(tracks.frames)
    if count == 0:
        problems = "; ".join(tracks.warnings) or "no frame decoded"
        raise EnrolError(
            f"the recording has no decodable frame ({problems}): it is corrupt or empty. "
            "Record again, or re-encode it (e.g. `ffmpeg -i in.mov out.mp4`)."
        )
    seconds = count / tracks.source.fps if tracks.source.fps > 0 else float("nan")
    if count < config.min_frames:
        raise EnrolError(
            f"the recording is too short: {count} frames ({seconds:.1f} s); enrolment needs at least "
            f"{config.min_frames} frames. Record 10–20 s of yourself talking, face in view throughout."
        )
    if tracks.face_frames == 0:
        raise EnrolError(
            f"no face in any of the recording's {count} frames. Record your face frontally, well lit, "
            "filling at least a quarter of the picture."
        )
    fraction = tracks.face_frames / count
    if fraction < config.min_face_fraction:
        raise EnrolError(
            f"a face is visible in only {tracks.face_frames} of {count} frames ({fraction:.0%}; at least "
            f"{config.min_face_fraction:.0%} needed): the face is mostly occluded or out of view. Record again "
            "with nothing in front of the face (hands, hair, a microphone) and the whole head in the picture."
        )
    chosen, notes = _choose_person(tracks, person)
    frames = [f for f in tracks.frames if f.face_found and f.identity == chosen]
    if len(frames) < config.min_face_frames:
        who = f"person {chosen}'s face" if chosen >= 0 else "a face"
        raise EnrolError(
            f"only {len(frames)} frames show {who}; enrolment needs at least {config.min_face_frames}. "
            "Record a longer stretch of that person, face in view and unobstructed."
        )
    warnings = list(tracks.warnings)
    luminance = sharpness = None
    if video is not None:
        luminance, sharpness, quality = _quality_warnings(video, frames, config)
        warnings += quality
    return RecordingCheck(chosen, count, tracks.face_frames, len(frames), luminance, sharpness, tuple(warnings),
                          tuple(notes))  # fmt: skip


def _choose_person(tracks: Tracks, person: int | None) -> tuple[int, list[str]]:
    """Return the enrolled person's id and notes saying how they were chosen; EnrolError for an unknown one."""
    if not tracks.people:
        # Faces too small to describe were not grouped: every face frame is taken as the one person.
        if person is not None and person != -1:
            raise EnrolError(f"person {person} is not in the recording: its faces were not grouped into people")
        return -1, ["the faces were too small to tell people apart: every face frame is enrolled"]
    known = {p.id: p for p in tracks.people}
    listing = ", ".join(f"person {p.id} ({p.frames} frames)" for p in tracks.people)
    if person is not None:
        if person not in known:
            raise EnrolError(f"there is no person {person} in the recording; it has {listing}: choose one of them")
        notes = [f"{len(known)} people in the recording: enrolling person {person}, as chosen ({listing})"]
        return person, notes if len(known) > 1 else []
    main = tracks.main_person()
    if len(known) > 1:
        return main, [f"{len(known)} people in the recording: enrolling the most frequent, person {main} ({listing}); "
                      "pass person= to choose another"]  # fmt: skip
    return main, []


def _face_box(frame: TrackedFrame) -> tuple[int, int, int, int]:
    """Return the (x0, y0, x1, y1) pixel box of a frame's 468 face landmarks, clipped to the image."""
    points = frame.landmarks_px()[:468]
    width, height = frame.image_size
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)


def _quality_warnings(
    video: Path, frames: Sequence[TrackedFrame], config: RecordingChecks
) -> tuple[float | None, float | None, list[str]]:
    """Return the median face luminance, median sharpness and warnings measured on sampled face frames."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(config.quality_samples, len(frames))).round().astype(int))
    wanted = {frames[int(i)].index: frames[int(i)] for i in picks}
    luminance: list[float] = []
    sharpness: list[float] = []
    last = max(wanted)
    try:
        with VideoFile(video) as source:
            for decoded in source:
                tracked = wanted.get(decoded.index)
                if tracked is not None:
                    x0, y0, x1, y1 = _face_box(tracked)
                    if x1 - x0 >= 2 and y1 - y0 >= 2:
                        grey = cv2.cvtColor(decoded.rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
                        luminance.append(float(grey.mean()))
                        # A fixed crop size makes the Laplacian's variance comparable across face sizes.
                        side = (config.sharpness_px, config.sharpness_px)
                        resized = cv2.resize(grey, side, interpolation=cv2.INTER_AREA)
                        sharpness.append(float(cv2.Laplacian(resized, cv2.CV_64F).var()))
                if decoded.index >= last:
                    break
    except TrackingError as error:
        return None, None, [f"lighting and blur were not measured: {error}"]
    if not luminance:
        return None, None, []
    warnings: list[str] = []
    lum, sharp = np.array(luminance), np.array(sharpness)
    samples = len(lum)
    dark, bright, blurred = (
        int((lum < config.dark_luminance).sum()),
        int((lum > config.bright_luminance).sum()),
        int((sharp < config.min_sharpness).sum()),
    )
    median_lum, median_sharp = float(np.median(lum)), float(np.median(sharp))
    if dark >= config.warn_fraction * samples:
        warnings.append(
            f"the face is dark in {dark} of {samples} sampled frames (face luminance median {median_lum:.0f} of 255, "
            f"below {config.dark_luminance:.0f} counts as dark): light the face from the front for a better avatar"
        )
    if bright >= config.warn_fraction * samples:
        warnings.append(
            f"the face is over-exposed in {bright} of {samples} sampled frames (face luminance median "
            f"{median_lum:.0f} of 255, above {config.bright_luminance:.0f} counts as over-exposed): use softer light"
        )
    if blurred >= config.warn_fraction * samples:
        warnings.append(
            f"the face is blurred in {blurred} of {samples} sampled frames (sharpness median {median_sharp:.0f}, "
            f"variance of the Laplacian; below {config.min_sharpness:.0f} counts as blurred): focus the camera, "
            "move less quickly, or add light so the exposure is shorter"
        )
    return median_lum, median_sharp, warnings


# --- the bundle's pieces -------------------------------------------------------------------------------------------


def background_plate(clips: Sequence[Clip], threshold: int, inpaint_radius_px: int) -> npt.NDArray[np.uint8]:
    """Return an (S, S, 3) uint8 RGB plate: per pixel, the median of the crops where the mask says background.

    Pixels that are never background (the head covers them in every frame) are filled with
    cv2.inpaint (Telea) from the plate around them.
    """
    frames = np.concatenate([clip.frames for clip in clips]).astype(np.float32)
    background = np.concatenate([clip.masks for clip in clips]) < threshold
    samples = np.where(background[..., None], frames, np.nan)
    seen = background.any(axis=0)
    plate = np.zeros(frames.shape[1:], np.uint8)
    if seen.any():
        plate[seen] = np.round(np.nanmedian(samples[:, seen], axis=0)).astype(np.uint8)
    if not seen.all():
        holes = np.where(seen, 0, 255).astype(np.uint8)
        plate = np.asarray(cv2.inpaint(plate, holes, inpaint_radius_px, cv2.INPAINT_TELEA), dtype=np.uint8)
    return plate


def clips_sha256(clips: Sequence[Clip]) -> str:
    """Return the sha256 of the clips' frames (the 'recording' of an enrolment made from clips, e.g. synthetic)."""
    digest = hashlib.sha256()
    for clip in clips:
        digest.update(np.ascontiguousarray(clip.frames).tobytes())
    return digest.hexdigest()


# --- enrolment -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolResult:
    """What an enrolment did.

    version: the registry version written, or None when fine-tuning stopped early (`max_steps`) and
    nothing was written; check: the recording's check (None for `enrol_clips`); finetune: the
    fine-tuning result (held-out metrics in `finetune.metrics`); warnings and notes for the user.
    """

    target_id: str
    version: str | None
    registry_root: str
    consent: Consent
    check: RecordingCheck | None
    finetune: FinetuneResult
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float

    @property
    def committed(self) -> bool:
        """Return whether the bundle is in the registry."""
        return self.version is not None


def _now_utc() -> str:
    """Return the current UTC time as ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _validated_name(name: str) -> str:
    """Return `name` when it is a valid target id; EnrolError saying which names are valid otherwise."""
    try:
        return validate_target_id(name)
    except TargetIdError as error:
        raise EnrolError(str(error)) from None


def enrol_clips(
    clips: Sequence[Clip],
    name: str,
    registry_root: str,
    owner: str,
    consent_subject: str,
    person_model: PersonModel,
    base: Path | None,
    config: EnrolConfig,
    work_dir: Path,
    *,
    recording_sha256: str | None = None,
    recorded_at: str | None = None,
    progress: Callable[[FinetuneProgress], None] | None = None,
    max_steps: int | None = None,
    check: RecordingCheck | None = None,
    notes: Sequence[str] = (),
    device: str = "cpu",
    crop: CropFraming | None = None,
) -> EnrolResult:
    """Return the enrolment of already-preprocessed `clips` (one person, in recording order) as target `name`.

    Fine-tunes in `work_dir/finetune` (resuming it), then writes the bundle to the registry at
    `registry_root` — unless `max_steps` stopped fine-tuning early, in which case nothing is
    written and `version` is None. recording_sha256: the recording's hash for the consent record
    (the clips' frames' hash when None); recorded_at: when consent was given (now when None);
    crop: how the clips' face crops were framed (`crop_record`), kept in the bundle for serving.
    """
    began = time.perf_counter()
    target_id = _validated_name(name)
    try:
        consent = Consent(consent_subject, recorded_at or _now_utc(), recording_sha256 or clips_sha256(clips))
    except RegistryError as error:
        raise EnrolError(str(error)) from None
    if not owner.strip():
        raise EnrolError("an enrolled target needs an owner: pass the id of the user who may drive it")
    registry = TargetRegistry(registry_root)
    tuned = finetune(clips, base, config.finetune, Path(work_dir) / FINETUNE_DIR, progress, True, max_steps, device)
    all_notes = (*notes, *tuned.notes)
    warnings = check.warnings if check is not None else ()
    if not tuned.complete:
        return EnrolResult(target_id, None, registry_root, consent, check, tuned, warnings, all_notes,
                            time.perf_counter() - began)  # fmt: skip
    # The plate comes from the training frames only: the held-out ones stay unseen by anything trained.
    training, _ = split_holdout(clips, tuned.holdout_frames, 1)
    plate = background_plate(training, config.background_threshold, config.inpaint_radius_px)
    metadata = TargetMetadata(
        target_id=target_id,
        owner=owner,
        consent=consent,
        model_size=tuned.config.model_size,
        training={
            "stage": 2,
            "base": str(base) if base is not None else None,
            "steps": tuned.step,
            "training_frames": tuned.training_frames,
            "holdout_frames": tuned.holdout_frames,
            "seconds": round(tuned.seconds, 1),
            "finetune": config.finetune.model_dump(mode="json"),
            "step_config": tuned.config.model_dump(mode="json"),
            "model_config": tuned.model_config.model_dump(mode="json"),
            "crop": crop.to_json() if crop is not None else None,
            "references": (
                [
                    {"kind": k, "frame": i}
                    for k, i in zip(tuned.references.kinds, tuned.references.frame_indices, strict=True)
                ]
                if tuned.references is not None
                else None
            ),
            "background": "per-pixel median of the training crops' background, holes filled by cv2.inpaint (Telea)",
            "warnings": list(warnings),
            "notes": list(all_notes),
        },
        metrics={**tuned.metrics, "holdout": "last frames of the recording, never trained on"},
    )
    state = {key: value.detach().cpu().clone() for key, value in tuned.generator.state_dict().items()}
    bundle = TargetBundle(metadata, state, person_model, tuned.identity, plate, references=tuned.references)
    try:
        version = registry.save(bundle)
    except (RegistryError, OSError) as error:
        raise EnrolError(
            f"the bundle could not be written to {registry_root} ({error}); fine-tuning is kept in {work_dir}: "
            "fix the registry and run the enrolment again to write it"
        ) from error
    logger.info("enrolled %s as version %s in %s", target_id, version, registry_root)
    return EnrolResult(target_id, version, registry_root, consent, check, tuned, warnings, all_notes,
                        time.perf_counter() - began)  # fmt: skip


@dataclass(frozen=True)
class _Preprocessed:
    """A recording's preprocessing, as `recording.json` keeps it for a resumed enrolment."""

    clips: list[Clip]
    person_model: PersonModel
    check: RecordingCheck
    recorded_at: str
    notes: tuple[str, ...]
    crop: CropFraming


def crop_record(runs: Sequence[Sequence[TrackedFrame]], image_width: int, config: PreprocessConfig) -> CropFraming:
    """Return how the enrolment framed its face crops, for serving to frame the same way.

    The side of a crop over all kept frames taken as one run (crop_boxes' rule: `crop_margin` × the
    median landmark extent), in image widths; margin and nmfc_mode as configured.
    """
    extents = [float(np.ptp(frame.landmarks_px()[:468, :2], axis=0).max()) for run in runs for frame in run]
    return CropFraming.measured(extents, image_width, config.crop_margin, config.nmfc_mode)


def enrol(
    video: Path,
    name: str,
    registry_root: str,
    owner: str,
    consent_subject: str,
    base: Path | None,
    config: EnrolConfig,
    work_dir: Path,
    person: int | None = None,
    progress: Callable[[FinetuneProgress], None] | None = None,
    max_steps: int | None = None,
    device: str = "cpu",
) -> EnrolResult:
    """Return the enrolment of the person in `video` as target `name` (see the module docstring for the steps).

    Refuses, before any training and with EnrolError saying what to do, an invalid name, a missing
    consent subject or owner, and a recording that is corrupt, too short, faceless or mostly
    occluded. A rerun with the same `work_dir` resumes: preprocessing is reused when the recording
    (sha256), the chosen person and the configuration are unchanged, and fine-tuning continues
    from its last checkpoint.
    """
    _validated_name(name)
    if not consent_subject.strip() or not owner.strip():
        raise EnrolError("an enrolment records who consented (consent_subject) and who owns the target (owner)")
    video = Path(video)
    try:
        digest = sha256_of(video)
    except OSError as error:
        raise EnrolError(f"cannot read the recording {video} ({error}): give the path of a video file") from None
    work = Path(work_dir)
    stage_one_size = _model_size_px(base, config.finetune)
    preprocess_config = PreprocessConfig.load().model_copy(update={"size_px": stage_one_size})
    prepared = _load_preprocessed(work, digest, person, preprocess_config)
    if prepared is None:
        prepared = _preprocess(video, digest, person, preprocess_config, config.checks, name, work)
    for warning in prepared.check.warnings:
        logger.warning("%s: %s", video.name, warning)
    for note in prepared.check.notes:
        logger.info("%s: %s", video.name, note)
    return enrol_clips(
        prepared.clips, name, registry_root, owner, consent_subject, prepared.person_model, base, config, work,
        recording_sha256=digest, recorded_at=prepared.recorded_at, progress=progress, max_steps=max_steps,
        check=prepared.check, notes=prepared.notes, device=device, crop=prepared.crop,
    )  # fmt: skip


def _model_size_px(base: Path | None, config: FinetuneConfig) -> int:
    """Return the frame size the networks render (the base checkpoint's, or the pretrain profile's)."""
    stage_one, _ = stage_one_start(base, config)
    return stage_one.model_configs()[0].size_px


def _preprocess(
    video: Path,
    digest: str,
    person: int | None,
    config: PreprocessConfig,
    checks: RecordingChecks,
    name: str,
    work: Path,
) -> _Preprocessed:
    """Return the recording tracked, checked, fitted and cut into clips under `work`, recorded in recording.json."""
    recorded_at = _now_utc()
    try:
        tracks = track_video(video, identities=True, masks=False)
    except TrackingError as error:
        raise EnrolError(f"the recording cannot be read: {error}") from None
    check = check_recording(tracks, checks, video=video, person=person)
    fit = load_fit_config()
    try:
        result = fit_person(tracks.frames_of(check.person), fit)
    except FitError as error:
        raise EnrolError(
            f"the face could not be fitted ({error}): record the face frontally and unobstructed, then turn it a little"
        ) from None
    fitted = fitted_frames(result)
    runs = consecutive_runs([f for f in tracks.frames if f.index in fitted])
    kept = [run for run in runs if len(run) >= config.min_run]
    notes = list(check.notes)
    short = sum(len(run) for run in runs) - sum(len(run) for run in kept)
    if short:
        notes.append(f"{short} fitted frames in runs shorter than {config.min_run} frames left out")
    if not kept:
        raise EnrolError(
            f"no {config.min_run} consecutive frames of the face could be fitted: record a steady stretch of video "
            "with the face in view throughout"
        )
    out = work / PREPROCESSED_DIR
    source = CorpusVideo(identity=name, path=video, key="recording", relative=video.name)
    try:
        shards, _ = write_runs(source, kept, fitted, config, out)
        clips = [load_clip(out / shard) for shard in shards]
    except (TrackingError, ClipError) as error:
        raise EnrolError(f"preprocessing the recording failed ({error}): is the file still being written?") from None
    result.model.save(out / PERSON_FILE)
    crop = crop_record(kept, tracks.source.width, config)
    record = {
        "format_version": RECORDING_VERSION,
        "sha256": digest,
        "requested_person": person,
        "config": config_record(config, fit),
        "recorded_at": recorded_at,
        "shards": shards,
        "check": asdict(check),
        "notes": notes,
        "crop": crop.to_json(),
    }
    # Written last: a rerun trusts the shards only once this file names them.
    write_json_atomic(work / RECORDING_FILE, record)
    return _Preprocessed(clips, result.model, check, recorded_at, tuple(notes), crop)


def _load_preprocessed(work: Path, digest: str, person: int | None, config: PreprocessConfig) -> _Preprocessed | None:
    """Return the preprocessing an earlier run left in `work`, or None when there is none to reuse.

    EnrolError when `work` belongs to another recording: resuming would mix two people.
    """
    path = work / RECORDING_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("%s is damaged (%s): preprocessing the recording again", path, error)
        return None
    if record.get("sha256") != digest:
        raise EnrolError(
            f"{work} holds the enrolment of another recording (sha256 {str(record.get('sha256'))[:12]}…): "
            "use a new work folder for this one"
        )
    reusable = (
        record.get("format_version") == RECORDING_VERSION
        and record.get("requested_person") == person
        and record.get("config") == config_record(config, load_fit_config())
        and isinstance(record.get("crop"), dict)
    )
    if not reusable:
        return None
    out = work / PREPROCESSED_DIR
    try:
        clips = [load_clip(out / shard) for shard in record["shards"]]
        model = PersonModel.load(out / PERSON_FILE)
        check = RecordingCheck(**{**record["check"], "warnings": tuple(record["check"]["warnings"]),
                                  "notes": tuple(record["check"]["notes"])})  # fmt: skip
        crop = CropFraming.from_json(record["crop"])
    except (ClipError, FitError, KeyError, TypeError) as error:
        logger.warning("the preprocessing in %s is unusable (%s): doing it again", work, error)
        return None
    return _Preprocessed(clips, model, check, str(record["recorded_at"]), tuple(record.get("notes", ())), crop)


def enrolment_clips(work_dir: Path) -> list[Clip]:
    """Return the preprocessed clips an enrolment left in `work_dir` (training and held-out frames)."""
    path = Path(work_dir) / RECORDING_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return [load_clip(Path(work_dir) / PREPROCESSED_DIR / shard) for shard in record["shards"]]
    except (OSError, ValueError, KeyError, ClipError) as error:
        raise EnrolError(
            f"{path} holds no usable enrolment ({error}): enrol the target again, or pass --work-dir where "
            "its enrolment ran"
        ) from None
