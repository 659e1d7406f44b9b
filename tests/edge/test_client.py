"""The edge's live client: its pure parts without a server, then whole sessions against the real
gateway (signaling/) rendering through the real Serve app `avatar` (tests/conftest.py: local Ray, the
sample clip's woman with a tiny random-weight generator, 128² output).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import wire
from edge.client import CoefficientUplink, Pacer, RecordingSink, SenderClient, ViewerClient, token_room
from edge.config import ClientConfig, EdgeConfig
from edge.errors import EdgeError
from edge.stats import RateMeter, RoundTrips, SenderMetrics, percentile
from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.coefficients import Coefficients

SECRET = b"e" * 32
TARGET = "woman"
ROOM = "edge-room"
PLACEHOLDER_PX = 32  # unlike the app's 128² output: a frame of the output size is a rendered one
FPS = 25


def face(seq: int, step_ms: int = 40) -> Coefficients:
    """Return frame `seq` of a face whose mouth opens and closes, captured `step_ms` apart."""
    blendshapes = np.zeros(NUM_BLENDSHAPES, np.float32)
    blendshapes[:] = 0.5 + 0.4 * math.sin(seq / 5)
    return Coefficients(seq, step_ms * seq, blendshapes, np.zeros(3, np.float32), np.zeros(2, np.float32), 0.012)


def jwt_with(claims: dict[str, Any]) -> str:
    """Return an unsigned-looking JWT carrying `claims` (the edge never checks signatures)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# ------------------------------------------------------------------------------------------- the token


@pytest.mark.parametrize("room", ["a", "ab", "abc", "abcd", "salle-été"])
def test_the_room_is_read_from_a_minted_token(room: str) -> None:
    from signaling.auth import mint_token

    # Rooms of every length mod 3 exercise each amount of stripped base64 padding.
    assert token_room(mint_token(SECRET, "bob", room, "send", (TARGET,))) == room


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("not-a-token", "three dot-separated parts"),
        ("a.%%%.c", "cannot be read"),
        (jwt_with({"role": "send"}), "names no room"),
        (jwt_with({"room": ""}), "names no room"),
    ],
)
def test_a_token_without_a_readable_room_is_an_edge_error(token: str, says: str) -> None:
    with pytest.raises(EdgeError, match=says):
        token_room(token)


def test_an_explicit_room_wins_over_the_token() -> None:
    client = SenderClient("http://gateway", jwt_with({"room": "from-token"}), TARGET, room="chosen")
    assert client.room == "chosen"
    assert SenderClient("http://gateway", jwt_with({"room": "from-token"}), TARGET).room == "from-token"


# ------------------------------------------------------------------------------------------- stats maths


def test_percentiles_interpolate_linearly() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)  # halfway between the 50th and 51st values
    assert percentile(values, 95) == pytest.approx(95.05)  # rank 0.95·99 = 94.05 → 95 + 0.05·(96 − 95)
    assert percentile([], 50) is None


def test_a_rate_meter_gives_the_rate_over_its_window() -> None:
    meter = RateMeter(window_s=2.0)
    assert meter.rate(0.0) == 0.0
    for i in range(100):  # 50-byte packets at 25 per second for 4 s
        meter.add(i / 25, 50)
    # The window (1.96, 3.96] holds 50 packets: 2500 B in 2 s.
    assert meter.rate(99 / 25) == pytest.approx(1250.0)
    fresh = RateMeter(window_s=2.0)
    for i in range(11):  # 0.4 s of 25 fps: the rate is taken over the time lived, not the whole window
        fresh.add(i / 25)
    assert fresh.rate(10 / 25) == pytest.approx(27.5)  # 11 events in 0.4 s (the first one included)
    assert meter.rate(100.0) == 0.0  # everything expired


def test_round_trips_pair_rendered_messages_with_send_times() -> None:
    trips = RoundTrips(window=3, keep=4)
    for seq in range(6):
        trips.sent(seq, 10.0 + seq * 0.04)
    assert trips.rendered(0, 11.0) is None  # forgotten: only the last 4 send times are kept
    assert trips.rendered(5, 10.2 + 0.08) == pytest.approx(80.0)
    assert trips.rendered(5, 10.4) is None  # answered already
    trips.forget()
    assert trips.rendered(4, 10.3) is None  # a new session cannot answer for the old one's packets
    assert trips.count == 1


