"""The paper's §4 measures of generated frames, in one module (docs/method.md §4).

Every function takes RGB frames (N, S, S, 3) in 0–255, as clips hold them, and returns plain numbers:

- pixel distances (`PixelDistances`): the per-pixel L2 of RGB between generated and real frames,
  averaged per frame then over frames; the same over the real foreground only (mask ≥ 128, every
  foreground pixel weighted alike); and the IoU of the predicted mask (> 0.5) with the real one;
- temporal difference error: the per-pixel L2 of (ỹ_t − ỹ_{t−1}) − (y_t − y_{t−1}), which is 0 when
  the generated video moves exactly as the real one, with each video's own motion beside it;
- identity Fréchet distance: between Gaussians fitted to real and generated identity features;

- sharpness: the variance of the Laplacian (3×3 aperture, on grey, float64) over the face region
  (mask ≥ 128) or the whole crop. It falls as a frame gets blurrier; `sharpness_ratio` divides a
  generated frame's by its real frame's (both over the real frame's mask), so 1 is as sharp as the
  recording and an over-smoothed generator scores below 1;
- identity: dlib's 128-d face-identity descriptors (the ResNet of `base.assets` "face_descriptor",
  aligned by its 5-point shape predictor "face_aligner"). Faces are aligned inside the box of dlib's
  HOG face detector (upsampled once, so that the ~70 px face of a 128² crop is found) or, when no
  face is detected or detection is off, inside the whole crop. Distances are Euclidean; dlib's
  network was trained so that two faces of one person lie within SAME_PERSON_THRESHOLD (0.6);
- contact sheets: a few evenly spaced frames of several videos side by side under column titles,
  written as PNG atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from base import assets
from base.errors import HeadcastError
from base.files import write_atomic

SAME_PERSON_THRESHOLD = 0.6
"""dlib's operating point: descriptors of one person lie within this Euclidean distance (99.38 % on LFW)."""
DESCRIPTOR_SIZE = 128
MASK_THRESHOLD = 128
"""Mask values (0–255) at or above this count as face."""
DETECTOR_UPSAMPLE = 1
"""dlib's HOG detector finds faces of about 80 px and up; one 2× upsampling reaches the ~70 px face of a 128² crop."""
HEADER_PX = 24
"""Height of a contact sheet's title strip."""
RIDGE = 1e-6
"""Added to both covariances' diagonals before the Fréchet distance's matrix square root."""


class MetricsError(HeadcastError):
    """A measure cannot be computed (wrong shapes, no identity network); the message says what to do."""


@dataclass
class PixelDistances:
    """§4's pixel measures, summed clip by clip with `add` and read frame-weighted over every clip added.

    pixel_distance: per-pixel L2 of RGB (0–255) averaged per frame, then over frames;
    masked_pixel_distance: the same over the real foreground's pixels (mask ≥ 128);
    mask_iou: IoU of the predicted mask with the real foreground; frames: how many were measured.
    """

    frames: int = 0
    _pixel: float = 0.0
    _masked: float = 0.0
    _masked_pixels: float = 0.0
    _intersection: float = 0.0
    _union: float = 0.0

    def add(
        self,
        generated: npt.NDArray[np.floating[Any]],
        real: npt.NDArray[Any],
        real_masks: npt.NDArray[np.uint8],
        predicted: npt.NDArray[np.bool_],
    ) -> None:
        """Count one clip: generated and real (T, S, S, 3) in 0–255, real_masks (T, S, S) 0–255, predicted (T, S, S)."""
        distance = np.linalg.norm(np.asarray(generated, np.float32) - np.asarray(real, np.float32), axis=-1)
        foreground = real_masks >= MASK_THRESHOLD
        self.frames += len(distance)
        self._pixel += float(distance.mean(axis=(1, 2)).sum())
        self._masked += float(distance[foreground].sum())
        self._masked_pixels += float(foreground.sum())
        self._intersection += float((predicted & foreground).sum())
        self._union += float((predicted | foreground).sum())

    @property
    def pixel_distance(self) -> float:
        return self._pixel / max(self.frames, 1)

    @property
    def masked_pixel_distance(self) -> float:
        return self._masked / max(self._masked_pixels, 1.0)

    @property
    def mask_iou(self) -> float:
        return self._intersection / max(self._union, 1.0)

    def as_dict(self) -> dict[str, float]:
        """Return the three measures and the frame count (as a float), keyed by name."""
        return {"pixel_distance": self.pixel_distance, "masked_pixel_distance": self.masked_pixel_distance,
                "mask_iou": self.mask_iou, "frames": float(self.frames)}  # fmt: skip


