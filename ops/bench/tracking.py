"""Face-tracking speed on one core: FaceLandmarker per frame, segmentation, identity descriptor.

    python ops/bench/tracking.py           # full: the whole sample clip, writes results + a RESULTS.md row
    python ops/bench/tracking.py --quick   # smoke: 40 frames, JSON only

The process is pinned to one CPU core (MediaPipe's worker threads included), so the numbers are
per-core throughput. Frame 0 (black) and the first tracked frame (graph warm-up) are excluded.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _record import record

from base import assets
from edge import FaceTracker, VideoFile
from edge.identity import FaceDescriptor
from edge.segmentation import ForegroundSegmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 frames, no markdown row")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for name in ("face_landmarker", "selfie_segmentation", "face_descriptor", "face_aligner"):
        assets.ensure(name)
    limit = 40 if args.quick else None
    with VideoFile(assets.resolve("sample_clip")) as video:
        frames = [f for f in video if limit is None or f.index < limit]
    landmarker_ms, segmentation_ms, descriptor_ms, found = [], [], [], 0
    with FaceTracker() as tracker, ForegroundSegmenter() as segmenter:
        describer = FaceDescriptor()
        for frame in frames:
            start = time.perf_counter()
            tracked = tracker.track(frame.rgb, frame.timestamp_ms, frame.index)
            landmarker_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            segmenter.mask(frame.rgb)
            segmentation_ms.append((time.perf_counter() - start) * 1000)
            if tracked.face_found:
                found += 1
                if frame.index % 10 == 0:
                    start = time.perf_counter()
                    describer.describe(frame.rgb, tracked)
                    descriptor_ms.append((time.perf_counter() - start) * 1000)
    steady = landmarker_ms[2:]
    median = float(np.median(steady))
    results = {
        "frames": len(frames),
        "face_frames": found,
        "cores": 1,
        "landmarker_ms_median": round(median, 2),
        "landmarker_ms_p95": round(float(np.percentile(steady, 95)), 2),
        "landmarker_fps_median": round(1000 / median, 1),
        "segmentation_ms_median": round(float(np.median(segmentation_ms[2:])), 2),
        "descriptor_ms_median": round(float(np.median(descriptor_ms)), 1),
        "frame_size": [frames[0].rgb.shape[1], frames[0].rgb.shape[0]],
    }
    summary = (
        f"FaceLandmarker {results['landmarker_ms_median']} ms/frame median "
        f"({results['landmarker_fps_median']} fps, 1 core, 720×528); segmentation "
        f"{results['segmentation_ms_median']} ms; identity descriptor {results['descriptor_ms_median']} ms"
    )
    path = record("tracking", results, summary, args.quick)
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
