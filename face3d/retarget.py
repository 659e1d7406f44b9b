"""Retargeting: a source's coefficients drive a target's `PersonModel` (docs/method.md §3.2, "Retargeting").

Expression: target mesh = N_target + B_target · w_source. Pose: the source's rotation as is; its
translation and scale taken *relative to the source's own running mean*, mapped onto the target's
enrolment mean, and clamped to the target's mean ± 2σ — so a source sitting off-centre or far
from the camera still puts the target's head where the target's recordings had it, and the head
stays in frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from face3d.coefficients import Coefficients
from face3d.errors import FitError
from face3d.person import PersonModel

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PoseAdapterConfig:
    """How the source's pose statistics are kept and how far the target may move.

    window_s: time constant of the source's running mean and variance (exponentially weighted). Long
        enough that nodding does not move the mean (a nod lasts ~1 s), short enough that a source who
        sits back settles within a minute.
    clamp_sigmas: the target's head stays within mean ± clamp_sigmas·σ of its enrolment poses.
    min_translation_std: floor on the target's translation σ (image widths); a target recorded
        sitting perfectly still would otherwise pin the head in place. 0.02 ≈ one eighth of a face.
    min_log_scale_std: the same floor for log-scale (0.05 ≈ ±10 % size at 2σ).
    """

    window_s: float = 10.0
    clamp_sigmas: float = 2.0
    min_translation_std: float = 0.02
    min_log_scale_std: float = 0.05

    def __post_init__(self) -> None:
        for name in ("window_s", "clamp_sigmas", "min_translation_std", "min_log_scale_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise FitError(f"PoseAdapterConfig.{name} must be a positive number")


@dataclass(frozen=True)
class RetargetedFrame:
    """The target's face for one frame.

    vertices: (468, 3) float64 centimetres in canonical axes (the target's shape at the source's weights).
    rotation: (3,) rotation vector; translation: (2,) image widths from the centre, y down;
    scale: image widths per cm — feed all four to face3d.camera.project_to_image.
    """

    vertices: FloatArray
    rotation: FloatArray
    translation: FloatArray
    scale: float


@dataclass(frozen=True)
class PoseOffset:
    """A source frame's pose relative to the source's own running mean, in person-independent units.

    translation_cm: (2,) offset of the head from its usual place, in the source's centimetres
        (image widths divided by the source's usual scale), x right, y down.
    log_scale: log of (this frame's scale / the source's usual scale): > 0 when closer than usual.
    """

    translation_cm: FloatArray
    log_scale: float

    def __post_init__(self) -> None:
        translation = np.asarray(self.translation_cm, dtype=np.float64)
        if translation.shape != (2,) or not np.all(np.isfinite(translation)) or not math.isfinite(self.log_scale):
            raise FitError("PoseOffset needs a finite (2,) translation and a finite log-scale")
        object.__setattr__(self, "translation_cm", translation)
        object.__setattr__(self, "log_scale", float(self.log_scale))


class SourcePoseTracker:
    """The source side of pose adaptation: the source's running pose mean, and each frame as an offset from it.

    Stateful, one per source stream, and target-independent — the gateway keeps it with the session
    so that render requests stay stateless. An exponentially weighted mean over `window_s` seconds of
    capture time, bias-corrected so the first frames get their true mean.
    """

    def __init__(self, config: PoseAdapterConfig | None = None) -> None:
        self.config = config or PoseAdapterConfig()
        self._mean = np.zeros(3)
        self._weight = 0.0  # the sum of the decayed weights so far
        self._last_ms: int | None = None

    def reset(self) -> None:
        """Forget the source's statistics (a new source, or the source moved the camera)."""
        self._mean = np.zeros(3)
        self._weight = 0.0
        self._last_ms = None

    @property
    def source_mean(self) -> tuple[float, float, float] | None:
        """Return the source's running mean (translation x, y, scale), None before the first frame."""
        if self._weight == 0:
            return None
        return (float(self._mean[0]), float(self._mean[1]), math.exp(self._mean[2]))

    def update(self, coefficients: Coefficients) -> PoseOffset:
        """Return this frame's offset from the source's usual pose, updating the running mean."""
        pose = np.array([*coefficients.translation.astype(np.float64), math.log(coefficients.scale)])
        if self._last_ms is None:
            decay = 0.0
        else:
            dt_s = max((coefficients.timestamp_ms - self._last_ms) / 1000.0, 0.0)
            decay = math.exp(-dt_s / self.config.window_s)
        self._last_ms = coefficients.timestamp_ms
        self._weight = decay * self._weight + 1.0
        self._mean = self._mean + (pose - self._mean) / self._weight
        offset = pose - self._mean
        # Image widths → the source's centimetres: divide by the source's usual scale (widths per cm).
        return PoseOffset(offset[:2] * math.exp(-self._mean[2]), float(offset[2]))


class TargetPoseMap:
    """The target side of pose adaptation: a `PoseOffset` placed around the target's enrolment mean, clamped.

    Stateless: the same offset always gives the same pose, so any replica can apply it.
    """

    def __init__(self, target: PersonModel, config: PoseAdapterConfig | None = None) -> None:
        if not target.has_pose_statistics:
            raise FitError("the target model has no pose statistics (fit it from a video to get them)")
        if not target.pose_mean[2] > 0:
            raise FitError("the target model's mean scale must be positive")
        self.config = config or PoseAdapterConfig()
        c = self.config
        self._target_mean = np.array([*target.pose_mean[:2], math.log(target.pose_mean[2])])
        relative_scale_std = float(target.pose_std[2] / target.pose_mean[2])
        self._target_std = np.maximum(
            np.array([*target.pose_std[:2], relative_scale_std]),
            [c.min_translation_std, c.min_translation_std, c.min_log_scale_std],
        )

    @property
    def mean_pose(self) -> tuple[FloatArray, float]:
        """Return the target's usual (translation (2,), scale): where a source at its own usual pose puts it."""
        return self._target_mean[:2].copy(), math.exp(float(self._target_mean[2]))

    def apply(self, offset: PoseOffset) -> tuple[FloatArray, float]:
        """Return the target's (translation (2,), scale) for a source's pose offset."""
        # An offset in centimetres moves the target by as many of its own: times its usual scale.
        adapted = self._target_mean + np.array(
            [*(offset.translation_cm * math.exp(self._target_mean[2])), offset.log_scale]
        )
        limit = self.config.clamp_sigmas * self._target_std
        adapted = np.clip(adapted, self._target_mean - limit, self._target_mean + limit)
        return adapted[:2], math.exp(float(adapted[2]))


class PoseAdapter:
    """Maps a source's translation and scale onto a target's: a `SourcePoseTracker` and a `TargetPoseMap`.

    Stateful: one per (source stream, target) pair. Scale is handled as log-scale, so "20 % larger
    than usual" maps to "20 % larger than the target's usual". Where the two sides live in different
    processes (the gateway and a render replica), use the parts directly.
    """

    def __init__(self, target: PersonModel, config: PoseAdapterConfig | None = None) -> None:
        self.target_map = TargetPoseMap(target, config)
        self.config = self.target_map.config
        self.source = SourcePoseTracker(self.config)

    def reset(self) -> None:
        """Forget the source's statistics (a new source, or the source moved the camera)."""
        self.source.reset()

    @property
    def source_mean(self) -> tuple[float, float, float] | None:
        """Return the source's running mean (translation x, y, scale), None before the first frame."""
        return self.source.source_mean

    def update(self, coefficients: Coefficients) -> tuple[FloatArray, float]:
        """Return the target's (translation (2,), scale) for one source frame, updating the running mean."""
        return self.target_map.apply(self.source.update(coefficients))


def retarget(
    target: PersonModel,
    coefficients: Coefficients,
    adapter: PoseAdapter | None = None,
    *,
    pose: tuple[FloatArray, float] | None = None,
) -> RetargetedFrame:
    """Return the target's mesh and pose driven by the source's coefficients.

    The target's (translation, scale) comes from `pose` when given (a `TargetPoseMap` applied
    elsewhere), else from the adapter; with neither, the source's translation and scale pass through
    unchanged (self-reenactment).
    """
    vertices = target.shape(coefficients.blendshapes.astype(np.float64))
    if pose is not None:
        translation, scale = pose
    elif adapter is None:
        translation, scale = coefficients.translation.astype(np.float64), coefficients.scale
    else:
        translation, scale = adapter.update(coefficients)
    return RetargetedFrame(
        vertices=vertices,
        rotation=coefficients.rotation.astype(np.float64),
        translation=np.asarray(translation, dtype=np.float64),
        scale=float(scale),
    )
