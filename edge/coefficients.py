"""From tracked frames to the Coefficients the edge sends: face3d's causal online path, per stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from edge.tracking import TrackedFrame
from face3d.coefficients import Coefficients
from face3d.errors import FitError
from face3d.online import OnlineConfig, OnlineEstimator


def coefficient_stream(
    frames: Iterable[TrackedFrame], config: OnlineConfig | None = None
) -> Iterator[tuple[TrackedFrame, Coefficients]]:
    """Yield (frame, its smoothed Coefficients) for every frame with a face.

    The smoothing restarts at each shot cut and after a frame without a face, so no filter state
    carries a person's pose across a cut. A frame whose landmarks give no valid pose (a degenerate
    detection: FitError) is skipped like a faceless one — a live stream never ends on one bad frame.
    `seq` numbers the sent frames from 0, wrapping at 2**32.
    """
    estimator = OnlineEstimator(config)
    seq = 0
    previous_shot: int | None = None
    for frame in frames:
        if frame.landmarks is None or frame.blendshapes is None:
            estimator.reset()
            continue
        if previous_shot is not None and frame.shot != previous_shot:
            estimator.reset()
        previous_shot = frame.shot
        try:
            coefficients = estimator.update(
                frame.landmarks, frame.blendshapes, frame.image_size, frame.timestamp_ms, seq
            )
        except FitError:
            estimator.reset()
            continue
        yield frame, coefficients
        seq = (seq + 1) % 2**32
