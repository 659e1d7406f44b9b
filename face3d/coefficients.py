"""`Coefficients`: what the edge sends for one frame — expression weights and head pose, nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.errors import Face3dError

MAX_ROTATION_RAD = float(np.pi)


@dataclass(frozen=True)
class Coefficients:
    """One frame of a source's face, in the target-independent form the wire carries.

    seq: frame sequence number, 0 ≤ seq < 2**32 (wraps).
    timestamp_ms: capture time in milliseconds, 0 ≤ timestamp_ms < 2**32 (wraps after ~49 days).
    blendshapes: (52,) float32 in [0, 1], in face3d.BLENDSHAPE_NAMES order.
    rotation: (3,) float32 rotation vector (axis × angle, radians, |angle| ≤ π) of the head in the
        camera frame, canonical-mesh axes (y up, +z out of the face).
    translation: (2,) float32 position of the canonical origin in the image, in image widths from
        the image centre (x right, y down).
    scale: float, scaled-orthographic scale: image widths per canonical centimetre (> 0).
    """

    seq: int
    timestamp_ms: int
    blendshapes: npt.NDArray[np.float32]
    rotation: npt.NDArray[np.float32]
    translation: npt.NDArray[np.float32]
    scale: float

    def __post_init__(self) -> None:
        arrays = {
            "blendshapes": (self.blendshapes, (NUM_BLENDSHAPES,)),
            "rotation": (self.rotation, (3,)),
            "translation": (self.translation, (2,)),
        }
        for name, (value, shape) in arrays.items():
            array = np.asarray(value, dtype=np.float32)
            if array.shape != shape:
                raise Face3dError(f"Coefficients.{name} must have shape {shape}, got {array.shape}")
            if not np.all(np.isfinite(array)):
                raise Face3dError(f"Coefficients.{name} holds NaN or infinity")
            object.__setattr__(self, name, array)
        if not 0 <= self.seq < 2**32 or not 0 <= self.timestamp_ms < 2**32:
            raise Face3dError("Coefficients.seq and timestamp_ms must lie in [0, 2**32)")
        if np.any(self.blendshapes < 0) or np.any(self.blendshapes > 1):
            raise Face3dError("Coefficients.blendshapes must lie in [0, 1]")
        if float(np.linalg.norm(self.rotation)) > MAX_ROTATION_RAD + 1e-5:
            raise Face3dError("Coefficients.rotation must be a rotation vector with angle ≤ π")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise Face3dError(f"Coefficients.scale must be a positive number, got {self.scale}")
        object.__setattr__(self, "scale", float(self.scale))
