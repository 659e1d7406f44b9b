"""Benchmark: offline person fitting (frames/s) and the online path (ms/frame), plus held-out accuracy.

Offline: a synthetic 300-frame clip (face3d.synthetic_tracks: a random person, 12 active
blendshapes, landmark noise 0.05 cm, score noise 0.05), fitted with the default FitConfig; the
synthetic clip keeps the benchmark free of MediaPipe. Online: OnlineEstimator over the same frames,
median ms/frame. With --tracks DIR (a `headcast track` output of the sample clip) it also prints the
woman's held-out errors: rigid-only, person model with the tracker's scores, with refitted weights.

    python ops/bench/fitting.py [--quick] [--tracks DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from face3d.fit import FitConfig, fit_person, fit_person_data, fit_rigid, prepare_frames, refit_frames
from face3d.online import OnlineEstimator
from face3d.synthetic_tracks import synthetic_sequence
from face3d.topology import load_canonical_mesh


def offline(frames: int) -> dict[str, Any]:
    """Return fitting speed on a synthetic clip of `frames` frames."""
    mesh = load_canonical_mesh()
    sequence = synthetic_sequence(frames=frames, seed=0, mesh=mesh)
    start = time.perf_counter()
    result = fit_person(sequence.frames, FitConfig(), mesh=mesh)
    seconds = time.perf_counter() - start
    return {
        "clip": f"synthetic, {frames} frames",
        "fit_s": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 1),
        "residual_cm_mean": round(float(result.report.residual_cm.mean()), 4),
    }


def online(frames: int) -> dict[str, Any]:
    """Return the online estimator's median and 95th-percentile ms/frame."""
    sequence = synthetic_sequence(frames=frames, seed=1)
    estimator = OnlineEstimator()
    times = []
    for i, frame in enumerate(sequence.frames):
        assert frame.landmarks is not None and frame.blendshapes is not None
        start = time.perf_counter()
        estimator.update(frame.landmarks, frame.blendshapes, frame.image_size, frame.timestamp_ms, i)
        times.append(time.perf_counter() - start)
    return {
        "ms_per_frame_median": round(1000 * float(np.median(times)), 4),
        "ms_per_frame_p95": round(1000 * float(np.percentile(times, 95)), 4),
    }


def held_out(tracks_dir: str) -> dict[str, Any]:
    """Return the woman's held-out errors (cm) on the sample clip: fit her first 80 %, test the rest."""
    from edge import load_tracks

    data = prepare_frames(load_tracks(tracks_dir).frames_of(0))
    split = round(0.8 * len(data))
    train, test = data.subset(slice(0, split)), data.subset(slice(split, len(data)))
    model = fit_person_data(train).model
    return {
        "train_frames": split,
        "test_frames": len(data) - split,
        "rigid_cm": round(float(refit_frames(fit_rigid(train), test, refine_weights=False).residual_cm.mean()), 4),
        "model_scores_cm": round(float(refit_frames(model, test, refine_weights=False).residual_cm.mean()), 4),
        "model_refit_cm": round(float(refit_frames(model, test).residual_cm.mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 60-frame clip, for CI smoke")
    parser.add_argument("--tracks", help="tracks folder of the sample clip: also measure held-out accuracy")
    args = parser.parse_args()
    frames = 60 if args.quick else 300
    results: dict[str, Any] = {"offline": offline(frames), "online": online(frames)}
    if args.tracks:
        results["held_out_woman"] = held_out(args.tracks)
    summary = (
        f"offline {results['offline']['frames_per_s']} frames/s ({results['offline']['clip']}); "
        f"online {results['online']['ms_per_frame_median']} ms/frame median"
    )
    if "held_out_woman" in results:
        h = results["held_out_woman"]
        summary += f"; held-out cm rigid {h['rigid_cm']} / scores {h['model_scores_cm']} / refit {h['model_refit_cm']}"
    print(summary)
    print(record("fitting", results, summary, args.quick))


if __name__ == "__main__":
    main()
