"""Tracking a whole recording: cuts restart the tracker, faces are described, shots grouped into people."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.capture import Camera, Frame, VideoFile, open_source
from edge.config import EdgeConfig
from edge.identity import FaceDescriptor, face_size_px, group_shots
from edge.segmentation import ForegroundSegmenter
from edge.shots import ShotDetector, shots_from_labels
from edge.tracking import FaceTracker, TrackedFrame
from edge.tracks import Person, Tracks

OnFrame = Callable[[Frame, TrackedFrame], None]


def track_video(
    source: str | Path | VideoFile | Camera,
    config: EdgeConfig | None = None,
    *,
    identities: bool = True,
    masks: bool = False,
    on_frame: OnFrame | None = None,
) -> Tracks:
    """Return the Tracks of a recording (a path, "camera[:N]", or an open source).

    Every hard cut restarts the tracker. With `identities`, a few frames of each shot are described
    with the face-identity network and shots are grouped into people; every face frame then carries
    its person's id. With `masks`, foreground masks are computed too. `on_frame` sees each frame as
    it is tracked (progress, live annotation). Ctrl-C stops early and keeps what was tracked.
    """
    config = config or EdgeConfig.load()
    opened = open_source(str(source)) if isinstance(source, str | Path) else source
    detector = ShotDetector(config.shots)
    describer = FaceDescriptor() if identities else None
    segmenter = ForegroundSegmenter() if masks else None
    frames: list[TrackedFrame] = []
    mask_list: list[npt.NDArray[np.uint8]] = []
    descriptors: dict[int, list[npt.NDArray[np.float32]]] = {}
    seen_in_shot: dict[int, int] = {}
    tracking_ms: list[float] = []
    warnings: list[str] = []
    shot = 0
    try:
        with FaceTracker(config.tracker) as tracker:
            for frame in opened:
                if detector.is_cut(frame.rgb):
                    shot += 1
                    tracker.restart()
                start = time.perf_counter()
                tracked = tracker.track(frame.rgb, frame.timestamp_ms, frame.index, shot)
                tracking_ms.append((time.perf_counter() - start) * 1000)
                frames.append(tracked)
                if describer is not None and tracked.face_found:
                    seen = seen_in_shot.get(shot, 0)
                    seen_in_shot[shot] = seen + 1
                    samples = descriptors.setdefault(shot, [])
                    if (
                        seen % config.identity.sample_every == 0
                        and len(samples) < config.identity.max_samples_per_shot
                        and face_size_px(tracked) >= config.identity.min_face_px
                    ):
                        samples.append(describer.describe(frame.rgb, tracked))
                if segmenter is not None:
                    mask_list.append(np.round(segmenter.mask(frame.rgb) * 255).astype(np.uint8))
                if on_frame is not None:
                    on_frame(frame, tracked)
    except KeyboardInterrupt:
        warnings.append(f"interrupted after {len(frames)} frames; the tracks hold those frames only")
    finally:
        if segmenter is not None:
            segmenter.close()
        if isinstance(source, str | Path):
            opened.close()
    if opened.error:
        warnings.append(opened.error)
    if frames and not any(f.face_found for f in frames):
        warnings.append("no face was found in any frame: record the face frontally, well lit, filling a good part")
    people: list[Person] = []
    if describer is not None:
        person_of_shot = group_shots(
            {s: np.stack(d) for s, d in descriptors.items() if d}, config.identity.max_distance
        )
        frames = [replace(f, identity=person_of_shot.get(f.shot, -1)) if f.face_found else f for f in frames]
        for person in sorted(set(person_of_shot.values())):
            mine = [f for f in frames if f.identity == person]
            people.append(Person(person, len(mine), tuple(sorted({f.shot for f in mine}))))
        undescribed = sorted({f.shot for f in frames if f.face_found and f.shot not in person_of_shot})
        if undescribed:
            warnings.append(f"faces in shots {undescribed} were too small to identify (person -1)")
    return Tracks(
        source=opened.info,
        frames=frames,
        shots=shots_from_labels([f.shot for f in frames]),
        people=people,
        warnings=warnings,
        masks=np.stack(mask_list) if mask_list else None,
        tracking_ms=tracking_ms,
    )