def temporal_difference_error(
    real: npt.NDArray[np.floating[Any]], fake: npt.NDArray[np.floating[Any]]
) -> tuple[float, float, float, int]:
    """Return (error, real motion, generated motion, pairs) for one clip's frames (T, H, W, 3) in 0–255.

    error: mean per-pixel L2 of (ỹ_t − ỹ_{t−1}) − (y_t − y_{t−1}); motions: mean per-pixel L2 of
    each video's own consecutive differences; pairs: T − 1 (all 0.0 when T < 2).
    """
    if len(real) < 2:
        return 0.0, 0.0, 0.0, 0
    real_step = np.diff(np.asarray(real, dtype=np.float64), axis=0)
    fake_step = np.diff(np.asarray(fake, dtype=np.float64), axis=0)
    error = np.linalg.norm(fake_step - real_step, axis=-1).mean()
    real_motion = np.linalg.norm(real_step, axis=-1).mean()
    fake_motion = np.linalg.norm(fake_step, axis=-1).mean()
    return float(error), float(real_motion), float(fake_motion), len(real_step)


def frechet_distance(
    real: npt.NDArray[np.floating[Any]], fake: npt.NDArray[np.floating[Any]], ridge: float = RIDGE
) -> float:
    """Return the Fréchet distance between Gaussians fitted to feature sets real (N, D) and fake (M, D).

    d² = ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^½), with Σ + ridge·I for both covariances so
    that fewer samples than dimensions stay well defined. Tr (Σ_r Σ_f)^½ is computed as the sum of
    square roots of the eigenvalues of the symmetric Σ_r^½ Σ_f Σ_r^½ (same spectrum, stabler).
    Raises MetricsError with fewer than 2 feature vectors on a side.
    """
    if len(real) < 2 or len(fake) < 2:
        raise MetricsError("a Fréchet distance needs at least 2 frames on each side: hold out more frames")
    real64, fake64 = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    eye = np.eye(real64.shape[1])
    cov_real = np.atleast_2d(np.cov(real64, rowvar=False)) + ridge * eye
    cov_fake = np.atleast_2d(np.cov(fake64, rowvar=False)) + ridge * eye
    values, vectors = np.linalg.eigh(cov_real)
    root_real = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = root_real @ cov_fake @ root_real
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    mean_term = float(np.sum((real64.mean(0) - fake64.mean(0)) ** 2))
    return max(mean_term + float(np.trace(cov_real) + np.trace(cov_fake) - 2 * cross), 0.0)


