"""The paper's self-reenactment evaluation (docs/method.md §4) and its ablation table.

`evaluate(generator, clips, out_dir)` renders a target's held-out frames sequentially from their
NMFC alone (the generated frames are fed back, as when serving) and compares them with the real
ones:

- pixel distance: per-pixel L2 of RGB in 0–255, averaged over pixels and frames; the masked
  pixel distance averages it over the real foreground only (mask ≥ 128);
- mask IoU: the predicted mask > 0.5 against the real mask ≥ 128, pooled over the frames;
- identity Fréchet distance: the Fréchet distance between Gaussians fitted to real and to
  generated frames in the 128-d feature space of dlib's face-identity ResNet. The paper used
  ArcFace, which is not available offline; dlib's network is the identity network this project
  ships (`base.assets` "face_descriptor"). Each frame is described on its whole square crop
  (dlib's 5-point aligner run on the crop's rectangle). With fewer frames than 128 dimensions
  the covariances are singular, so both get the same small ridge (RIDGE · I) before the matrix
  square root; identical feature sets then give exactly 0;
- temporal difference error (our flicker measure): the per-pixel L2 (RGB, 0–255) between the
  generated and the real temporal differences, ‖(ỹ_t − ỹ_{t−1}) − (y_t − y_{t−1})‖, averaged
  over pixels and consecutive pairs within a clip. It is 0 when the generated video changes
  exactly as the real one does, grows with flicker (changes the real video lacks) and with
  frozen output (changes it misses); the mean magnitudes of both videos' temporal differences are
  reported next to it.

- sharpness ratio: variance of the Laplacian over the real face mask, generated ÷ real, the
  median over frames (training/metrics.py): 1 as sharp as the recording, below 1 blurrier;
- identity distance: dlib's descriptor of each generated frame (aligned on the face dlib's detector
  finds, else the whole crop) to the mean descriptor of the real held-out frames; under 0.6 dlib
  counts it the same person. The fraction of frames under 0.6 and of frames where the detector
  finds a face at all are reported beside the median.

G with warp references renders from the NMFC *and* the target's reference frames warped along the
mesh (inference/warp.py); the references are the enrolment's (the bundle's). An untrained warp G is
the warp alone (its heads start at zero), which is how the "warp alone" row is measured.

The foreground masks are the clips' (MediaPipe selfie segmentation when preprocessed from video;
the paper used BiSeNet face parsing). `out_dir` receives `evaluation.json`, `evaluation.md` and a
side-by-side video `side_by_side.mp4` (real | generated | NMFC).

`run_ablations` fine-tunes the paper's variants (without D_D, without D_M, without both, without
stage-1 initialisation) with `training.finetune.finetune` and evaluates each on the same held-out
clips, beside the warp alone and, given a base without warp references, the NMFC-only generator;
`ablation_table` prints them in the paper's table format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from base.errors import HeadcastError
from base.files import write_atomic
from inference.networks import Generator
from inference.warp import ReferenceFrames
from training.clips import Clip
from training.finetune import FinetuneConfig, choose_warp_references, finetune, render_clip, split_holdout
from training.metrics import (
    RIDGE,
    SAME_PERSON_THRESHOLD,
    IdentityFeatures,
    MetricsError,
    PixelDistances,
    contact_sheet,
    frechet_distance,
    identity_distances,
    sharpness_ratio,
    temporal_difference_error,
    write_png,
)

REPORT_JSON = "evaluation.json"
REPORT_MARKDOWN = "evaluation.md"
VIDEO_FILE = "side_by_side.mp4"
CONTACT_SHEET = "contact_sheet.png"
FEATURE_NETWORK = (
    "dlib face-identity ResNet (dlib_face_recognition_resnet_model_v1, 128-d), standing in for the "
    "paper's ArcFace, which is not available offline"
)
ABLATIONS: tuple[str, ...] = (
    "warp alone",
    "no warp (NMFC only)",
    "full",
    "without D_D",
    "without D_M",
    "without both",
    "without stage-1 initialisation",
)
"""The table's rows: the warp without a network, the paper's G without the warp, then the paper's
ablations in its order."""
_VARIANTS: dict[str, tuple[bool, bool, bool]] = {  # name → (use_dynamics, use_mouth, from the base)
    "no warp (NMFC only)": (True, True, True),
    "full": (True, True, True),
    "without D_D": (False, True, True),
    "without D_M": (True, False, True),
    "without both": (False, False, True),
    "without stage-1 initialisation": (True, True, False),
}
_COLUMNS: tuple[tuple[str, str, str], ...] = (  # field, heading, format
    ("pixel_distance", "pixel distance ↓", "{:.2f}"),
    ("masked_pixel_distance", "masked pixel distance ↓", "{:.2f}"),
    ("mask_iou", "mask IoU ↑", "{:.3f}"),
    ("identity_frechet_distance", "identity FD ↓", "{:.4f}"),
    ("temporal_difference_error", "temporal difference error ↓", "{:.2f}"),
    ("sharpness_ratio", "sharpness ratio ↑", "{:.2f}"),
    ("identity_distance", "identity distance ↓", "{:.3f}"),
    ("same_person_fraction", "same person ↑", "{:.0%}"),
    ("frames", "frames", "{}"),
)


class EvaluationError(HeadcastError):
    """An evaluation cannot run (too few held-out frames, no identity network); the message says what to do."""


@dataclass(frozen=True)
class EvaluationReport:
    """§4's numbers for one generator on one target's held-out frames, and where its files are.

    Distances are in RGB 0–255 units (per-pixel L2); mask_iou in [0, 1]; identity_frechet_distance
    in squared units of the 128-d descriptor (see the module docstring for every definition);
    real_motion / generated_motion: mean per-pixel L2 of consecutive frames' differences.
    """

    target: str
    frames: int
    size_px: int
    pixel_distance: float
    masked_pixel_distance: float
    mask_iou: float
    identity_frechet_distance: float
    temporal_difference_error: float
    real_motion: float
    generated_motion: float
    feature_network: str
    covariance: str
    seconds: float
    video: str
    notes: tuple[str, ...] = ()
    sharpness_ratio: float = float("nan")
    identity_distance: float = float("nan")
    same_person_fraction: float = float("nan")
    face_detected_fraction: float = float("nan")
    contact_sheet: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready plain values."""
        values = asdict(self)
        values["notes"] = list(self.notes)
        return values

    def markdown(self) -> str:
        """Return the report as a markdown section: a metric table and what each number stands on."""
        lines = [
            f"# Self-reenactment evaluation: {self.target}",
            "",
            f"{self.frames} held-out frames at {self.size_px}², generated sequentially from their NMFC "
            "(generated frames fed back, as when serving).",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {heading} | {fmt.format(getattr(self, name))} |" for name, heading, fmt in _COLUMNS]
        lines += [
            f"| real motion (mean ‖y_t − y_t−1‖) | {self.real_motion:.2f} |",
            f"| generated motion (mean ‖ỹ_t − ỹ_t−1‖) | {self.generated_motion:.2f} |",
            "",
            f"- Identity FD feature network: {self.feature_network}.",
            f"- Covariances: {self.covariance}.",
            "- Pixel distances: per-pixel L2 of RGB in 0–255; masked: over the real foreground (mask ≥ 128).",
            "- Masks: the clips' foreground masks (MediaPipe selfie segmentation; the paper used BiSeNet).",
            "- Temporal difference error: mean per-pixel L2 of (ỹ_t − ỹ_t−1) − (y_t − y_t−1), within clips.",
            f"- Identity distance: median over frames of dlib's descriptor to the real frames' mean; same person: "
            f"under {SAME_PERSON_THRESHOLD}; dlib's detector found a face in {self.face_detected_fraction:.0%} "
            "of the generated frames.",
            "- Sharpness ratio: variance of the Laplacian over the real face mask, generated ÷ real, median.",
            f"- Side-by-side video (real | NMFC | warped reference | generated): `{self.video}`; contact sheet "
            f"`{self.contact_sheet}`.",
            f"- Evaluated in {self.seconds:.1f} s.",
        ]
        lines += [f"- Note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def held_out(clips: Sequence[Clip], holdout: int | None) -> list[Clip]:
    """Return the last `holdout` frames of the clips in order as clips (every frame when `holdout` is None)."""
    if holdout is None:
        return list(clips)
    if holdout < 1:
        raise EvaluationError(f"holdout must be at least 1 frame, got {holdout}")
    return split_holdout(clips, holdout, 1)[1]


def evaluate(
    generator: Generator,
    clips: Sequence[Clip],
    out_dir: str | Path,
    holdout: int | None = 100,
    fps: float = 25.0,
    notes: Sequence[str] = (),
    features: IdentityFeatures | None = None,
    references: ReferenceFrames | None = None,
) -> EvaluationReport:
    """Return §4's report for a converted G on the last `holdout` frames of `clips` (all frames when None).

    Writes evaluation.json, evaluation.md, side_by_side.mp4 (real | NMFC | warped reference |
    generated, at `fps`) and contact_sheet.png to `out_dir`. `notes` are copied into the report;
    `features` reuses a loaded identity network; `references` are the target's warp references
    (needed by a G with warp references).
    Raises EvaluationError when fewer than 2 frames are held out or the clips differ in size.
    """
    began = time.perf_counter()
    held = held_out(clips, holdout)
    count = sum(len(clip) for clip in held)
    if count < 2:
        raise EvaluationError(f"{count} held-out frame(s): the evaluation needs at least 2, hold out more frames")
    sizes = {clip.size_px for clip in held}
    if len(sizes) != 1:
        raise EvaluationError(f"held-out clips differ in size ({sorted(sizes)} px): preprocess them at one size")
    size = sizes.pop()
    features = features or IdentityFeatures()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pixels = PixelDistances()
    totals = dict.fromkeys(("flicker", "real", "fake"), 0.0)
    pairs = 0
    real_all: list[npt.NDArray[np.uint8]] = []
    fake_all: list[npt.NDArray[np.uint8]] = []
    mask_all: list[npt.NDArray[np.uint8]] = []
    nmfc_all: list[npt.NDArray[np.uint8]] = []
    warp_all: list[npt.NDArray[np.uint8]] = []
    training = generator.training
    generator.eval()
    try:
        from edge.annotate import VideoWriter

        with VideoWriter(out / VIDEO_FILE, 4 * size, size, fps) as video:
            for clip in held:
                fake, predicted, blend = render_clip(generator, clip, references)
                blend = blend if blend is not None else np.zeros_like(clip.frames)
                real = clip.frames.astype(np.float32)
                pixels.add(fake, real, clip.masks, predicted)
                error, real_motion, fake_motion, n = temporal_difference_error(real, fake)
                totals["flicker"] += error * n
                totals["real"] += real_motion * n
                totals["fake"] += fake_motion * n
                pairs += n
                fake_u8 = np.clip(np.rint(fake), 0, 255).astype(np.uint8)
                real_all.append(clip.frames)
                fake_all.append(fake_u8)
                mask_all.append(clip.masks)
                nmfc_all.append(clip.nmfc)
                warp_all.append(blend)
                for t in range(len(clip)):
                    video.write(np.concatenate([clip.frames[t], clip.nmfc[t], blend[t], fake_u8[t]], axis=1))
    finally:
        generator.train(training)
    if pairs == 0:
        raise EvaluationError("no two consecutive held-out frames in one clip: hold out runs of at least 2 frames")
    real_u8, fake_u8 = np.concatenate(real_all), np.concatenate(fake_all)
    frechet = frechet_distance(features(real_u8), features(fake_u8))
    real_detected, _ = features.describe(real_u8)
    fake_detected, detected = features.describe(fake_u8)
    distances = identity_distances(fake_detected, real_detected)
    try:
        sharp = sharpness_ratio(fake_u8, real_u8, np.concatenate(mask_all))
    except MetricsError:
        sharp = float("nan")
    write_png(out / CONTACT_SHEET, contact_sheet(
        [("real", real_u8), ("NMFC", np.concatenate(nmfc_all)), ("warped reference", np.concatenate(warp_all)),
         ("generated", fake_u8)], rows=4, panel_px=max(size, 64)))  # fmt: skip
    report = EvaluationReport(
        target=held[0].identity,
        frames=count,
        size_px=size,
        pixel_distance=pixels.pixel_distance,
        masked_pixel_distance=pixels.masked_pixel_distance,
        mask_iou=pixels.mask_iou,
        identity_frechet_distance=frechet,
        temporal_difference_error=totals["flicker"] / pairs,
        real_motion=totals["real"] / pairs,
        generated_motion=totals["fake"] / pairs,
        feature_network=FEATURE_NETWORK,
        covariance=(
            f"sample covariances of {count} real and {count} generated frames in 128 dimensions, "
            f"each plus {RIDGE:g}·I before the matrix square root"
            + (" (fewer frames than dimensions: both are singular without it)" if count <= 128 else "")
        ),
        seconds=time.perf_counter() - began,
        video=VIDEO_FILE,
        notes=tuple(notes),
        sharpness_ratio=sharp,
        identity_distance=float(np.median(distances)),
        same_person_fraction=float(np.mean(distances < SAME_PERSON_THRESHOLD)),
        face_detected_fraction=float(np.mean(detected)),
        contact_sheet=CONTACT_SHEET,
    )
    write_atomic(out / REPORT_JSON, json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
    write_atomic(out / REPORT_MARKDOWN, report.markdown())
    return report


def ablation_table(results: Mapping[str, EvaluationReport]) -> str:
    """Return the paper's ablation table as markdown: one row per variant in ABLATIONS order, § 4's metrics as columns.

    Variants not in `results` get a row of dashes; a name that is not one of ABLATIONS raises EvaluationError.
    """
    unknown = sorted(set(results) - set(ABLATIONS))
    if unknown:
        raise EvaluationError(f"unknown ablation(s) {unknown}: use the names in ABLATIONS {list(ABLATIONS)}")
    lines = [
        "| variant | " + " | ".join(heading for _, heading, _ in _COLUMNS) + " |",
        "|---|" + "---|" * len(_COLUMNS),
    ]
    for name in ABLATIONS:
        report = results.get(name)
        cells = ["—"] * len(_COLUMNS)
        if report is not None:
            cells = [fmt.format(getattr(report, field)) for field, _, fmt in _COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablations(
    train_clips: Sequence[Clip],
    held_clips: Sequence[Clip],
    base: Path,
    config: FinetuneConfig,
    out_dir: str | Path,
    steps: int,
    device: str = "cpu",
    no_warp_base: Path | None = None,
) -> dict[str, EvaluationReport]:
    """Return each ABLATIONS variant's report: fine-tuned `steps` steps on `train_clips`, evaluated on all `held_clips`.

    Every variant fine-tunes with `config` (all of `train_clips`: nothing more is held out) in
    `out_dir/<variant>/finetune` (resumed when there) and is evaluated in `out_dir/<variant>`;
    "without stage-1 initialisation" starts from random weights, "no warp (NMFC only)" from
    `no_warp_base` (a stage-1 checkpoint without warp references; the row is left out without
    one), the others from `base`. "warp alone" is the base's G before any fine-tuning step, whose
    heads start at zero only when it is fresh: it is measured on a freshly initialised G. The table
    is written to `out_dir/ablations.md` and the numbers to `out_dir/ablations.json`.
    """
    if steps < 1:
        raise EvaluationError(f"ablations need at least 1 fine-tuning step, got {steps}")
    out = Path(out_dir)
    features = IdentityFeatures()
    results: dict[str, EvaluationReport] = {}
    for name in ABLATIONS:
        if name == "warp alone":
            warp = _fresh_warp_generator(base)
            if warp is None:
                continue
            references: ReferenceFrames = choose_warp_references(train_clips, warp.config.warp_references)
            note = "the reference frames warped along the mesh and blended by their priors: no network"
            results[name] = evaluate(
                warp, held_clips, out / "warp-alone", None, features=features, references=references, notes=(note,)
            )
            continue
        if name == "no warp (NMFC only)" and no_warp_base is None:
            continue
        use_dynamics, use_mouth, from_base = _VARIANTS[name]
        values = config.model_dump()
        values.update(
            steps=steps,
            holdout_frames=0,
            use_dynamics=use_dynamics,
            use_mouth=use_mouth,
            checkpoint_every=min(config.checkpoint_every, steps),
            sample_every=min(config.sample_every, steps),
        )
        variant_dir = out / "".join(c for c in name.replace(" ", "-") if c.isalnum() or c == "-")
        start = (no_warp_base if name == "no warp (NMFC only)" else base) if from_base else None
        tuned = finetune(
            train_clips, start, FinetuneConfig.model_validate(values), variant_dir / "finetune", device=device
        )
        notes = (f"{name}: {steps} fine-tuning steps on {tuned.training_frames} frames", *tuned.notes)
        results[name] = evaluate(tuned.generator, held_clips, variant_dir, None, notes=notes, features=features,
                                 references=tuned.references)  # fmt: skip
    table = ablation_table(results)
    write_atomic(out / "ablations.md", "# Ablations (docs/method.md §4)\n\n" + table)
    summary = {name: report.as_dict() for name, report in results.items()}
    write_atomic(out / "ablations.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return results


def _fresh_warp_generator(base: Path) -> Generator | None:
    """Return a freshly initialised, converted G of the base's model size (its heads at zero: the warp
    alone), or None when that size has no warp references."""
    from training.checkpoint import load_checkpoint
    from training.trainer_steps import PretrainConfig

    config = PretrainConfig.model_validate(load_checkpoint(base)["config"])
    generator_config = config.model_configs()[0].generator
    if not generator_config.warp_references:
        return None
    generator = Generator(generator_config)
    generator.convert_adain_to_instance_norm(torch.zeros(generator_config.identity_dim))
    return generator.eval()
