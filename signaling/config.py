"""The gateway's configuration (filled from configs/gateway.yaml): where it listens, pacing, retries, limits."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

import configs
from base.cache import cache_dir

_ORIGIN = re.compile(r"https?://[^/\s?#]+")  # what a browser's Origin header carries


class LimitsConfig(configs.StrictConfig):
    """What one client may send: request sizes, packet sizes and rates, room sizes."""

    max_sdp_bytes: int = Field(32 * 1024, ge=1024, description="largest SDP offer accepted (413 too_large above)")
    max_packet_bytes: int = Field(
        256, ge=74, description="largest data-channel message; a plain wire packet is 74 bytes, a delta ~31"
    )
    max_packets_per_s: float = Field(
        120.0, gt=0, description="sustained data-channel messages per second per session (a 60 fps edge sends 60)"
    )
    packet_burst: int = Field(
        30, ge=1, description="messages a session may send at once above the sustained rate (a reconnect's backlog)"
    )
    max_seq_jump: int = Field(
        1500, ge=1, le=2**30, description="furthest a packet's sequence number may lead the newest (60 s at 25 fps); "
        "a packet beyond is dropped unless the next one continues from it",
    )  # fmt: skip
    max_viewers_per_room: int = Field(16, ge=1, description="viewers of one room; each costs one video encoder")
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="largest enrolment upload (500 frames of 720p video fit in 256 MiB)"
    )


class EnrolmentConfig(configs.StrictConfig):
    """Uploads for enrolment and the jobs they start (configs/gateway.yaml `enrolment`)."""

    uploads_dir: Path | None = Field(
        None, description="folder for uploads in progress; None: 'uploads' in headcast's cache folder. "
        "Jobs read recordings from it, so with a remote cluster it must be a shared filesystem",
    )  # fmt: skip
    max_chunk_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, description="largest body of one PUT; what is lost when a connection drops"
    )
    upload_ttl_s: float = Field(
        3600.0, gt=0, description="an unfinished upload that received nothing this long is deleted"
    )
    max_pending_uploads: int = Field(
        2, ge=1, description="unfinished uploads one subject may have at once (each may hold max_upload_bytes)"
    )
    sweep_interval_s: float = Field(
        60.0, gt=0, description="how often expired uploads and those of finished jobs are removed"
    )
    enroller_timeout_s: float = Field(
        10.0, gt=0, description="deadline for asking the enroller about a job or a target (503 after)"
    )
    profile: str = Field(
        "default", min_length=1, description="configs/enrol.yaml profile the jobs fine-tune with (tiny-ci in CI)"
    )
    steps: int | None = Field(None, ge=1, description="fine-tuning steps; None: the profile's")
    base: Path | None = Field(None, description="a stage-1 checkpoint from `headcast pretrain`; None: fresh networks")
    jobs_address: str | None = Field(
        None, description="a Ray cluster's dashboard URL for the jobs; None: headcast's private local head"
    )

    def upload_folder(self) -> Path:
        """Return the folder uploads are kept in."""
        return self.uploads_dir if self.uploads_dir is not None else cache_dir() / "uploads"


class GatewayConfig(configs.StrictConfig):
    """Everything the gateway (signaling/gateway.py) needs besides the renderer and the signing secret."""

    config_name = "gateway"
    host: str = Field("127.0.0.1", min_length=1, description="address the HTTP server binds")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port; 0 picks a free one")
    default_fps: int = Field(25, ge=1, description="a session's frame rate when the sender asks for none")
    max_fps: int = Field(60, ge=1, description="the highest frame rate a sender may ask for")
    window_frames: int = Field(
        3, ge=1, description="coefficient frames in a render request: the generator's NMFC window t-2..t"
    )
    previous_frames: int = Field(
        2, ge=0, description="generated faces sent back with each request: the generator's window t-2..t-1"
    )
    render_timeout_s: float = Field(
        5.0, gt=0, description="one render call's deadline; a replica's first call for a target loads its bundle"
    )
    lookup_timeout_s: float = Field(
        5.0, gt=0, description="deadline for asking the Serve app whether a sender's target exists (503 after)"
    )
    render_retries: int = Field(
        3, ge=0, description="retries of a render whose replica died or timed out; Serve routes them to a live one"
    )
    retry_backoff_s: float = Field(0.05, ge=0, description="wait before the first retry; doubled for each next one")
    connect_timeout_s: float = Field(
        20.0, gt=0, description="a peer not connected this long after its answer is closed (frees its room)"
    )
    sender_silence_s: float = Field(
        6.0,
        gt=0,
        description="a sender silent this long (the edge pings every second) is gone: its room closes "
        "at once, rather than when ICE consent fails 24-36 s later, so a reconnecting edge finds it free",
    )
    placeholder_size_px: int = Field(
        256, ge=16, description="side of the grey frame sent before the first render; set to serving's output_size"
    )
    app_name: str = Field("avatar", min_length=1, description="the Ray Serve application rendering the avatars")
    stats_interval_s: float = Field(1.0, gt=0, description="how often a sender gets a stats message")
    error_interval_s: float = Field(
        1.0, ge=0, description="a sender gets at most one error message per code this often"
    )
    revocation_poll_s: float = Field(
        0.25, gt=0, description="how often the targets of live rooms are checked; a revoked one ends its rooms"
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain: the gateway serves HTTPS (with tls_key). None: plain HTTP, "
        "which browsers allow the camera on for localhost only",
    )  # fmt: skip
    tls_key: Path | None = Field(None, description="the certificate's PEM private key (not encrypted)")
    allowed_origins: tuple[str, ...] = Field(
        (), description="origins besides the gateway's own whose pages may call /api/ "
        "(e.g. https://avatar.example.com when a proxy in front terminates TLS); every other origin gets 403",
    )  # fmt: skip
    limits: LimitsConfig = LimitsConfig()
    enrolment: EnrolmentConfig = EnrolmentConfig()

    @model_validator(mode="after")
    def _default_fps_within_max(self) -> GatewayConfig:
        if self.default_fps > self.max_fps:
            raise ValueError(f"default_fps {self.default_fps} is above max_fps {self.max_fps}")
        return self

    @model_validator(mode="after")
    def _certificate_with_key(self) -> GatewayConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("HTTPS needs both tls_cert and tls_key (--tls-cert and --tls-key)")
        return self

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path or trailing slash")
        return origins

    @property
    def scheme(self) -> str:
        """Return "https" when the gateway serves TLS, else "http"."""
        return "https" if self.tls_cert is not None else "http"