def test_sender_metrics_sum_the_gateway_counts_over_sessions() -> None:
    metrics = SenderMetrics()
    metrics.session_opened()
    metrics.gateway_stats({"type": "stats", "received": 50, "rendered": 40,
                           "dropped": {"stale": 1, "superseded": 9, "bad": 0}, "viewers": 2})  # fmt: skip
    metrics.gateway_stats({"type": "stats", "received": 60, "rendered": 45,
                           "dropped": {"stale": 2, "superseded": 12, "bad": 0}, "viewers": 2})  # fmt: skip
    metrics.session_opened()  # a reconnection: the gateway's counters start again from zero
    metrics.gateway_stats({"type": "stats", "received": 10, "rendered": 8, "dropped": {"stale": 0, "superseded": 1,
                           "bad": 0, "rate": 3}, "viewers": "many"})  # fmt: skip
    metrics.dropped_offline = 7
    stats = metrics.snapshot(0.0)
    assert (stats.gateway_received, stats.gateway_rendered) == (70, 53)
    assert stats.gateway_dropped == {"stale": 2, "superseded": 13, "bad": 0, "rate": 3}
    assert stats.viewers == 2  # a malformed count is ignored
    assert stats.dropped == 7 + 2 + 13 + 3
    assert stats.connections == 2


def test_sender_metrics_report_uplink_and_round_trip() -> None:
    metrics = SenderMetrics(latency_window=250)
    metrics.session_opened()
    for seq in range(50):  # 2 s at 25 fps: a 74-byte key frame, then 29 deltas of 30 bytes, and again
        size = 74 if seq % 30 == 0 else 30
        metrics.packet_sent(seq, size, size == 74, seq / 25)
        metrics.rendered(seq, seq / 25 + 0.060 + 0.001 * (seq % 10))  # 60-69 ms
    metrics.pong(1000.0, 1003.5)
    stats = metrics.snapshot(49 / 25)
    total = 2 * 74 + 48 * 30
    assert stats.bytes_per_frame == pytest.approx(total / 50)
    assert stats.uplink_kbit_s == pytest.approx(total * 8 / 1000 / 1.96)  # 1.96 s lived, under the 2 s window
    assert stats.key_frames == 2
    assert stats.round_trip_ms_p50 == pytest.approx(64.5)  # 5 of each of 60…69 ms: the median is 64.5
    assert stats.round_trip_ms_p95 == pytest.approx(69.0)  # rank 0.95·49 = 46.55 falls among the 69s
    assert stats.rtt_ms == pytest.approx(3.5)


# ------------------------------------------------------------------------------------------- pacing


def test_frames_are_paced_by_their_timestamps() -> None:
    pacer = Pacer(max_lag_s=0.1)
    assert pacer.delay_s(1000, now=50.0) == 0.0  # the first frame anchors media time to the clock
    assert pacer.delay_s(1040, now=50.0) == pytest.approx(0.040)
    assert pacer.delay_s(1080, now=50.030) == pytest.approx(0.050)
    assert pacer.delay_s(1120, now=50.150) == 0.0  # 30 ms late: sent at once, the anchor kept
    assert pacer.delay_s(1160, now=50.150) == pytest.approx(0.010)


def test_a_late_or_rewound_stream_is_re_anchored_instead_of_bursting() -> None:
    pacer = Pacer(max_lag_s=0.1)
    pacer.delay_s(0, now=0.0)
    assert pacer.delay_s(40, now=1.0) == 0.0  # 960 ms late: a new anchor, no burst of catching-up frames
    assert pacer.delay_s(80, now=1.0) == pytest.approx(0.040)
    assert pacer.delay_s(0, now=1.0) == 0.0  # backwards (a new stream): a new anchor, not a 49-day wait
    assert pacer.delay_s(40, now=1.0) == pytest.approx(0.040)


def test_pacing_follows_timestamps_across_the_u32_wrap() -> None:
    pacer = Pacer()
    pacer.delay_s(2**32 - 20, now=0.0)
    assert pacer.delay_s(20, now=0.0) == pytest.approx(0.040)


# ------------------------------------------------------------------------------------------- the uplink