def _frames(frames: npt.NDArray[Any], name: str = "frames") -> npt.NDArray[np.uint8]:
    """Return `frames` checked to be (N, H, W, 3) uint8 with N ≥ 1."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or len(array) == 0:
        raise MetricsError(f"{name} must be (N, H, W, 3) uint8 RGB with N ≥ 1, got {array.shape} {array.dtype}")
    return array


# --- sharpness -----------------------------------------------------------------------------------------------------


def sharpness(frames: npt.NDArray[np.uint8], mask: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.float64]:
    """Return (N,) variances of the Laplacian of frames (N, S, S, 3) uint8 RGB, over mask (N, S, S) ≥ 128 when given.

    The Laplacian is taken on the whole grey frame (so the face's outline counts) and its variance
    over the face pixels only; a frame whose mask has no face pixel gets NaN.
    """
    rgb = _frames(frames)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != rgb.shape[:3]:
            raise MetricsError(f"masks must be (N, H, W) = {rgb.shape[:3]} like the frames, got {mask.shape}")
    values = np.empty(len(rgb), dtype=np.float64)
    for i, frame in enumerate(rgb):
        laplacian = cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F)
        region = laplacian if mask is None else laplacian[mask[i] >= MASK_THRESHOLD]
        values[i] = float(region.var()) if region.size else np.nan
    return values


def sharpness_ratio(
    generated: npt.NDArray[np.uint8], real: npt.NDArray[np.uint8], masks: npt.NDArray[np.uint8] | None = None
) -> float:
    """Return the median over frames of sharpness(generated) ÷ sharpness(real), both over the real frame's mask.

    1.0 exactly for identical frames; below 1 when the generated frames are blurrier. Frames whose
    real sharpness is 0 or undefined (a flat crop, an empty mask) are left out.
    """
    generated, real = _frames(generated, "generated"), _frames(real, "real")
    if generated.shape != real.shape:
        raise MetricsError(
            f"generated {generated.shape} and real {real.shape} frames differ: compare frames of one size, one to one"
        )
    reference = sharpness(real, masks)
    valid = np.isfinite(reference) & (reference > 0)
    if not valid.any():
        raise MetricsError("every real frame is flat or has an empty mask: the sharpness ratio is undefined")
    return float(np.median(sharpness(generated, masks)[valid] / reference[valid]))


# --- identity ------------------------------------------------------------------------------------------------------


class IdentityFeatures:
    """dlib's 128-d face-identity descriptors of square face crops, aligned on a detected face or the whole crop."""

    def __init__(self, upsample: int = DETECTOR_UPSAMPLE) -> None:
        try:
            import dlib
        except ImportError:
            raise MetricsError("identity measures need dlib: `pip install 'headcast[identity]'`") from None
        self._dlib: Any = dlib
        self._upsample = upsample
        self._aligner = dlib.shape_predictor(str(assets.resolve("face_aligner")))
        self._network = dlib.face_recognition_model_v1(str(assets.resolve("face_descriptor")))
        self._detector: Any = None

    def describe(
        self, frames: npt.NDArray[np.uint8], detect: bool = True
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Return (descriptors (N, 128) float64, detected (N,) bool) of frames (N, S, S, 3) uint8 RGB.

        With `detect`, each face is aligned inside the largest box dlib's frontal face detector
        finds; a frame where it finds none (detected False) is aligned inside its whole crop, as
        every frame is without `detect`.
        """
        rgb = _frames(frames)
        if detect and self._detector is None:
            self._detector = self._dlib.get_frontal_face_detector()
        descriptors = np.empty((len(rgb), DESCRIPTOR_SIZE), dtype=np.float64)
        detected = np.zeros(len(rgb), dtype=bool)
        for i, frame in enumerate(rgb):
            image = np.ascontiguousarray(frame)
            box = self._dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)
            if detect:
                boxes = list(self._detector(image, self._upsample))
                if boxes:
                    box, detected[i] = max(boxes, key=lambda b: b.area()), True
            shape = self._aligner(image, box)
            descriptors[i] = np.asarray(self._network.compute_face_descriptor(image, shape), dtype=np.float64)
        return descriptors, detected

    def __call__(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        """Return (N, 128) descriptors of frames, each aligned inside its whole crop (no detection)."""
        return self.describe(frames, detect=False)[0]


def _descriptors(features: npt.NDArray[np.floating[Any]], name: str) -> npt.NDArray[np.float64]:
    """Return `features` as (N, 128) float64 with N ≥ 1."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != DESCRIPTOR_SIZE or len(array) == 0:
        raise MetricsError(f"{name} must be (N, {DESCRIPTOR_SIZE}) descriptors with N ≥ 1, got {array.shape}")
    return array


def identity_distances(
    features: npt.NDArray[np.floating[Any]], reference: npt.NDArray[np.floating[Any]]
) -> npt.NDArray[np.float64]:
    """Return (N,) Euclidean distances of descriptors (N, 128) to the mean of the reference descriptors (M, 128).

    The mean of one person's descriptors is a steadier stand-in for that person than any one frame;
    below SAME_PERSON_THRESHOLD a face counts as that person.
    """
    centre = _descriptors(reference, "reference").mean(axis=0)
    return np.asarray(np.linalg.norm(_descriptors(features, "features") - centre, axis=1), dtype=np.float64)


def cross_identity(
    generated_features: npt.NDArray[np.floating[Any]],
    target_features: npt.NDArray[np.floating[Any]],
    driver_features: npt.NDArray[np.floating[Any]],
) -> dict[str, Any]:
    """Return whose face cross-reenacted frames show: JSON-ready distances to the target and to the driver.

    Keys: to_target, to_driver (per-frame distances of the generated descriptors to the mean of each
    person's); nearer_target_fraction (frames nearer the target than the driver);
    same_person_fraction (frames within SAME_PERSON_THRESHOLD of the target); median_to_target,
    median_to_driver; threshold. A generator that leaks the driver's identity moves frames toward
    the driver: nearer_target_fraction falls below 1.
    """
    to_target = identity_distances(generated_features, target_features)
    to_driver = identity_distances(generated_features, driver_features)
    return {
        "to_target": [float(d) for d in to_target],
        "to_driver": [float(d) for d in to_driver],
        "nearer_target_fraction": float(np.mean(to_target < to_driver)),
        "same_person_fraction": float(np.mean(to_target < SAME_PERSON_THRESHOLD)),
        "median_to_target": float(np.median(to_target)),
        "median_to_driver": float(np.median(to_driver)),
        "threshold": SAME_PERSON_THRESHOLD,
    }


# --- contact sheets ------------------------------------------------------------------------------------------------


def _panel(frame: npt.NDArray[np.uint8], panel_px: int) -> npt.NDArray[np.uint8]:
    """Return one frame (H, W, 3) or (H, W) fitted into a black panel_px square, its aspect ratio kept."""
    image = np.asarray(frame)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height, width = image.shape[:2]
    scale = panel_px / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging when shrinking (no aliasing); bilinear when a small crop is enlarged.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)
    panel = np.zeros((panel_px, panel_px, 3), dtype=np.uint8)
    top, left = (panel_px - size[1]) // 2, (panel_px - size[0]) // 2
    panel[top : top + size[1], left : left + size[0]] = resized
    return panel


def _title(text: str, width_px: int) -> npt.NDArray[np.uint8]:
    """Return a (HEADER_PX, width_px, 3) dark strip with `text` in white, shrunk until it fits."""
    strip = np.full((HEADER_PX, width_px, 3), 32, dtype=np.uint8)
    font, thickness, scale = cv2.FONT_HERSHEY_SIMPLEX, 1, 0.5
    (text_width, text_height), _ = cv2.getTextSize(text, font, scale, thickness)
    while text_width > width_px - 4 and scale > 0.2:
        scale -= 0.05
        (text_width, text_height), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = (max(2, (width_px - text_width) // 2), (HEADER_PX + text_height) // 2)
    cv2.putText(strip, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return strip


def contact_sheet(
    columns: Sequence[tuple[str, npt.NDArray[np.uint8]]], rows: int = 4, panel_px: int = 128
) -> npt.NDArray[np.uint8]:
    """Return one uint8 RGB image (HEADER_PX + rows·panel_px, columns·panel_px, 3): titled columns of frames.

    Each column is (title, frames (N, H, W, 3) or (N, H, W) uint8); all columns have the same N, and
    row r shows frame round(r·(N−1)/(rows−1)) of every column (all N frames when N < rows), each
    fitted into a panel_px square.
    """
    if not columns:
        raise MetricsError("a contact sheet needs at least one column of frames")
    if rows < 1 or panel_px < 8:
        raise MetricsError(f"a contact sheet needs rows ≥ 1 and panel_px ≥ 8, got rows={rows}, panel_px={panel_px}")
    lengths = {title: len(frames) for title, frames in columns}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise MetricsError(f"every column needs the same number (≥ 1) of frames so rows line up, got {lengths}")
    count = next(iter(lengths.values()))
    picks = np.unique(np.rint(np.linspace(0, count - 1, min(rows, count))).astype(int))
    strips = []
    for title, frames in columns:
        panels = [_panel(np.asarray(frames[int(i)]), panel_px) for i in picks]
        strips.append(np.concatenate([_title(title, panel_px), *panels], axis=0))
    return np.concatenate(strips, axis=1)


def write_png(path: str | Path, image: npt.NDArray[np.uint8]) -> Path:
    """Return `path` after writing `image` (H, W, 3) uint8 RGB there as PNG, atomically (temporary file, rename)."""
    target = Path(path)
    picture = np.asarray(image)
    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise MetricsError(f"write_png needs an (H, W, 3) uint8 RGB image, got {picture.shape} {picture.dtype}")
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MetricsError(f"OpenCV could not encode a {picture.shape} image as PNG")
    return write_atomic(target, encoded.tobytes())  # readers never see half a PNG
