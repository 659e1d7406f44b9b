"""Configuration of the edge: tracking, shot detection, identity grouping, the live client (configs/edge.yaml)."""

from __future__ import annotations

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


class ClientConfig(configs.StrictConfig):
    """The live client: keep-alive, drop detection, reconnection (docs/live-protocol.md)."""

    key_interval: int = Field(30, ge=1, le=63, description="a compact key frame at least every n packets")
    ping_interval_s: float = Field(1.0, gt=0, description="seconds between pings on the data channel")
    silence_timeout_s: float = Field(
        5.0, gt=0, description="no message from the gateway (it sends stats every second) for this long: a drop"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="offer POST, then until the data channel opens")
    reconnect_attempts: int = Field(
        18, ge=0, description="offers after a drop before giving up (0: never reconnect); with the backoff ~60 s"
    )
    reconnect_first_delay_s: float = Field(0.25, ge=0, description="wait before the first re-offer; doubles each time")
    reconnect_max_delay_s: float = Field(4.0, ge=0, description="cap on the wait between re-offers")
    busy_retries: int = Field(
        13,
        ge=0,
        description="409 room_busy / 429 too_many_sessions answers retried after a drop (the gateway still "
        "holds our old session until it notices)",
    )
    max_buffered_bytes: int = Field(
        8192, ge=0, description="data channel backlog above which a packet is dropped instead of queued (congestion)"
    )
    drain_s: float = Field(1.0, ge=0, description="after the last packet, wait this long for its rendered frames")
    latency_window: int = Field(250, ge=1, description="recent round trips the live p50/p95 are taken over")


class EdgeConfig(configs.StrictConfig):
    """Everything the edge needs: tracking and the live client."""

    config_name = "edge"
    tracker: TrackerConfig = TrackerConfig()
    shots: ShotConfig = ShotConfig()
    identity: IdentityConfig = IdentityConfig()
    client: ClientConfig = ClientConfig()