class FakeChannel:
    """A data channel that keeps what it is sent."""

    def __init__(self) -> None:
        self.readyState = "open"
        self.bufferedAmount = 0
        self.sent: list[bytes] = []

    def send(self, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        self.sent.append(data)


def is_key(packet: bytes) -> bool:
    return packet[1] & 0b11 == wire.KIND_PLAIN


def test_the_first_packet_after_a_reconnection_is_a_key_frame() -> None:
    metrics = SenderMetrics()
    uplink = CoefficientUplink(metrics, key_interval=30)
    first, second = FakeChannel(), FakeChannel()
    for seq in range(10):
        uplink.send(face(seq), first, seq / 25)
    assert [is_key(p) for p in first.sent] == [True] + [False] * 9
    first.readyState = "closed"  # the drop: frames produced meanwhile are counted, not encoded
    for seq in range(10, 15):
        assert uplink.send(face(seq), first, seq / 25) is None
    assert metrics.dropped_offline == 5
    uplink.reset()  # what the client does on every new session
    for seq in range(15, 20):
        uplink.send(face(seq), second, seq / 25)
    assert is_key(second.sent[0]) and not any(is_key(p) for p in second.sent[1:])
    decoder = wire.CompactDecoder()  # the new session's decoder knows nothing of the old stream
    assert [decoder.decode(p).seq for p in second.sent] == list(range(15, 20))


def test_frames_skipped_for_congestion_leave_the_delta_chain_intact() -> None:
    metrics = SenderMetrics()
    uplink = CoefficientUplink(metrics, key_interval=30, max_buffered_bytes=100)
    channel = FakeChannel()
    decoder = wire.CompactDecoder()
    for seq in range(12):
        channel.bufferedAmount = 500 if 4 <= seq < 8 else 0
        packet = uplink.send(face(seq), channel, seq / 25)
        if packet is not None:
            assert decoder.decode(packet).seq == seq  # each delta references a frame the receiver holds
    assert metrics.dropped_congested == 4
    assert sum(is_key(p) for p in channel.sent) == 1  # skipping frames cost no extra key frame
    assert metrics.frames_sent == 8


def test_the_gateways_key_frame_request_restarts_the_chain_at_once() -> None:
    client = SenderClient("http://gateway", jwt_with({"room": "r"}), TARGET)
    channel = FakeChannel()
    for seq in range(5):
        client._uplink.send(face(seq), channel, seq / 25)
    client._message(json.dumps({"type": "key_frame"}))  # the gateway lost a packet of this chain
    for seq in range(5, 7):
        client._uplink.send(face(seq), channel, seq / 25)
    assert [is_key(p) for p in channel.sent] == [True, False, False, False, False, True, False]


def test_a_key_frame_every_key_interval_packets() -> None:
    uplink = CoefficientUplink(SenderMetrics(), key_interval=30)
    channel = FakeChannel()
    for seq in range(95):
        uplink.send(face(seq), channel, seq / 25)
    assert [i for i, p in enumerate(channel.sent) if is_key(p)] == [0, 30, 60, 90]


class LostPeer:
    """Stands for a connection that just dropped."""

    lost_reason = "test drop"

    async def close(self) -> None:
        return None


def refused(status: int | None, code: str | None = None) -> EdgeError:
    return EdgeError(f"refused {status} {code}", status=status, code=code)


@pytest.mark.parametrize(
    ("outcomes", "reconnected"),
    [
        ([refused(409, "room_busy"), refused(409, "room_busy"), None], True),  # our old room, released at last
        ([refused(429, "too_many_sessions"), None], True),  # our old session, still counted against the token
        ([refused(409, "room_busy")] * 3, False),  # busy_retries = 2: a room someone else took stays refused
        ([refused(None), refused(503, "unavailable"), None], True),  # network trouble, the gateway's "unavailable"
        ([refused(503, "unavailable")] * 3, False),  # reconnect_attempts = 3
        ([refused(403, "forbidden")], False),  # any other refusal stands at once
        ([refused(401, "unauthorized")], False),
    ],
)
def test_only_network_trouble_and_our_old_session_are_retried(
    outcomes: list[EdgeError | None], reconnected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ClientConfig(reconnect_attempts=3, busy_retries=2, reconnect_first_delay_s=0, reconnect_max_delay_s=0)
    client = SenderClient("http://gateway", jwt_with({"room": "r"}), TARGET, config=config)
    calls = 0

    async def connect() -> object:
        nonlocal calls
        outcome = outcomes[calls]
        calls += 1
        if outcome is not None:
            raise outcome
        return object()  # stands for the new connection

    # The private seam: a real offer needs a gateway; here only the retry decisions are under test.
    monkeypatch.setattr(client, "_connect", connect)

    async def reconnect() -> EdgeError | None:
        try:
            await client._reconnect(LostPeer())  # type: ignore[arg-type]
        except EdgeError as error:
            return error
        return None

    error = asyncio.run(reconnect())
    assert calls == len(outcomes)  # every scripted answer was asked for, and none past the last
    assert (error is None) == reconnected
    if error is not None:
        assert "test drop" in str(error) and error.status == outcomes[-1].status  # type: ignore[union-attr]


def test_the_recording_settles_on_the_avatars_size(tmp_path: Path) -> None:
    placeholder = np.full((32, 32, 3), 128, np.uint8)
    avatar = np.zeros((64, 64, 3), np.uint8)
    avatar[16:48, 16:48] = 200
    sink = RecordingSink(tmp_path / "r.mp4", fps=25, settle_frames=3)
    for rgb in (placeholder, avatar, avatar, placeholder, avatar):  # a placeholder racing the first render, twice
        sink(rgb)
    sink.close()
    frames = mp4_frames(tmp_path / "r.mp4")
    assert [f.shape for f in frames] == [(64, 64, 3)] * 4  # the early placeholder dropped, the late one scaled
    assert sink.frames == 4


def test_a_short_recording_is_still_written_and_an_empty_one_not_at_all(tmp_path: Path) -> None:
    short = RecordingSink(tmp_path / "short.mp4", fps=25)
    short(np.zeros((16, 16, 3), np.uint8))
    short.close()
    assert len(mp4_frames(tmp_path / "short.mp4")) == 1
    RecordingSink(tmp_path / "empty.mp4", fps=25).close()
    assert not (tmp_path / "empty.mp4").exists()


# ------------------------------------------------------------------------------------------- with the gateway


@asynccontextmanager
async def serving_gateway(avatar_app: Any, **overrides: Any) -> AsyncIterator[Any]:
    """Yield a real gateway (signaling.gateway.RunningGateway) rendering through the Serve app, in the running loop."""
    from signaling.config import GatewayConfig
    from signaling.gateway import start_gateway
    from signaling.renderer import ServeRenderer

    settings = {"port": 0, "placeholder_size_px": PLACEHOLDER_PX, "app_name": avatar_app.app_name, **overrides}
    running = await start_gateway(GatewayConfig(**settings), ServeRenderer(avatar_app.app_name), SECRET)
    try:
        yield running
    finally:
        await running.stop()  # stopping twice is harmless: a test may stop it early


@asynccontextmanager
async def running_gateway(avatar_app: Any, **overrides: Any) -> AsyncIterator[str]:
    """Yield the URL of a real gateway rendering through the Serve app, in the running loop."""
    async with serving_gateway(avatar_app, **overrides) as running:
        yield running.url


# Live tests wait for what they need (frames, a reconnection) rather than for a clip to play out: on a
# loaded machine a fixed clip can end before the first frame arrives. The bound only stops a hung test.
EVENT_TIMEOUT_S = 120.0


async def until(condition: Callable[[], bool], what: str, timeout_s: float = EVENT_TIMEOUT_S) -> None:
    """Return once `condition()` holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)


class Looped:
    """The clip's coefficients over and over, renumbered and retimed as one continuous stream; counts what it gave."""

    def __init__(self, coefficients: list[Coefficients], step_ms: int = 1000 // 24) -> None:
        self.coefficients = coefficients
        self.step_ms = step_ms
        self.given = 0

    def __iter__(self) -> Iterator[Coefficients]:
        while True:
            seq = self.given
            self.given += 1  # counted once handed over: `given` is what the client has taken
            c = self.coefficients[seq % len(self.coefficients)]
            yield dataclasses.replace(c, seq=seq, timestamp_ms=seq * self.step_ms)


def token(role: str, room: str = ROOM, targets: tuple[str, ...] = (TARGET,), secret: bytes = SECRET) -> str:
    from signaling.auth import mint_token

    return mint_token(secret, "bob", room, role, targets)  # type: ignore[arg-type]


def clip_coefficients(tracks: Any, count: int) -> list[Coefficients]:
    """Return the first `count` Coefficients of the sample clip, as the edge would send them."""
    from edge.coefficients import coefficient_stream

    stream = coefficient_stream(tracks.frames)
    return [c for _, c in (next(stream) for _ in range(count))]


def mp4_frames(path: Path) -> list[npt.NDArray[np.uint8]]:
    import av

    with av.open(str(path)) as container:
        return [
            np.asarray(f.to_ndarray(format="rgb24"), np.uint8) for f in container.decode(container.streams.video[0])
        ]


def live(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.mark.slow
def test_the_sender_gets_its_self_view_and_round_trips(avatar_app: Any, sample_tracks: Any, tmp_path: Path) -> None:
    source = Looped(clip_coefficients(sample_tracks, 72))
    frames: list[npt.NDArray[np.uint8]] = []
    record = tmp_path / "self-view.mp4"

    def rendered() -> list[npt.NDArray[np.uint8]]:
        return [f for f in frames if f.shape[0] == avatar_app.output_size]

    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            client = SenderClient(url, token("send"), TARGET, fps=FPS, record=record, on_frame=frames.append)
            started = time.monotonic()
            running = asyncio.create_task(client.run(source, realtime=True))

            # A second of rendered video, round trips measured on it, and a ping answered (one a second).
            def enough() -> bool:
                now = client.stats
                return len(rendered()) >= 25 and now.round_trips > 0 and now.rtt_ms is not None

            await until(lambda: enough() or running.done(), "frames, round trips and a pong")
            client.stop()
            stats = await running
            elapsed = time.monotonic() - started
        media_s = (stats.frames_sent - 1) * source.step_ms / 1000
        assert elapsed >= media_s  # paced by the timestamps, not sent as fast as possible
        assert source.given - 1 <= stats.frames_sent <= source.given  # the last one may be cut by the stop
        assert stats.key_frames >= math.ceil(stats.frames_sent / 30)
        assert wire.DELTA_HEADER_SIZE < stats.bytes_per_frame < wire.PLAIN_SIZE
        assert stats.round_trips > 0 and stats.round_trip_ms_p50 is not None
        assert stats.rtt_ms is not None  # pings were answered
        assert stats.gateway_dropped.get("bad") == 0
        print(f"\nself-view: {stats}")

    live(scenario)
    assert len(rendered()) >= 25
    assert any(float(f.std()) > 1.0 for f in rendered())  # not a uniform grey placeholder
    recorded = mp4_frames(record)
    assert recorded and recorded[0].shape == (avatar_app.output_size, avatar_app.output_size, 3)
    assert len(recorded) >= len(rendered()) - 2  # the recording starts at the first rendered frame
    assert_marked_synthetic(record, TARGET)


def assert_marked_synthetic(path: Path, target: str) -> None:
    """Assert the MP4's own tags say it is a synthetic video and of whom (what any player or ffprobe shows)."""
    import av

    with av.open(str(path)) as video:
        tags = dict(video.metadata)
    assert tags.get("comment", "").startswith("SYNTHETIC VIDEO") and repr(target) in tags["comment"], tags
    assert tags.get("description") == f"synthetic=true; generator=headcast; target={target}", tags


@pytest.mark.slow
def test_a_viewer_watches_the_room(avatar_app: Any, sample_tracks: Any, tmp_path: Path) -> None:
    source = Looped(clip_coefficients(sample_tracks, 96))
    record = tmp_path / "viewer.mp4"

    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            sender = SenderClient(url, token("send"), TARGET, fps=FPS)
            sending = asyncio.create_task(sender.run(source, realtime=True))
            await until(lambda: sender.stats.connected, "the sender to connect")
            viewer = ViewerClient(url, token("view"), record=record)
            watching = asyncio.create_task(viewer.run())
            await until(lambda: viewer.stats.frames_received >= 25 or watching.done(), "a second of video")
            viewer.stop()
            stats = await watching
            # --duration's viewer: it leaves on its own, whatever it saw by then.
            briefly = ViewerClient(url, token("view"))
            await briefly.run(duration_s=0.5)
            sender.stop()
            await sending
        assert stats.frames_received >= 25
        assert viewer.ended_because == "stopped"
        assert briefly.ended_because == "duration reached"
        assert viewer.target == TARGET  # the gateway's answer says whose avatar the room shows

    live(scenario)
    assert_marked_synthetic(record, TARGET)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("role", "room", "secret", "status", "says"),
    [
        ("send", "another-room", SECRET, 403, "this token is for room 'another-room'"),
        ("view", ROOM, SECRET, 403, "this token is for the view role"),
        ("send", ROOM, b"f" * 32, 401, "signature is not valid"),
    ],
)
def test_a_refused_token_raises_the_gateways_message(
    avatar_app: Any, role: str, room: str, secret: bytes, status: int, says: str
) -> None:
    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            client = SenderClient(url, token(role, room, secret=secret), TARGET, room=ROOM)
            with pytest.raises(EdgeError, match=says) as refused:
                await client.run([face(0)])
            assert refused.value.status == status

    live(scenario)


@pytest.mark.slow
def test_an_unknown_target_is_refused_and_not_retried(avatar_app: Any) -> None:
    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            client = SenderClient(url, token("send", targets=("*",)), "nobody")
            with pytest.raises(EdgeError, match="no target 'nobody' is enrolled") as refused:
                await client.run([face(0)])
            assert (refused.value.status, refused.value.code) == (404, "unknown_target")

    live(scenario)


@pytest.mark.slow
def test_after_a_drop_the_client_reconnects_key_frame_first(
    avatar_app: Any, sample_tracks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Looped(clip_coefficients(sample_tracks, 144))
    sent: list[tuple[int, bytes]] = []  # (session number, packet) of every packet sent
    send = CoefficientUplink.send

    def spy(self: CoefficientUplink, c: Coefficients, channel: Any, now: float) -> bytes | None:
        packet = send(self, c, channel, now)
        if packet is not None:
            sent.append((self.metrics.connections, packet))
        return packet

    monkeypatch.setattr(CoefficientUplink, "send", spy)
    events: list[str] = []
    frame_times: list[float] = []

    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            client = SenderClient(url, token("send"), TARGET, fps=FPS, on_event=events.append,
                                  on_frame=lambda _rgb: frame_times.append(time.monotonic()))  # fmt: skip
            running = asyncio.create_task(client.run(source, realtime=True))
            await until(lambda: len(frame_times) >= 25 or running.done(), "video before the drop")
            pc = client.peer_connection
            assert pc is not None
            await pc.close()  # what a dead link looks like to the client: the connection is gone
            await until(lambda: client.stats.connections == 2 or running.done(), "the reconnection")
            reconnected = len(frame_times)
            await until(lambda: len(frame_times) >= reconnected + 25 or running.done(), "video after it")
            client.stop()
            stats = await running
        assert stats.connections == 2, events
        assert any(e.startswith("reconnected") for e in events), events
        assert stats.dropped_offline > 0  # frames produced while disconnected were counted, not queued
        accounted = stats.frames_sent + stats.dropped_offline
        assert source.given - 1 <= accounted <= source.given  # every frame sent or counted (the stop may cut one)
        after = [packet for session, packet in sent if session == 2]
        assert after and is_key(after[0])
        assert stats.gateway_dropped.get("bad") == 0  # the new session decoded every packet from the first
        print(f"\nreconnect: {events}; {stats}")

    live(scenario)


def test_the_default_patience_outlasts_a_gateway_restart() -> None:
    """`headcast serve` restarted on this 2-core machine answered again after 19-24 s (it starts Ray anew);
    the edge's offers after a drop must keep coming for well over that."""
    config = EdgeConfig.load().client
    delay, waited = config.reconnect_first_delay_s, 0.0
    for _ in range(config.reconnect_attempts):
        waited += delay
        delay = min(config.reconnect_max_delay_s, max(delay * 2, 0.1))
    assert waited >= 2 * 24


@pytest.mark.slow
def test_a_restarted_gateway_resumes_the_session(avatar_app: Any, sample_tracks: Any) -> None:
    """The gateway goes away and comes back on its address; the edge keeps offering past the six offers
    it once gave up after, and the session goes on in the new gateway."""
    source = Looped(clip_coefficients(sample_tracks, 144))
    events: list[str] = []
    frame_times: list[float] = []
    resumed = 0

    async def scenario() -> None:
        nonlocal resumed
        async with serving_gateway(avatar_app) as first:
            patient = ClientConfig(reconnect_first_delay_s=0.1, reconnect_max_delay_s=0.3)
            client = SenderClient(first.url, token("send"), TARGET, fps=FPS, on_event=events.append, config=patient,
                                  on_frame=lambda _rgb: frame_times.append(time.monotonic()))  # fmt: skip
            running = asyncio.create_task(client.run(source, realtime=True))
            await until(lambda: len(frame_times) >= 10 or running.done(), "video before the restart")
            await first.stop()
            await until(lambda: any("attempt 7 of" in e for e in events) or running.done(), "seven failed offers")
        async with serving_gateway(avatar_app, port=int(first.url.rsplit(":", 1)[1])):
            await until(lambda: client.stats.connections == 2 or running.done(), "the reconnection")
            resumed = client.stats.round_trips
            # Frames rendered by the new gateway, each answered with its "rendered" message.
            await until(lambda: client.stats.round_trips >= resumed + 5 or running.done(), "renders after it")
            client.stop()
            stats = await running
        assert stats.connections == 2, events
        assert stats.round_trips >= resumed + 5, events

    live(scenario)


@pytest.mark.slow
def test_a_source_ending_while_the_link_is_down_fails_the_session(avatar_app: Any, sample_tracks: Any) -> None:
    """A clip that plays out while the edge is still reconnecting was not delivered: run() raises, so the
    command exits non-zero instead of reporting a session that never recovered as a success."""
    clip = clip_coefficients(sample_tracks, 72)
    lost = asyncio.Event()
    events: list[str] = []

    async def source() -> AsyncIterator[Coefficients]:
        for seq in itertools.count():
            if lost.is_set() and seq % len(clip) == 0:
                return  # the clip's end comes while the gateway is gone
            yield dataclasses.replace(clip[seq % len(clip)], seq=seq, timestamp_ms=seq * 40)

    def event(line: str) -> None:
        events.append(line)
        if line.startswith("connection lost"):
            lost.set()

    async def scenario() -> None:
        async with serving_gateway(avatar_app) as running:
            client = SenderClient(running.url, token("send"), TARGET, fps=FPS, on_event=event)
            task = asyncio.create_task(client.run(source(), realtime=True))
            await until(lambda: client.stats.gateway_rendered > 0 or task.done(), "a rendered frame")
            await running.stop()  # for good
            with pytest.raises(EdgeError, match="the session never recovered") as failed:
                await task
        assert "frames were not sent" in str(failed.value), events

    live(scenario)


@pytest.mark.slow
def test_a_silent_gateway_counts_as_a_drop(
    avatar_app: Any, sample_tracks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signaling.sessions import SenderSession

    source = Looped(clip_coefficients(sample_tracks, 120))
    send = SenderSession.send
    first: list[str] = []

    def mute_the_first_session(self: SenderSession, message: dict[str, Any]) -> None:
        # A link that silently stopped carrying anything back: no pong, no stats, no rendered messages.
        if not first:
            first.append(self.session_id)
        if self.session_id != first[0]:
            send(self, message)

    monkeypatch.setattr(SenderSession, "send", mute_the_first_session)
    events: list[str] = []

    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            config = ClientConfig(silence_timeout_s=1.5)
            client = SenderClient(url, token("send"), TARGET, fps=FPS, on_event=events.append, config=config)
            running = asyncio.create_task(client.run(source, realtime=True))
            # The first session hears nothing back; the second one, opened after the silence, is answered.
            await until(lambda: client.stats.round_trips > 0 or running.done(), "an answered second session")
            client.stop()
            stats = await running
        assert any("nothing heard from the gateway" in e for e in events), events
        assert stats.connections == 2, events
        assert stats.round_trips > 0  # the second session answers

    live(scenario)


def looped_clip(path: Path, times: int) -> Path:
    """Write the sample clip `times` over, one after the other, to `path` (its packets copied, not re-encoded)."""
    import av

    from base import assets

    with av.open(str(assets.resolve("sample_clip"))) as clip, av.open(str(path), "w") as out:
        source = clip.streams.video[0]
        stream = out.add_stream_from_template(source)
        offset = 0
        for _ in range(times):
            clip.seek(0)
            last = 0
            for packet in clip.demux(source):
                if packet.dts is None or packet.pts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                last = packet.pts
                packet.stream = stream
                out.mux(packet)
            offset = last + 1
    return path


async def run_edge_cli(
    url: str, record: Path, *more: str, interrupt_when: Callable[[], bool] | None = None, clip: Path | None = None
) -> tuple[int, str]:
    """Return (exit code, output) of `headcast edge` on `clip` (the sample clip by default), run as a child
    process; with `interrupt_when`, Ctrl-C (SIGINT) is sent to it once that holds."""
    from base import assets

    clip = clip or assets.resolve("sample_clip")
    command = [sys.executable, "-c", AS_FROM_A_TERMINAL, "-m", "headcast", "edge", "--source", str(clip),
               "--server", url, "--token", token("send"), "--target", TARGET, "--record", str(record),
               *more]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    signals = ""
    if interrupt_when is not None:
        await until(lambda: interrupt_when() or process.returncode is not None, "the moment to interrupt")
        if process.returncode is None:
            signals = _signal_state(process.pid)
            process.send_signal(signal.SIGINT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=EVENT_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace") + signals


# The child starts as from a terminal, where Ctrl-C is heard: SIGINT at its default and not blocked, whatever
# signal state the test runner's threads (Ray, gRPC) would hand down; then it becomes the edge command itself.
AS_FROM_A_TERMINAL = (
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def _signal_state(pid: int) -> str:
    """Return the child's signal masks as the kernel reports them: why an interrupt went unheard, if it does."""
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
        return "\nsignals at the interrupt: " + " ".join(
            line.replace("\t", "") for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt"))
        )
    return ""


def rendered_in(running: Any, room: str = ROOM) -> int:
    """Return how many frames the gateway has rendered for `room`'s sender (0 before the room opens)."""
    opened = running.gateway.rooms.get(room)
    return int(opened.sender.counters.rendered) if opened is not None else 0


@pytest.mark.slow
def test_the_edge_command_records_the_avatar(avatar_app: Any, tmp_path: Path) -> None:
    record = tmp_path / "avatar.mp4"

    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            code, output = await run_edge_cli(url, record)  # the whole 11 s clip, played at its own speed
        assert code == 0, output
        assert "recording" in output

    live(scenario)
    frames = mp4_frames(record)
    assert len(frames) >= 25, f"{len(frames)} frames"  # a second of the clip's 11, whatever start-up took
    assert frames[0].shape == (avatar_app.output_size, avatar_app.output_size, 3)


@pytest.mark.slow
def test_the_edge_command_ends_after_its_duration(avatar_app: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_gateway(avatar_app) as url:
            code, output = await run_edge_cli(url, tmp_path / "short.mp4", "--duration", "2")
        assert code == 0, output
        sent = re.search(r"sent\s+(\d+) packets", output)
        assert sent is not None and int(sent.group(1)) < 200, output  # the clip has 269 faces: it stopped early

    live(scenario)


@pytest.mark.slow
def test_ctrl_c_ends_the_edge_command_with_the_recording_finished(avatar_app: Any, tmp_path: Path) -> None:
    record = tmp_path / "interrupted.mp4"

    # 66 s of video: the interrupt comes while it plays however slowly this machine starts the edge and renders.
    clip = looped_clip(tmp_path / "looped.avi", 6)

    async def scenario() -> None:
        async with serving_gateway(avatar_app) as running:
            # Interrupted once its avatar is on the way, whatever the start-up (imports, MediaPipe, the offer) took.
            code, output = await run_edge_cli(running.url, record, clip=clip,
                                              interrupt_when=lambda: rendered_in(running) >= 3)  # fmt: skip
        assert code == 130, output
        assert "Traceback" not in output

    live(scenario)
    assert len(mp4_frames(record)) > 0  # the file is complete (its index written), not a truncated stream


@dataclasses.dataclass
class Namespace:
    """A network namespace joined to this one by a veth pair: `host` here, `edge` in the namespace."""

    name: str
    link: str  # the host end: down cuts the namespace off
    host: str
    edge: str

    def cut(self, down: bool) -> None:
        subprocess.run(["ip", "link", "set", self.link, "down" if down else "up"], check=True)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    """A namespace for the edge (needs CAP_NET_ADMIN and iproute2, as root in a container has)."""
    tag = f"hc{os.getpid() % 100000}"
    subnet = f"10.213.{os.getpid() % 250}"
    net = Namespace(tag, f"{tag}h", f"{subnet}.1", f"{subnet}.2")
    setup = [
        ["ip", "netns", "add", net.name],
        ["ip", "link", "add", net.link, "type", "veth", "peer", "name", f"{tag}e"],
        ["ip", "link", "set", f"{tag}e", "netns", net.name],
        ["ip", "addr", "add", f"{net.host}/30", "dev", net.link],
        ["ip", "link", "set", net.link, "up"],
        ["ip", "netns", "exec", net.name, "ip", "addr", "add", f"{net.edge}/30", "dev", f"{tag}e"],
        ["ip", "netns", "exec", net.name, "ip", "link", "set", f"{tag}e", "up"],
        ["ip", "netns", "exec", net.name, "ip", "link", "set", "lo", "up"],
    ]
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    first = subprocess.run(setup[0], capture_output=True, text=True, check=False)
    if first.returncode != 0:
        pytest.skip(f"cannot create a network namespace here (needs CAP_NET_ADMIN): {first.stderr.strip()}")
    try:
        for command in setup[1:]:
            subprocess.run(command, check=True, capture_output=True)
        yield net
    finally:
        subprocess.run(["ip", "link", "del", net.link], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", net.name], check=False, capture_output=True)


CUT_S = 5.0  # the fault: how long the sender's network is gone


@pytest.mark.slow
def test_the_session_survives_the_senders_network_cut_for_five_seconds(
    avatar_app: Any, tmp_path: Path, namespace: Namespace
) -> None:
    """`headcast edge` in its own network namespace; its only link goes down for 5 s mid-session. The
    command keeps going (reconnecting if the gateway gave its room up meanwhile) and frames render again."""
    clip = looped_clip(tmp_path / "looped.avi", 6)  # 66 s: longer than the cut and the recovery on any machine

    async def scenario() -> tuple[int, str]:
        async with serving_gateway(avatar_app, host=namespace.host) as running:
            rendered = running.gateway.metrics.frames_rendered
            command = ["ip", "netns", "exec", namespace.name, sys.executable, "-c", AS_FROM_A_TERMINAL, "-m",
                       "headcast", "edge", "--source", str(clip), "--server", running.url, "--token", token("send"),
                       "--target", TARGET]  # fmt: skip
            edge = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            await until(lambda: rendered_in(running) >= 10 or edge.returncode is not None, "frames before the cut")
            namespace.cut(down=True)
            await asyncio.sleep(CUT_S)
            namespace.cut(down=False)
            after_cut = sample(rendered)
            await until(lambda: sample(rendered) >= after_cut + 10 or edge.returncode is not None,
                        "frames after the cut")  # fmt: skip
            assert edge.returncode is None, "the edge gave up"
            # The link's return flushes what SCTP held back at once: whatever the rate limit drops of it breaks
            # the delta chain, and the gateway asks for the key frame that mends it.
            metrics = running.gateway.metrics
            broken = sample(metrics.packets_dropped.labels("rate")) + sample(metrics.packets_dropped.labels("bad"))
            assert broken == 0 or sample(metrics.key_frame_requests) >= 1
            print(f"after the cut: {broken:.0f} packets dropped (rate, bad), "
                  f"{sample(metrics.key_frame_requests):.0f} key frame(s) asked for")  # fmt: skip
            edge.send_signal(signal.SIGINT)
            output, _ = await asyncio.wait_for(edge.communicate(), timeout=EVENT_TIMEOUT_S)
            assert edge.returncode is not None
            return edge.returncode, output.decode(errors="replace")

    code, output = asyncio.run(scenario())
    print(output[-2000:])
    assert code == 130, output
    assert "Traceback" not in output


def sample(counter: Any) -> float:
    """Return a prometheus_client counter's value, as /metrics shows it."""
    return float(next(iter(counter.collect())).samples[0].value)
