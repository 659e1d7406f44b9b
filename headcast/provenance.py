"""`headcast verify`: read the provenance mark of a video, one second at a time, and say whose avatar it shows.

Every frame the Serve app composites carries a mark naming its target and its session
(inference/watermark.py). A recording, a re-encoded copy or a screen capture of the avatar still
carries it. A second of video is folded into one reading: a window either names a mark or finds
none. The verdict is the mark most windows name; windows naming another mark are reported too (a
video cut together from two sessions).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge.capture import VideoFile
from inference import watermark
from inference.watermark import Mark, Reading


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a video's mark says.

    mark: the mark most windows name, or None when no window names one ("no mark").
    windows: how many one-second windows were read; marked: how many named `mark`.
    others: other marks some windows named, with their counts.
    names: the known target ids by their tags, so a mark's target can be named (`target_of`).
    confidence: the median confidence of the windows that named `mark` (0 when none did).
    pilot_z: the median pilot strength over all windows (about 4 on unmarked video; a mark reads from 7).
    frames: the frames read; error: why decoding stopped early, if it did.
    """

    mark: Mark | None
    windows: int
    marked: int
    others: dict[Mark, int]
    confidence: float
    pilot_z: float
    frames: int
    error: str | None
    names: dict[int, str]

    @property
    def target(self) -> str | None:
        """Return the target id the verdict's mark names, when it is one of the known targets."""
        return None if self.mark is None else self.target_of(self.mark)

    def target_of(self, mark: Mark) -> str | None:
        """Return the known target id whose tag `mark` holds, or None."""
        return self.names.get(mark.target_tag)


def verify(path: Path, known_targets: Iterable[str] = (), window_s: float = 1.0) -> Verdict:
    """Read the mark of the video at `path`, `window_s` seconds at a time; raises TrackingError when it
    is not a readable video."""
    with VideoFile(path) as video:
        window = max(1, round(video.fps * window_s))
        readings = list(watermark.read_windows((frame.rgb for frame in video), window))
        error = video.error
    return verdict(readings, known_targets, error)


def verdict(readings: list[Reading], known_targets: Iterable[str] = (), error: str | None = None) -> Verdict:
    """Return the verdict of a video's window readings."""
    counts = Counter(reading.mark for reading in readings if reading.mark is not None)
    frames = sum(reading.frames for reading in readings)
    pilot_z = float(np.median([reading.pilot_z for reading in readings])) if readings else 0.0
    names = {watermark.target_tag(target): target for target in known_targets}
    if not counts:
        return Verdict(None, len(readings), 0, {}, 0.0, pilot_z, frames, error, names)
    mark, marked = counts.most_common(1)[0]
    confidence = float(np.median([reading.confidence for reading in readings if reading.mark == mark]))
    others = {other: count for other, count in counts.items() if other != mark}
    return Verdict(mark, len(readings), marked, others, confidence, pilot_z, frames, error, names)
