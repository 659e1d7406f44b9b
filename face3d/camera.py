"""Scaled-orthographic cameras: landmarks in image widths, weighted Procrustes, projection to pixels.

Units. MediaPipe landmarks are normalised (x, y in [0, 1] of the image width/height, z in image
widths, smaller = closer). We work in *width units* with the canonical mesh's axes: the image
centre at the origin, x right, y up, z toward the camera:

    X = x − 0.5,   Y = (0.5 − y) · H / W,   Z = −z

which is docs/notes.md's pixel conversion (x·W, −y·H, −z·W) divided by W and centred; flipping y and z is a
rotation about x, not a mirror. A camera maps canonical centimetres to width units,
`ℓ = s · R · X_cm + τ` (τ's depth is a nuisance: MediaPipe's z has an arbitrary origin), so
`s` is image widths per centimetre and (τ_x, −τ_y) is the `Coefficients` translation (y down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from face3d.errors import FitError
from face3d.topology import NUM_VERTICES

# A face whose landmarks, aligned as well as a similarity allows, still miss the shape by more than
# this fraction of the shape's own spread is not a face seen by a camera (scrambled, mirrored or
# collapsed points). Real frames of the sample clip sit near 0.05 (0.28 cm over ~5.5 cm spread).
DEGENERATE_RELATIVE_RMS = 0.3
# Below this spread (in the landmarks' own units) the points have collapsed: no pose is defined.
MIN_SPREAD = 1e-6

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Camera:
    """A scaled-orthographic camera for one frame.

    rotation: (3, 3) float64, canonical axes → camera axes (y up, +z toward the camera), det +1.
    scale: image widths per canonical centimetre (> 0).
    translation: (3,) float64 width units, image centre at 0, y up; the z component is a nuisance.
    """

    rotation: FloatArray
    scale: float
    translation: FloatArray

    def project(self, points_cm: npt.ArrayLike) -> FloatArray:
        """Return (N, 3) width-unit positions of canonical-space points (y up, z toward the camera)."""
        points = np.asarray(points_cm, dtype=np.float64)
        return self.scale * points @ self.rotation.T + self.translation

    def to_model(self, points_width: npt.ArrayLike) -> FloatArray:
        """Return (N, 3) canonical centimetres of width-unit points: the inverse of `project`."""
        points = np.asarray(points_width, dtype=np.float64)
        return (points - self.translation) @ self.rotation / self.scale

    def rotation_vector(self) -> FloatArray:
        """Return the (3,) rotation vector (axis × angle, radians) of `rotation`."""
        return np.asarray(Rotation.from_matrix(self.rotation).as_rotvec(), dtype=np.float64)

    def image_translation(self) -> FloatArray:
        """Return the (2,) translation as `Coefficients` carry it: image widths from the centre, y down."""
        return np.array([self.translation[0], -self.translation[1]])


def landmarks_to_width_units(landmarks: npt.ArrayLike, image_size: tuple[int, int]) -> FloatArray:
    """Return the first 468 landmarks as (468, 3) width units (centre origin, y up, z toward camera).

    landmarks: (≥468, 3) MediaPipe-normalised; image_size: (width, height) in pixels.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < NUM_VERTICES or points.shape[1] != 3:
        raise FitError(f"expected (478, 3) or (468, 3) landmarks, got shape {points.shape}")
    width, height = image_size
    if not (width > 0 and height > 0):
        raise FitError(f"image size must be positive, got {image_size}")
    points = points[:NUM_VERTICES]
    out = np.empty_like(points)
    out[:, 0] = points[:, 0] - 0.5
    out[:, 1] = (0.5 - points[:, 1]) * (height / width)
    out[:, 2] = -points[:, 2]
    return out


def project_to_image(
    points_cm: npt.ArrayLike,
    rotation: npt.ArrayLike,
    translation: npt.ArrayLike,
    scale: float,
    image_size: tuple[int, int],
) -> FloatArray:
    """Return (N, 3) pixel positions (x right, y down, z = depth in pixels, smaller = closer).

    rotation: (3,) rotation vector; translation: (2,) image widths from the centre, y down; scale:
    image widths per cm — the pose fields of `Coefficients`. The inverse of the landmark conversion.
    """
    width, height = image_size
    matrix = Rotation.from_rotvec(np.asarray(rotation, dtype=np.float64)).as_matrix()
    shift = np.asarray(translation, dtype=np.float64)
    camera = float(scale) * np.asarray(points_cm, dtype=np.float64) @ matrix.T
    out = np.empty_like(camera)
    out[:, 0] = (0.5 + camera[:, 0] + shift[0]) * width
    out[:, 1] = 0.5 * height + (shift[1] - camera[:, 1]) * width
    out[:, 2] = -camera[:, 2] * width
    return out


def similarity_align(
    source: npt.ArrayLike, target: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> tuple[float, FloatArray, FloatArray]:
    """Return (a, Q, c) minimising Σ w_k ‖a·Q·source_k + c − target_k‖² (weighted Umeyama, det Q = +1),
    for points (N, D) in any dimension D (3 for meshes, 2 for image positions).

    Raises FitError when the points have collapsed (no similarity is defined).
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    src_mean = w @ src
    dst_mean = w @ dst
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = float(w @ np.einsum("ij,ij->i", src_c, src_c))
    if not src_var > MIN_SPREAD**2:
        raise FitError("degenerate pose: the landmarks have collapsed to a point, no pose can be estimated")
    cross = (dst_c * w[:, None]).T @ src_c
    u, sigma, vt = np.linalg.svd(cross)
    sign = np.ones(src.shape[1])
    sign[-1] = 1.0 if np.linalg.det(u @ vt) > 0 else -1.0
    rotation = (u * sign) @ vt
    a = float(sigma @ sign) / src_var
    offset = dst_mean - a * rotation @ src_mean
    return a, rotation, offset


def fit_camera(landmarks_width: npt.ArrayLike, shape_cm: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> Camera:
    """Return the camera that best maps `shape_cm` onto the landmarks, error measured in centimetres.

    The landmarks are aligned onto the shape (not the shape onto the landmarks) so the residual is
    the energy's E_land in canonical cm. Raises FitError for collapsed, scrambled or mirrored points.
    """
    points = np.asarray(landmarks_width, dtype=np.float64)
    shape = np.asarray(shape_cm, dtype=np.float64)
    a, q, c = similarity_align(points, shape, weights)
    if not (np.isfinite(a) and a > 0):
        raise FitError("degenerate pose: the landmarks cannot be aligned onto a face shape")
    aligned = a * points @ q.T + c
    spread = np.sqrt(np.mean(np.sum((shape - shape.mean(axis=0)) ** 2, axis=1)))
    miss = np.sqrt(np.mean(np.sum((aligned - shape) ** 2, axis=1)))
    if miss > DEGENERATE_RELATIVE_RMS * spread:
        raise FitError(
            f"degenerate pose: after the best similarity the landmarks still miss the face by "
            f"{miss / spread:.0%} of its size (scrambled or mirrored points?)"
        )
    return Camera(rotation=q.T.copy(), scale=1.0 / a, translation=-(q.T @ c) / a)
