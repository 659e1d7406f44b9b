"""Enrolment end to end on the sample clip's woman, and fine-tuning time against recording length.

    python ops/bench/enroll.py           # full: 200-step synthetic base, the profile's fine-tuning steps
    python ops/bench/enroll.py --quick   # smoke: 20-step base, 4 fine-tuning steps, JSON only

1. A stage-1 base: `tiny-ci` pretrained in this process on 4 synthetic people (or `--base CKPT`).
2. The woman of the sample clip (person 0) enrolled from the whole clip with the `tiny-ci` enrolment
   profile, holding out her last 46 frames — her second shot (frames 154–199), a harder test than
   the paper's same-shot split — and evaluated on them (training.evaluate: pixel distances, mask
   IoU, identity Fréchet distance on dlib features, temporal-difference error).
3. Fine-tuning time for 50 and 250 frames: synthetic recordings of those lengths, same steps.
Numbers are for the tiny-ci networks at 64² on this CPU; the paper's 3–30 minutes are base@256 on a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _record import record

from face3d import assets
from inference.registry import TargetRegistry, target_generator
from training.clips import synthetic_corpus
from training.enroll import enroll, enroll_clips, enrolment_clips, load_enroll_config
from training.evaluate import evaluate
from training.finetune import split_holdout
from training.pretrain import pretrain
from training.trainer_steps import load_pretrain_config

HER_SECOND_SHOT = 46  # frames 154-199


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 20-step base, 4 fine-tuning steps, no markdown row")
    parser.add_argument("--base", type=Path, default=None, help="a stage-1 checkpoint instead of pretraining one")
    args = parser.parse_args()
    assets.ensure_all(["face_landmarker", "face_descriptor", "face_aligner", "selfie_segmentation"])
    steps = 4 if args.quick else None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="headcast-bench-enroll-") as tmp:
        work = Path(tmp)
        base = args.base
        if base is None:
            base_steps = 20 if args.quick else 200
            started = time.perf_counter()
            config = load_pretrain_config("tiny-ci", None, steps=base_steps, holdout_frames=0)
            run = pretrain(config, synthetic_corpus(4, 48, 64, 100), work / "base", backend="local")
            base = run.checkpoint
            results["base"] = {"steps": base_steps, "people": 4, "seconds": round(time.perf_counter() - started, 1)}
        overrides: dict[str, Any] = {"finetune": {"holdout_frames": HER_SECOND_SHOT}}
        if steps is not None:
            overrides["finetune"]["steps"] = steps
        enrol_config = load_enroll_config("tiny-ci", None, **overrides)
        registry = str(work / "registry")
        started = time.perf_counter()
        woman = enroll(assets.resolve("sample_clip"), "woman", registry, "bench", "the sample clip's woman", base,
                       enrol_config, work / "enrol-woman", person=0)  # fmt: skip
        enrol_s = time.perf_counter() - started
        clips = enrolment_clips(work / "enrol-woman")
        _, held = split_holdout(clips, HER_SECOND_SHOT, 1)
        generator = target_generator(TargetRegistry(registry).load("woman"))
        report_dir = (
            Path(__file__).resolve().parent / "results" / ("enroll-woman-quick" if args.quick else "enroll-woman")
        )
        report = evaluate(generator, held, report_dir,
                          holdout=None, fps=23.976, notes=["the woman's second shot, never trained on"])  # fmt: skip
        results["woman"] = {
            "frames_trained": sum(len(c) for c in clips) - HER_SECOND_SHOT,
            "frames_held_out": report.frames,
            "fine_tuning_steps": woman.finetune.total_steps,
            "enrolment_seconds": round(enrol_s, 1),
            "evaluation": report.as_dict(),
        }
        for frames in (50, 250):
            clip = synthetic_corpus(1, frames + 10, 64, 500 + frames)[0]
            started = time.perf_counter()
            enroll_clips([clip], f"synthetic-{frames}", registry, "bench", "synthetic", woman_model(work),
                         base, enrol_config, work / f"enrol-{frames}")  # fmt: skip
            results[f"finetune_{frames}_frames_seconds"] = round(time.perf_counter() - started, 1)
    ev = results["woman"]["evaluation"]
    summary = (f"tiny-ci@64², woman: trained on {results['woman']['frames_trained']} frames, held out her second "
               f"shot ({ev['frames']}): pixel {ev['pixel_distance']:.1f}, masked {ev['masked_pixel_distance']:.1f}, "
               f"IoU {ev['mask_iou']:.3f}, identity FD {ev['identity_frechet_distance']:.3f}; enrolment "
               f"{results['woman']['enrolment_seconds']} s; fine-tuning {results['finetune_50_frames_seconds']} s "
               f"(50 frames) / {results['finetune_250_frames_seconds']} s (250 frames)")  # fmt: skip
    path = record("enroll", results, summary, args.quick)
    print(summary)
    print(f"wrote {path}")


def woman_model(work: Path) -> Any:
    """Return the woman's fitted PersonModel from her enrolment folder (the synthetic runs reuse it)."""
    from face3d.person import PersonModel
    from training.enroll import PERSON_FILE, PREPROCESSED_DIR

    return PersonModel.load(work / "enrol-woman" / PREPROCESSED_DIR / PERSON_FILE)


if __name__ == "__main__":
    main()
