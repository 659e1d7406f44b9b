"""Configuration of the edge: tracking, shot detection, identity grouping (filled from configs/edge.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

import configs


class TrackerConfig(configs.StrictConfig):
    """MediaPipe FaceLandmarker settings."""

    min_face_detection_confidence: float = Field(0.5, ge=0, le=1, description="face detector threshold")
    min_face_presence_confidence: float = Field(0.5, ge=0, le=1, description="landmark presence threshold")
    min_tracking_confidence: float = Field(0.5, ge=0, le=1, description="below it, VIDEO mode re-detects")
    retry_lost_face: bool = Field(
        True, description="when VIDEO mode finds no face, retry the frame in IMAGE mode (cuts lose a frame)"
    )


class ShotConfig(configs.StrictConfig):
    """Hard-cut detection on grey thumbnails: a cut is a jump far above the recent frame differences."""

    thumbnail_px: tuple[int, int] = Field((90, 66), description="thumbnail width, height")
    min_difference: float = Field(12.0, gt=0, description="mean absolute grey difference (0-255) a cut needs")
    ratio_to_median: float = Field(6.0, gt=1, description="and how many times the recent median it must be")
    history: int = Field(12, ge=1, description="frames in the running median")


class IdentityConfig(configs.StrictConfig):
    """Grouping shots into people with the dlib face-identity descriptor."""

    sample_every: int = Field(6, ge=1, description="describe every n-th tracked frame of a shot")
    max_samples_per_shot: int = Field(8, ge=1, description="cap on descriptors per shot")
    min_face_px: int = Field(40, ge=8, description="smaller faces are not described")
    max_distance: float = Field(
        0.42, gt=0, description="average-linkage distance between shot means below which shots are one person"
    )


class EdgeConfig(configs.StrictConfig):
    """Everything the edge's tracking needs."""

    tracker: TrackerConfig = TrackerConfig()
    shots: ShotConfig = ShotConfig()
    identity: IdentityConfig = IdentityConfig()

    @classmethod
    def load(cls, path: str | Path | None = None) -> EdgeConfig:
        """Return the configuration in `path`, or the packaged configs/edge.yaml."""
        return cls.model_validate(configs.load("edge", path))
