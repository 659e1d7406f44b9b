"""A sender's packets (newest wins, stale/superseded/bad/rate counted) and the avatar track's pacing.

The session is driven directly with real wire packets; its render loop is not started (no channel is
attached), so these run without the Serve app. Rendering is covered in test_live_sessions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

import wire
from face3d.blendshapes import BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from face3d.coefficients import Coefficients
from inference.protocol import RenderRequest, RenderResult, TargetState
from signaling.avatar_track import VIDEO_CLOCK_RATE, AvatarTrack
from signaling.config import GatewayConfig, LimitsConfig
from signaling.metrics import GatewayMetrics
from signaling.renderer import Renderer, ServeRenderer
from signaling.sessions import PacketRateLimit, SenderSession, peek_seq, seq_newer

JAW_OPEN = BLENDSHAPE_INDEX["jawOpen"]


def coefficients(seq: int, jaw: float = 0.0) -> Coefficients:
    """Return a frontal face at frame `seq` (40 ms apart) with jawOpen = `jaw`."""
    blendshapes = np.zeros(NUM_BLENDSHAPES, np.float32)
    blendshapes[JAW_OPEN] = jaw
    return Coefficients(seq, 40 * seq, blendshapes, np.zeros(3, np.float32), np.zeros(2, np.float32), 0.01)


def session(
    config: GatewayConfig | None = None, renderer: Renderer | None = None
) -> tuple[SenderSession, GatewayMetrics]:
    """Return a sender session that is fed by hand (no channel, no render loop) and its metrics."""
    config = config or GatewayConfig()
    metrics = GatewayMetrics()
    track = AvatarTrack(25, 16, metrics)
    renderer = renderer or ServeRenderer("absent")
    return SenderSession("s", "woman", 25, None, config, renderer, metrics, track), metrics


def test_sequence_numbers_compare_across_the_wrap() -> None:
    assert seq_newer(5, 4) and not seq_newer(4, 5) and not seq_newer(4, 4)
    assert seq_newer(0, 2**32 - 1) and not seq_newer(2**32 - 1, 0)
    packet = wire.encode_plain(coefficients(123456))
    assert peek_seq(packet) == 123456 and peek_seq(packet[:5]) is None and peek_seq(b"\x07" + packet[1:]) is None


def test_newest_packet_wins_and_every_drop_is_counted_by_reason() -> None:
    sender, metrics = session()
    stream = wire.encode_stream([coefficients(seq, jaw=seq / 10) for seq in range(10)])
    assert len(stream[1]) < wire.PLAIN_SIZE  # a delta: it decodes only against frame 0
    sender.receive(stream[0])
    sender.receive(stream[1])  # replaces frame 0 before it was rendered
    sender.receive(stream[0])  # older than the newest: dropped before it could reset the decoder
    sender.receive(stream[3])  # its reference, frame 2, never arrived
    sender.receive(b"\x07garbage")  # another wire version
    sender.receive(stream[2])
    sender.receive("not json")
    sender.receive(b"\x01" * 300)  # over max_packet_bytes
    counters = sender.counters
    assert counters.received == 8
    assert counters.dropped == {"stale": 1, "superseded": 2, "bad": 4, "rate": 0}
    pending = sender._pending
    assert pending is not None and pending[0].coefficients.seq == 2  # the newest decodable frame
    assert pending[0].coefficients.blendshapes[JAW_OPEN] == pytest.approx(0.2, abs=wire.BLENDSHAPE_STEP)
    assert pending[0].pose is not None  # the source's pose, relative to its running mean
    text = metrics.exposition().decode()
    assert 'headcast_gateway_packets_dropped_total{reason="bad"} 4.0' in text
    assert "headcast_gateway_packets_received_total 8.0" in text


def test_a_flood_is_cut_to_the_rate_limit() -> None:
    rate = PacketRateLimit(rate=100.0, burst=10)
    started = time.monotonic()
    allowed = sum(rate.allow() for _ in range(1000))
    elapsed = time.monotonic() - started
    # The burst, plus what the rate refills while the loop runs (a few ms).
    assert 10 <= allowed <= 10 + 100 * elapsed + 1
    sender, _ = session(GatewayConfig(limits=LimitsConfig(packet_burst=5, max_packets_per_s=1.0)))
    for seq in range(20):
        sender.receive(wire.encode_plain(coefficients(seq)))
    assert sender.counters.dropped["rate"] == 15
    assert sender.counters.dropped["superseded"] == 4  # the five allowed replace one another


class VirtualTime:
    """A clock that moves only when the track sleeps (or the test says so): pacing checked without wall time."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_track_paces_frames_at_its_fps_with_90khz_timestamps() -> None:
    async def main() -> None:
        time_ = VirtualTime()
        track = AvatarTrack(fps=50, placeholder_size_px=32, clock=time_.clock, sleep=time_.sleep)
        first = await track.recv()
        assert first.width == 32 and np.all(first.to_ndarray(format="rgb24") == 128)  # the grey placeholder
        face = np.zeros((48, 48, 3), np.uint8)
        face[..., 0] = 255
        track.show(face)
        frames = [await track.recv() for _ in range(10)]
        assert [f.pts for f in frames] == [k * VIDEO_CLOCK_RATE // 50 for k in range(1, 11)]
        assert frames[0].time_base == pytest.approx(1 / VIDEO_CLOCK_RATE)
        assert time_.now == pytest.approx(10 / 50)  # each frame waited for its tick
        assert frames[-1].width == 48 and frames[-1].to_ndarray(format="rgb24")[0, 0, 0] > 200
        # A consumer that falls behind is not handed a burst of catch-up frames: timestamps jump instead.
        time_.now += 0.2
        late = [await track.recv() for _ in range(2)]
        pts = [frame.pts or 0 for frame in (frames[-1], *late)]
        assert pts[1] - pts[0] >= 9 * VIDEO_CLOCK_RATE // 50
        assert pts[2] - pts[1] == VIDEO_CLOCK_RATE // 50
        track.stop()
        with pytest.raises(MediaStreamError):
            await track.recv()

    asyncio.run(main())


def test_the_track_waits_for_the_wall_clock() -> None:
    async def main() -> None:
        track = AvatarTrack(fps=50, placeholder_size_px=32)
        await track.recv()
        started = time.monotonic()
        for _ in range(10):
            await track.recv()
        # Never early (a loaded machine may make it late: that is the catch-up case above).
        assert time.monotonic() - started >= 9 / 50
        track.stop()

    asyncio.run(main())


def test_one_packet_far_ahead_cannot_capture_the_session_and_a_real_jump_resumes() -> None:
    sender, _ = session()
    sender.receive(wire.encode_plain(coefficients(100)))
    far = dataclasses.replace(coefficients(100), seq=100 + 2**31 - 10)  # well-formed, "newer" across the wrap
    sender.receive(wire.encode_plain(far))
    for seq in range(101, 106):  # the real sender goes on: every packet still counts
        sender.receive(wire.encode_plain(coefficients(seq)))
    pending = sender._pending
    assert pending is not None and pending[0].coefficients.seq == 105
    assert sender.counters.dropped["bad"] == 1 and sender.counters.dropped["stale"] == 0
    # A sender whose numbering really jumped (a restarted counter) resumes from its second packet.
    jumped = [dataclasses.replace(coefficients(1), seq=seq) for seq in (50_000, 50_001)]
    sender.receive(wire.encode_plain(jumped[0]))
    sender.receive(wire.encode_plain(jumped[1]))
    pending = sender._pending
    assert pending is not None and pending[0].coefficients.seq == 50_001 and sender.counters.dropped["bad"] == 2
    sender.receive(wire.encode_plain(jumped[0]))  # and newest-wins holds from there
    assert sender.counters.dropped["stale"] == 1


def test_a_jump_within_the_window_is_a_network_cut_not_an_attack() -> None:
    sender, _ = session(GatewayConfig(limits=LimitsConfig(max_seq_jump=50)))
    sender.receive(wire.encode_plain(coefficients(10)))
    sender.receive(wire.encode_plain(coefficients(60)))  # 50 frames lost: still within the window
    sender.receive(wire.encode_plain(coefficients(200)))  # 140 ahead: dropped and explained
    pending = sender._pending
    assert pending is not None and pending[0].coefficients.seq == 60
    assert sender.counters.dropped == {"stale": 0, "superseded": 1, "bad": 1, "rate": 0}


def test_a_session_stops_even_when_a_render_ignores_its_cancellation(caplog: pytest.LogCaptureFixture) -> None:
    # A Serve call that does not answer cancellation (a replica mid-frame) must not hold the room open.
    sender, _ = session()
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    async def scenario() -> None:
        task = asyncio.create_task(stubborn(), name="render-s")
        sender._tasks = [task]
        await asyncio.sleep(0)
        left = await asyncio.wait_for(sender.stop(grace_s=0.1), timeout=30)  # the safety net, not the bound
        assert left == {task} and not task.done(), "left running, not awaited, handed back to be kept"
        released.set()
        await task

    with caplog.at_level("WARNING", logger="signaling"):
        asyncio.run(scenario())
    assert any("render-s was still running" in r.getMessage() for r in caplog.records)


def test_a_render_that_completes_as_the_session_stops_still_ends_its_loop() -> None:
    # The frame comes back in the same turn of the loop as the cancellation: the loop must still end, or
    # every session that closes mid-frame leaves a render loop waiting for packets that never come.
    answers: list[asyncio.Future[RenderResult]] = []

    class OneFrameAtATime:
        async def render(self, request: RenderRequest) -> RenderResult:
            answers.append(asyncio.get_running_loop().create_future())
            return await answers[-1]

        async def target_state(self, target_id: str) -> TargetState:
            return "enrolled"

        async def healthy(self) -> bool:
            return True

    async def scenario() -> None:
        sender, _ = session(renderer=OneFrameAtATime())
        sender.send = lambda message: None  # type: ignore[method-assign]  # no channel to report to
        loop = asyncio.create_task(sender._render_loop(), name="render-s")
        sender._tasks = [loop]
        sender.receive(wire.encode_plain(coefficients(0)))
        while not answers:
            await asyncio.sleep(0)
        face = np.zeros((16, 16, 3), np.uint8)
        answers[0].set_result(RenderResult(seq=0, frame=face, face=face, nmfc=None))
        left = await sender.stop(grace_s=1.0)
        assert left == set() and loop.done(), "the render loop outlived its session"

    asyncio.run(scenario())


def test_a_broken_delta_chain_asks_the_sender_for_a_key_frame_once() -> None:
    sender, metrics = session()
    asked: list[dict[str, Any]] = []
    sender.send = asked.append  # type: ignore[method-assign,assignment]  # what would go to the sender's channel
    stream = wire.encode_stream([coefficients(seq) for seq in range(40)], key_interval=30)
    sender.receive(stream[0])
    for packet in stream[2:5]:  # frame 1 was lost: every delta after it references a frame never decoded
        sender.receive(packet)
    assert [m for m in asked if m["type"] == "key_frame"] == [{"type": "key_frame"}]  # once per break
    assert sender.counters.dropped["bad"] == 3
    sender.receive(wire.encode_plain(coefficients(5)))  # the key frame asked for: the chain holds again
    encoder = wire.CompactEncoder()
    chain = [encoder.encode(coefficients(seq)) for seq in range(6, 9)]  # key 6, deltas 7 and 8 against it
    sender.receive(chain[0])
    sender.receive(chain[2])  # 7 lost: a new break, a new request
    assert sum(m["type"] == "key_frame" for m in asked) == 2
    assert "headcast_gateway_key_frame_requests_total 2.0" in metrics.exposition().decode()


def test_a_packet_dropped_for_the_rate_asks_for_a_key_frame() -> None:
    sender, _ = session(GatewayConfig(limits=LimitsConfig(max_packets_per_s=1, packet_burst=2)))
    asked: list[dict[str, Any]] = []
    sender.send = asked.append  # type: ignore[method-assign,assignment]
    for packet in wire.encode_stream([coefficients(seq) for seq in range(5)]):  # a backlog flushed at once
        sender.receive(packet)
    assert sender.counters.dropped["rate"] == 3
    assert [m for m in asked if m["type"] == "key_frame"] == [{"type": "key_frame"}]
