"""Who is who in a recording: dlib's ResNet face descriptor, averaged per shot, grouped by distance.

MediaPipe's geometry alone separates different people only by a thin margin; the descriptor is a
network trained to tell identities apart (128-d, Euclidean distances; weights CC0 from the
`face-recognition-models` package). Faces are aligned with dlib's 5-point shape predictor inside
the box that MediaPipe's landmarks span.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from base import assets
from edge.errors import TrackingError
from edge.tracking import TrackedFrame

DESCRIPTOR_SIZE = 128


class FaceDescriptor:
    """128-d identity descriptors of tracked faces."""

    def __init__(self, descriptor_path: str | Path | None = None, aligner_path: str | Path | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise TrackingError(
                "grouping people needs dlib: `pip install 'headcast[identity]'` (dlib-bin wheels, no compiler "
                "needed), or pass --no-identities"
            ) from None
        self._dlib: Any = dlib
        self._aligner = dlib.shape_predictor(str(assets.resolve("face_aligner", aligner_path)))
        self._network = dlib.face_recognition_model_v1(str(assets.resolve("face_descriptor", descriptor_path)))

    def describe(self, rgb: npt.NDArray[np.uint8], frame: TrackedFrame) -> npt.NDArray[np.float32]:
        """Return the (128,) float32 descriptor of the face tracked in `frame` of image `rgb`."""
        points = frame.landmarks_px()
        left, top = np.floor(points.min(axis=0)).astype(int)
        right, bottom = np.ceil(points.max(axis=0)).astype(int)
        box = self._dlib.rectangle(int(left), int(top), int(right), int(bottom))
        shape = self._aligner(np.ascontiguousarray(rgb), box)
        return np.asarray(self._network.compute_face_descriptor(np.ascontiguousarray(rgb), shape), dtype=np.float32)


def face_size_px(frame: TrackedFrame) -> float:
    """Return the side of the square box that the frame's landmarks span, in pixels (0 without a face)."""
    if not frame.face_found:
        return 0.0
    points = frame.landmarks_px()
    return float(np.max(points.max(axis=0) - points.min(axis=0)))


def group_shots(descriptors: dict[int, npt.NDArray[np.float32]], max_distance: float) -> dict[int, int]:
    """Return shot → person id, merging shots whose mean descriptors are within `max_distance`.

    `descriptors` maps a shot index to its (k, 128) descriptors. Average-linkage clustering of the
    shot means; people are numbered 0, 1, … in order of first appearance.
    """
    shots = sorted(s for s, d in descriptors.items() if len(d))
    if not shots:
        return {}
    if len(shots) == 1:
        return {shots[0]: 0}
    from scipy.cluster.hierarchy import fcluster, linkage

    means = np.stack([descriptors[s].mean(axis=0) for s in shots]).astype(np.float64)
    labels = fcluster(linkage(means, method="average", metric="euclidean"), t=max_distance, criterion="distance")
    renumber: dict[int, int] = {}
    for label in labels:
        renumber.setdefault(int(label), len(renumber))
    return {shot: renumber[int(label)] for shot, label in zip(shots, labels, strict=True)}
