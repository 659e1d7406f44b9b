"""Enrolment end to end on the sample clip's woman: the warp, the generator, the paper's ablations, cross-reenactment.

    python ops/bench/enrol.py           # full: 200-step bases, the `cpu` profile's fine-tuning steps
    python ops/bench/enrol.py --quick   # smoke: 10-step bases, 4 fine-tuning steps, JSON only

1. Two stage-1 bases at the `cpu` profile (128²) pretrained in this process on 4 synthetic people:
   the warp generator (configs/models.yaml: 4 warp references) and the NMFC-only generator of the
   paper (warp_references 0), for the "no warp" row.
2. The woman of the sample clip (person 0) enrolled from the whole clip, holding out her last 46
   frames — her second shot (frames 154–199), a harder test than the paper's same-shot split.
3. On that held-out shot (training.evaluate): the warp alone (no network), the NMFC-only generator,
   warp + generator, and the paper's Table 1 ablations (without D_D, D_M, both, stage-1 init):
   pixel distances, mask IoU, identity FD and distance (dlib), sharpness ratio, temporal error; a
   contact sheet (real | NMFC | warped reference | generated) per row.
4. Cross-reenactment: the man's coefficients drive her bundle through the serving pipeline
   (inference.avatar, no network transport): dlib's identity distance of every frame to her and to
   him, and a contact sheet (source | NMFC | warped reference | avatar).
5. Fine-tuning time for 50 and 250 frames: synthetic recordings of those lengths, same steps.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from _record import RESULTS_DIR, record

from base import assets
from edge.capture import VideoFile
from edge.pipeline import track_video
from face3d.retarget import SourcePoseTracker
from headcast.demo import PANEL_PX, SideBySide, avatar_identity, retimed, write_contact_sheet
from inference.avatar import AvatarTarget
from inference.protocol import DriveFrame, RenderRequest
from inference.registry import TargetRegistry, target_generator
from inference.warp import prior_blend
from training.clips import synthetic_corpus
from training.enrol import EnrolConfig, enrol, enrol_clips, enrolment_clips
from training.evaluate import ablation_table, run_ablations
from training.finetune import split_holdout
from training.preprocess import PreprocessConfig, crop_boxes, crop_square
from training.pretrain import pretrain
from training.trainer_steps import PretrainConfig

HER_SECOND_SHOT = 46  # frames 154-199
PROFILE = "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10-step bases, 4 fine-tuning steps, no markdown row")
    args = parser.parse_args()
    assets.ensure_all(["face_landmarker", "face_descriptor", "face_aligner", "selfie_segmentation", "sample_clip"])
    steps = 4 if args.quick else None
    base_steps = 10 if args.quick else 200
    results: dict[str, Any] = {"profile": PROFILE}
    out = RESULTS_DIR / ("enrol-woman-quick" if args.quick else "enrol-woman")
    clip_path = assets.resolve("sample_clip")
    with tempfile.TemporaryDirectory(prefix="headcast-bench-enrol-") as tmp:
        work = Path(tmp)
        bases = {}
        for name, generator in (("warp", {}), ("no warp", {"warp_references": 0})):
            started = time.perf_counter()
            config = PretrainConfig.load(PROFILE, steps=base_steps, holdout_frames=0, generator=generator)
            size = config.model_configs()[0].size_px
            run = pretrain(config, synthetic_corpus(4, 48, size, 100), work / f"base-{name}", backend="local")
            bases[name] = run.checkpoint
            results[f"base ({name})"] = {"steps": base_steps, "people": 4, "size_px": size,
                                         "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        overrides: dict[str, Any] = {"finetune": {"holdout_frames": HER_SECOND_SHOT}}
        if steps is not None:
            overrides["finetune"]["steps"] = steps
        enrol_config = EnrolConfig.load(PROFILE, **overrides)
        registry = str(work / "registry")
        started = time.perf_counter()
        woman = enrol(clip_path, "woman", registry, "bench", "the sample clip's woman", bases["warp"],
                       enrol_config, work / "enrol-woman", person=0)  # fmt: skip
        results["woman"] = {"enrolment_seconds": round(time.perf_counter() - started, 1),
                            "fine_tuning_steps": woman.finetune.total_steps,
                            "references": [{"kind": k, "frame": i} for k, i in zip(
                                woman.finetune.references.kinds, woman.finetune.references.frame_indices,
                                strict=True)] if woman.finetune.references is not None else None,
                            "notes": list(woman.notes)}  # fmt: skip
        clips = enrolment_clips(work / "enrol-woman")
        train, held = split_holdout(clips, HER_SECOND_SHOT, 1)
        results["woman"]["frames_trained"] = sum(len(c) for c in train)
        # The ablations' fine-tuning folders (git-ignored) belong to the bases of the run that wrote them. These
        # bases are new, so an earlier run's checkpoints are replaced, not resumed (which fine-tuning refuses).
        for earlier in (out / "ablations").glob("*/finetune"):
            shutil.rmtree(earlier)
        reports = run_ablations(train, held, bases["warp"], enrol_config.finetune, out / "ablations",
                                enrol_config.finetune.steps, no_warp_base=bases["no warp"])  # fmt: skip
        results["ablations"] = {name: report.as_dict() for name, report in reports.items()}
        results["ablation_table"] = ablation_table(reports)
        results["cross_reenactment"] = cross_reenactment(clip_path, registry, out)
        person = TargetRegistry(registry).load("woman").person  # the synthetic runs reuse her fitted model
        for frames in (50, 250):
            clip = synthetic_corpus(1, frames + 10, clips[0].size_px, 500 + frames)[0]
            started = time.perf_counter()
            enrol_clips([clip], f"synthetic-{frames}", registry, "bench", "synthetic", person, bases["warp"],
                         enrol_config, work / f"enrol-{frames}")  # fmt: skip
            results[f"finetune_{frames}_frames_seconds"] = round(time.perf_counter() - started, 1)
    full, alone = reports["full"], reports["warp alone"]
    cross = results["cross_reenactment"]
    summary = (f"{PROFILE}@128², woman: trained on {results['woman']['frames_trained']} frames, held out her second "
               f"shot ({full.frames}): warp + G masked pixel {full.masked_pixel_distance:.1f} (warp alone "
               f"{alone.masked_pixel_distance:.1f}"
               + (f", NMFC-only G {reports['no warp (NMFC only)'].masked_pixel_distance:.1f}"
                  if "no warp (NMFC only)" in reports else "")
               + f"), sharpness ratio {full.sharpness_ratio:.2f}, identity distance {full.identity_distance:.3f} "
               f"(same person in {full.same_person_fraction:.0%}); cross-reenactment nearer her than the man in "
               f"{cross['nearer_target_fraction']:.0%} of frames; "
               f"enrolment {results['woman']['enrolment_seconds']} s")  # fmt: skip
    path = record("enrol", results, summary, args.quick)
    print(results["ablation_table"])
    print(summary)
    print(f"wrote {path}")


@torch.inference_mode()
def cross_reenactment(clip: Path, registry: str, out: Path) -> dict[str, Any]:
    """Return whose face the woman's avatar shows when the clip's man drives it (every frame of his
    stream rendered in order, the avatar's faces fed back as when serving), and write its contact sheet."""
    tracks = track_video(clip)
    target, source = 0, 1
    stream = retimed(tracks, source, tracks.source.fps)
    bundle = TargetRegistry(registry).load("woman")
    generator = target_generator(bundle)
    config = generator.config
    size = int(bundle.metadata.training["model_config"]["size_px"])

    def runtime(nmfc: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = generator(nmfc, previous)
        return output.frame, output.mask

    avatar = AvatarTarget(bundle, runtime, size_px=size, nmfc_frames=config.nmfc_frames,
                          previous_frames=config.previous_frames, output_size=PANEL_PX, device=torch.device("cpu"),
                          warp_references=config.warp_references)  # fmt: skip
    tracker = SourcePoseTracker()
    window: list[DriveFrame] = []
    faces: list[np.ndarray] = []
    rendered = SideBySide(0)
    sources = _source_crops(clip, tracks, source)
    for index, coefficients in stream:
        window = [*window, DriveFrame(coefficients, tracker.update(coefficients))][-config.nmfc_frames :]
        previous = np.stack(faces[-config.previous_frames :]) if faces else None
        request = RenderRequest("woman", "bench", tuple(window), previous, want_nmfc=True)
        result = avatar.render([request])[0]
        faces.append(result.face)
        mesh = avatar.crop_pixels(window[-1])[None]
        blend = prior_blend(avatar.warp_inputs(mesh))[0]
        warped = ((blend.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        panels = tuple(np.asarray(cv2.resize(np.ascontiguousarray(p), (PANEL_PX, PANEL_PX)), dtype=np.uint8)
                       for p in (sources[index], result.nmfc, warped, result.frame))  # fmt: skip
        rendered.panels.append(panels)
        rendered.frames += 1
    write_contact_sheet(rendered, out / "cross_reenactment.png", rows=6)
    identity = avatar_identity(clip, tracks, target, source, rendered)
    assert identity is not None
    return {**identity, "frames": rendered.frames, "contact_sheet": "cross_reenactment.png"}


def _source_crops(clip: Path, tracks: Any, person: int) -> dict[int, np.ndarray]:
    """Return the person's face crops (RGB, PANEL_PX square, framed as enrolment frames them) by frame index."""
    framing = PreprocessConfig.load()
    frames = tracks.frames_of(person)
    landmarks = np.stack([f.landmarks_px()[:468] for f in frames])
    boxes = dict(zip((f.index for f in frames), crop_boxes(landmarks, framing.crop_margin, framing.smooth_frames),
                     strict=True))  # fmt: skip
    crops = {}
    with VideoFile(clip) as video:
        for frame in video:
            if frame.index in boxes:
                crops[frame.index] = crop_square(frame.rgb, boxes[frame.index], PANEL_PX)
    return crops


if __name__ == "__main__":
    main()
