"""The gateway's Prometheus metrics, in a registry of their own so that one process can hold several gateways.

Latency is measured per stage on clocks that can be compared: the edge's capture clock is not the
gateway's, so "network" is left to the edge (its round trip from the `rendered` message). Here:
queue (packet arrival → render start), render (the Serve call's round trip), the replica's own stages
from `RenderResult.timings_ms` (nmfc, warp, generator, composite), and the interval between frames sent.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 1 ms … 2.5 s: a render is tens of milliseconds on a GPU, a few hundred on CPU, seconds on a cold replica.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
# Around a 25–60 fps frame interval (17–40 ms), with room to see stalls.
INTERVAL_BUCKETS_S = (0.01, 0.017, 0.025, 0.033, 0.04, 0.05, 0.067, 0.1, 0.2, 0.5, 1.0)
STAGES = ("queue", "render", "nmfc", "warp", "generator", "composite")
DROP_REASONS = ("stale", "superseded", "bad", "rate")
# docs/live-protocol.md's error codes, and the codes a frame can fail with after all retries.
REFUSAL_CODES = ("bad_request", "unauthorized", "forbidden", "bad_origin", "unknown_target", "target_revoked",
                 "unknown_room", "room_busy", "room_full", "too_large", "too_many_sessions", "unavailable")  # fmt: skip
FAILURE_CODES = ("unavailable", "render_failed", "target_revoked")


class GatewayMetrics:
    """Every metric one gateway exports; `exposition()` returns them in Prometheus' text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "headcast_gateway_stage_seconds", "Latency of one frame's stages", ["stage"],
            buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.frame_interval_seconds = Histogram(
            "headcast_gateway_frame_interval_seconds", "Time between video frames handed to the encoders",
            buckets=INTERVAL_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.frames_rendered = Counter("headcast_gateway_frames_rendered", "Frames rendered", registry=r)
        self.packets_received = Counter(
            "headcast_gateway_packets_received", "Data-channel messages received from senders", registry=r
        )
        self.packets_dropped = Counter(
            "headcast_gateway_packets_dropped", "Coefficient packets not rendered, by reason", ["reason"], registry=r
        )
        self.refusals = Counter(
            "headcast_gateway_refusals", "HTTP requests refused, by error code", ["code"], registry=r
        )
        self.sessions = Gauge("headcast_gateway_sessions", "Live peer sessions, by role", ["role"], registry=r)
        self.rooms = Gauge("headcast_gateway_rooms", "Rooms with a live sender", registry=r)
        # Every RTCPeerConnection the gateway made, and those not yet closed (negotiating, live or closing):
        # an offer refused before negotiation costs none, and sessions that end leave none behind.
        self.connections_opened = Counter(
            "headcast_gateway_peer_connections_opened", "WebRTC peer connections created for offers", registry=r
        )
        self.connections = Gauge(
            "headcast_gateway_peer_connections", "WebRTC peer connections created and not yet closed", registry=r
        )
        self.bytes = Counter(
            "headcast_gateway_bytes", "Bytes through the gateway's peers", ["direction", "kind"], registry=r
        )
        self.key_frame_requests = Counter(
            "headcast_gateway_key_frame_requests", "Key frames asked of senders whose delta chain broke", registry=r
        )
        self.render_retries = Counter(
            "headcast_gateway_render_retries", "Render calls retried after a replica failure or timeout", registry=r
        )
        self.render_failures = Counter(
            "headcast_gateway_render_failures", "Frames not rendered after all retries, by code", ["code"], registry=r
        )
        self.revoked_sessions = Counter(
            "headcast_gateway_revoked_sessions", "Sessions ended because their target was revoked or deleted, by role",
            ["role"], registry=r,
        )  # fmt: skip
        # Export the labelled series at zero from the start, so dashboards and alerts see them before the first event.
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for reason in DROP_REASONS:
            self.packets_dropped.labels(reason)
        for role in ("send", "view"):
            self.sessions.labels(role)
            self.revoked_sessions.labels(role)
        for code in REFUSAL_CODES:
            self.refusals.labels(code)
        for code in FAILURE_CODES:
            self.render_failures.labels(code)

    def exposition(self) -> bytes:
        """Return every metric in Prometheus' text exposition format."""
        return generate_latest(self.registry)
