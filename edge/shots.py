"""Hard-cut (shot boundary) detection, frame by frame, so tracking can restart at each cut."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.config import ShotConfig


@dataclass(frozen=True)
class Shot:
    """Frames first..last (inclusive) between two hard cuts."""

    index: int
    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class ShotDetector:
    """Flags a frame as a cut when its grey thumbnail differs from the previous one far more than usual.

    The difference is the mean absolute grey-level change (0-255) of small thumbnails; a cut needs it
    above an absolute floor and a multiple of the running median of recent differences, so a fast
    pan or a flash in a busy shot is not taken for a cut.
    """

    def __init__(self, config: ShotConfig | None = None) -> None:
        self.config = config or ShotConfig()
        self._previous: npt.NDArray[np.float32] | None = None
        self._recent: deque[float] = deque(maxlen=self.config.history)
        self.last_difference = 0.0

    def is_cut(self, rgb: npt.NDArray[np.uint8]) -> bool:
        """Return True when `rgb` starts a new shot (never for the first frame)."""
        import cv2

        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        thumbnail = cv2.resize(grey, self.config.thumbnail_px, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._previous = self._previous, thumbnail
        if previous is None:
            return False
        difference = float(np.mean(np.abs(thumbnail - previous)))
        self.last_difference = difference
        typical = max(float(np.median(self._recent)) if self._recent else 1.0, 1.0)
        cut = difference >= self.config.min_difference and difference >= self.config.ratio_to_median * typical
        if cut:
            self._recent.clear()  # the new shot's own motion sets the scale from here on
        else:
            self._recent.append(difference)
        return cut


def shots_from_labels(shot_of_frame: list[int]) -> list[Shot]:
    """Return the Shots of a per-frame shot-index list (frames numbered from 0)."""
    shots: list[Shot] = []
    for frame, shot in enumerate(shot_of_frame):
        if shots and shots[-1].index == shot:
            shots[-1] = Shot(shot, shots[-1].first, frame)
        else:
            shots.append(Shot(shot, frame, frame))
    return shots
