"""Head pose from MediaPipe's facial transformation matrix (canonical centimetres → camera space)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

# MediaPipe's face geometry pipeline assumes a perspective camera with this vertical field of view;
# projecting the canonical mesh through the matrix with it lands on the landmarks.
VERTICAL_FOV_DEG = 63.0


def yaw_pitch_roll_deg(matrix: npt.ArrayLike) -> tuple[float, float, float]:
    """Return (yaw, pitch, roll) in degrees; yaw > 0: the face turned toward the image's right."""
    rotation = np.asarray(matrix, dtype=np.float64)[:3, :3]
    forward = rotation @ np.array([0.0, 0.0, 1.0])
    up = rotation @ np.array([0.0, 1.0, 0.0])
    yaw = math.degrees(math.atan2(forward[0], forward[2]))
    pitch = math.degrees(math.asin(float(np.clip(forward[1], -1.0, 1.0))))
    roll = math.degrees(math.atan2(-up[0], up[1]))
    return yaw, pitch, roll


def project_points(
    matrix: npt.ArrayLike,
    points_cm: npt.ArrayLike,
    width_px: int,
    height_px: int,
    vertical_fov_deg: float = VERTICAL_FOV_DEG,
) -> npt.NDArray[np.float64]:
    """Return (N, 2) pixel coordinates of canonical-space points seen through the pose `matrix`."""
    points = np.asarray(points_cm, dtype=np.float64).reshape(-1, 3)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    camera = homogeneous @ np.asarray(matrix, dtype=np.float64).T
    focal = 0.5 * height_px / math.tan(math.radians(vertical_fov_deg) / 2)
    depth = np.maximum(-camera[:, 2], 1e-6)  # the camera looks down -z
    u = 0.5 * width_px + focal * camera[:, 0] / depth
    v = 0.5 * height_px - focal * camera[:, 1] / depth
    return np.stack([u, v], axis=1)
