"""Rooms and the sender's session: coefficient packets in, paced render calls out (docs/live-protocol.md).

A `SenderSession` holds everything that makes render requests stateless for the Serve app: the wire
decoder of its stream, the source's running pose (`SourcePoseTracker`), the last rendered coefficient
frames and the last generated faces. Its render loop starts a render only when the previous one is done
and a tick of the session's frame rate is due, always with the newest packet; packets that arrive in
between replace each other (`superseded`), older ones are dropped on arrival (`stale`). A replica that
dies or times out is retried with backoff; the session never ends because of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.contrib.media import MediaRelay

import wire
from face3d.retarget import SourcePoseTracker
from inference.protocol import DriveFrame, RenderRequest, RenderResult
from signaling.avatar_track import AvatarTrack
from signaling.config import GatewayConfig
from signaling.errors import GatewayError, RendererUnavailableError
from signaling.metrics import DROP_REASONS, GatewayMetrics
from signaling.renderer import Renderer
from wire import WireError

log = logging.getLogger(__name__)

_SEQ = struct.Struct(">I")  # the u32 sequence number at byte 2 of both wire forms (wire/codec.py's header)
_SEQ_OFFSET = 2
_HALF_SEQ_RANGE = 2**31
STOP_GRACE_S = 2.0  # how long a stopping session waits for its cancelled tasks


def seq_newer(seq: int, than: int) -> bool:
    """Return True when wire sequence number `seq` comes after `than` (serial arithmetic: seq wraps at 2**32)."""
    return 0 < (seq - than) % 2**32 < _HALF_SEQ_RANGE


def seq_lead(seq: int, than: int) -> int:
    """Return how far `seq` comes after `than` across the wrap: negative when it comes before, in (−2**31, 2**31]."""
    lead = (seq - than) % 2**32
    return lead - 2**32 if lead > _HALF_SEQ_RANGE else lead


def peek_seq(packet: bytes) -> int | None:
    """Return the sequence number in a wire packet's header, None when it has no header of this wire version."""
    if len(packet) < _SEQ_OFFSET + _SEQ.size or packet[0] != wire.WIRE_VERSION:
        return None
    return int(_SEQ.unpack_from(packet, _SEQ_OFFSET)[0])


class PacketRateLimit:
    """A token bucket: `rate` messages a second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def allow(self) -> bool:
        """Return True when one more message fits the rate (and take its token)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class SessionCounters:
    """What happened to a sender's messages; the `stats` message reports them."""

    received: int = 0
    rendered: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


@dataclass(eq=False)
class Peer:
    """One peer connection of a room: the sender's or a viewer's."""

    session_id: str
    role: Literal["send", "view"]
    room: str
    token_id: str
    pc: RTCPeerConnection
    video_bytes_sent: int = 0  # as last counted in the metrics
    started_at: float = field(default_factory=time.monotonic)
    # Why the session ends, from the moment its closing starts: a shutdown racing it keeps the first reason.
    ending: str | None = None
    events: RTCDataChannel | None = None  # a viewer's "events" channel, when its offer carried one
    connect_deadline: asyncio.Task[None] | None = None  # waiting to close the peer if it does not connect in time


class SenderSession:
    """One sender's coefficient stream and the render loop that turns it into the room's video."""

    def __init__(
        self,
        session_id: str,
        target_id: str,
        fps: int,
        background: tuple[int, int, int] | None,
        config: GatewayConfig,
        renderer: Renderer,
        metrics: GatewayMetrics,
        track: AvatarTrack,
    ) -> None:
        self.session_id = session_id
        self.target_id = target_id
        self.fps = fps
        self.background = background
        self.config = config
        self.renderer = renderer
        self.metrics = metrics
        self.track = track
        self.counters = SessionCounters()
        self.viewers = 0  # kept current by the room, reported in stats
        self.decoder = wire.CompactDecoder()  # one per stream: compact deltas reference this stream's frames
        self.pose = SourcePoseTracker()
        # The window's earlier frames are the ones rendered before, so that they match `previous`.
        self._history: deque[DriveFrame] = deque(maxlen=config.window_frames - 1)
        self._previous: deque[npt.NDArray[np.uint8]] = deque(maxlen=config.previous_frames)
        self._newest_seq: int | None = None
        self._jumped_to: int | None = None  # a packet far ahead of the newest, dropped until the next continues it
        self._key_frame_requested = False  # asked for since the delta chain last broke, not received yet
        self._pending: tuple[DriveFrame, float] | None = None  # the newest packet not rendered yet, its arrival
        self._wake = asyncio.Event()
        self._limit = PacketRateLimit(config.limits.max_packets_per_s, config.limits.packet_burst)
        self._channel: RTCDataChannel | None = None
        self._last_error: dict[str, float] = {}
        self._failure_logged: dict[str, float] = {}  # render failures: when each code was last logged
        self._failures: Counter[str] = Counter()  # and how many of it since
        self._tasks: list[asyncio.Task[None]] = []
        self.last_message_at = time.monotonic()  # the silence watchdog closes a room whose sender went quiet

    # ------------------------------------------------------------------------------------------ the channel

    @property
    def channel_attached(self) -> bool:
        """Return True once the sender's "coeffs" channel is attached."""
        return self._channel is not None

    def attach(self, channel: RTCDataChannel) -> None:
        """Take `channel` ("coeffs") as this session's stream and start rendering and reporting."""
        self._channel = channel
        channel.on("message", self.receive)
        self._tasks = [
            asyncio.create_task(self._render_loop(), name=f"render-{self.session_id}"),
            asyncio.create_task(self._stats_loop(), name=f"stats-{self.session_id}"),
        ]
        for task in self._tasks:
            task.add_done_callback(log_failure)

    def receive(self, message: bytes | str) -> None:
        """Handle one data-channel message: a wire packet (newest wins) or a JSON ping."""
        size = len(message.encode() if isinstance(message, str) else message)
        self.last_message_at = time.monotonic()
        self.counters.received += 1
        self.metrics.packets_received.inc()
        self.metrics.bytes.labels("in", "coeffs").inc(size)
        if not self._limit.allow():
            self._drop("rate")
            self._error("rate_limited", f"over {self.config.limits.max_packets_per_s:g} messages a second: dropped")
            if isinstance(message, bytes):
                self._request_key_frame()  # the deltas after a dropped packet reference a frame never decoded
            return
        if size > self.config.limits.max_packet_bytes:
            self._drop("bad")
            self._error(
                "bad_packet", f"a {size}-byte message is over the {self.config.limits.max_packet_bytes}-byte limit"
            )
            return
        if isinstance(message, str):
            self._receive_text(message)
        else:
            self._receive_packet(bytes(message), time.monotonic())

    def _receive_text(self, message: str) -> None:
        try:
            data = json.loads(message)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("type") == "ping" and isinstance(data.get("t"), int | float):
            self.send({"type": "pong", "t": data["t"]})
            return
        self._drop("bad")
        self._error("bad_packet", 'text messages are {"type": "ping", "t": <ms>}; coefficients are binary')

    def _receive_packet(self, packet: bytes, arrived: float) -> None:
        # Staleness is judged on the header before decoding: decoding an old key frame would move the
        # decoder's reference back and make it refuse the newer deltas that follow.
        seq = peek_seq(packet)
        if seq is not None and self._newest_seq is not None and not self._in_window(seq):
            return
        try:
            coefficients = wire.decode(packet, self.decoder)
        except WireError as error:
            self._drop("bad")
            self._error("bad_packet", str(error))
            if isinstance(error, wire.MissingReferenceError):
                self._request_key_frame()
            return
        if packet[1] == wire.KIND_PLAIN:  # a key frame: the chain holds again
            self._key_frame_requested = False
        self._newest_seq = coefficients.seq
        frame = DriveFrame(coefficients, self.pose.update(coefficients))
        if self._pending is not None:
            self._drop("superseded")
        self._pending = (frame, arrived)
        self._wake.set()

    def _in_window(self, seq: int) -> bool:
        """Return whether packet `seq` may be decoded; count and explain it when not.

        Newest wins, within a bounded window: a packet at or before the newest is `stale`; one more
        than `limits.max_seq_jump` ahead is dropped as `bad` (one packet must not move "newest" so far
        that every later one looks stale), unless it continues from such a packet: a sender whose
        numbering really jumped (a counter reset, a long cut) resumes from its second packet.
        """
        assert self._newest_seq is not None
        limit = self.config.limits.max_seq_jump
        lead = seq_lead(seq, self._newest_seq)
        if 0 < lead <= limit:
            self._jumped_to = None
            return True
        if -limit <= lead <= 0:
            self._drop("stale")
            return False
        jumped, self._jumped_to = self._jumped_to, seq
        if jumped is not None and 0 < seq_lead(seq, jumped) <= limit:
            log.info("session %s: sequence numbers resumed at %d (newest was %d)", self.session_id, seq,
                        self._newest_seq)  # fmt: skip
            self._jumped_to = None
            return True
        self._drop("bad")
        self._error("bad_packet", f"sequence number {seq} is {lead:+d} from the newest, {self._newest_seq}, "
                    f"beyond ±{limit}: dropped unless the next packet continues from it")  # fmt: skip
        return False

    def _request_key_frame(self) -> None:
        """Ask the sender for a key frame, once per break of its delta chain (not once per undecodable delta):
        the chain resumes one round trip later instead of at the sender's next scheduled key frame."""
        if self._key_frame_requested:
            return
        self._key_frame_requested = True
        self.metrics.key_frame_requests.inc()
        self.send({"type": "key_frame"})

    def send(self, message: dict[str, Any]) -> None:
        """Send `message` as JSON to the sender, when its channel is open."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        text = json.dumps(message, separators=(",", ":"))
        channel.send(text)
        self.metrics.bytes.labels("out", "coeffs").inc(len(text.encode()))

    def _drop(self, reason: str) -> None:
        self.counters.dropped[reason] += 1
        self.metrics.packets_dropped.labels(reason).inc()

    def _error(self, code: str, message: str) -> None:
        """Tell the sender about a problem, at most once per `error_interval_s` per code."""
        now = time.monotonic()
        last = self._last_error.get(code)
        if last is not None and now - last < self.config.error_interval_s:
            return
        self._last_error[code] = now
        self.send({"type": "error", "code": code, "message": message})

    # ------------------------------------------------------------------------------------------- rendering

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        next_tick = loop.time()
        while True:
            await self._wake.wait()
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # packets arriving meanwhile supersede the pending one
            self._wake.clear()
            if self._pending is None:
                continue
            frame, arrived = self._pending
            self._pending = None
            started = loop.time()
            # Ticks missed while rendering are skipped: behind schedule, the next render starts right away.
            next_tick = max(next_tick + period, started)
            render_started = time.monotonic()
            queue_s = render_started - arrived
            self.metrics.stage_seconds.labels("queue").observe(queue_s)
            result = await self._render(frame)
            if result is None:
                continue
            render_s = time.monotonic() - render_started
            self._show(frame, result, queue_s * 1000, render_s * 1000)

    def _request(self, frame: DriveFrame) -> RenderRequest:
        previous = np.stack(list(self._previous)) if self._previous else None
        return RenderRequest(
            target_id=self.target_id,
            session_id=self.session_id,
            frames=(*self._history, frame),
            previous=previous,
            background=self.background,
        )

    async def _render(self, frame: DriveFrame) -> RenderResult | None:
        """Return the rendered frame, retrying a dead or slow replica; None (counted, reported) when it fails."""
        request = self._request(frame)
        retries = self.config.render_retries
        for attempt in range(retries + 1):
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that arrives as
                # the render completes, and a stopped session's loop would then wait for packets forever.
                async with asyncio.timeout(self.config.render_timeout_s):
                    return await self.renderer.render(request)
            except TimeoutError:
                failure: GatewayError = RendererUnavailableError(
                    f"rendering frame {request.seq} took over {self.config.render_timeout_s:g} s"
                )
            except RendererUnavailableError as error:
                failure = error
            except GatewayError as error:  # the app refused this request: retrying would not help
                self._render_failed(error, error.message)
                return None
            if attempt < retries:
                log.info("session %s: %s; retrying (attempt %d of %d)", self.session_id, failure, attempt + 2,
                         retries + 1)  # fmt: skip
                self.metrics.render_retries.inc()
                await asyncio.sleep(self.config.retry_backoff_s * 2**attempt)
        self._render_failed(failure, f"{failure.message}; frames resume when a replica is back")
        return None

    def _render_failed(self, error: GatewayError, message: str) -> None:
        """Count a frame that could not be rendered, log it and tell the sender (each at most once per
        `error_interval_s` per code: a Serve app that is down fails every frame)."""
        self.metrics.render_failures.labels(error.code).inc()
        self._failures[error.code] += 1
        now = time.monotonic()
        last = self._failure_logged.get(error.code)
        if last is None or now - last >= self.config.error_interval_s:
            more = self._failures[error.code] - 1
            since = f" ({more} more since the last report)" if last is not None and more else ""
            log.warning("session %s: render failed (%s): %s%s", self.session_id, error.code, error.message, since)
            self._failure_logged[error.code] = now
            self._failures[error.code] = 0
        self._error(error.code, message)

    def _show(self, frame: DriveFrame, result: RenderResult, queue_ms: float, render_ms: float) -> None:
        self.track.show(result.frame)
        self._history.append(frame)
        self._previous.append(result.face)
        self.counters.rendered += 1
        self.metrics.frames_rendered.inc()
        self.metrics.stage_seconds.labels("render").observe(render_ms / 1000)
        for stage in ("nmfc", "warp", "generator", "composite"):
            if stage in result.timings_ms:
                self.metrics.stage_seconds.labels(stage).observe(result.timings_ms[stage] / 1000)
        self.send(
            {
                "type": "rendered",
                "seq": result.seq,
                "replica": result.replica,
                "ms": {"queue": round(queue_ms, 2), "render": round(render_ms, 2)},
            }
        )

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval_s)
            c = self.counters
            self.send(
                {
                    "type": "stats",
                    "received": c.received,
                    "rendered": c.rendered,
                    "dropped": dict(c.dropped),
                    "viewers": self.viewers,
                }
            )

    async def stop(self, grace_s: float = STOP_GRACE_S) -> set[asyncio.Task[None]]:
        """Stop rendering and reporting; return the tasks still running `grace_s` after being cancelled.

        A render call that does not answer its cancellation (a replica mid-frame) must not hold the
        room, and the session count of its token, open: such a task is logged and handed back for the
        caller to keep until it ends.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return set()
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            log.warning("session %s: %s was still running %.0f s after being cancelled; the session ends without "
                        "waiting for it", self.session_id, task.get_name(), grace_s)  # fmt: skip
        return pending


def log_failure(task: asyncio.Task[None]) -> None:
    """Log a background task that ended with an error (a bug: the tasks handle every expected failure)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended with an error", task.get_name(), exc_info=task.exception())


@dataclass(eq=False)
class Room:
    """One sender driving one target, its video track, and the viewers watching it."""

    name: str
    sender: SenderSession
    sender_peer: Peer
    track: AvatarTrack
    relay: MediaRelay = field(default_factory=MediaRelay)
    viewers: dict[str, Peer] = field(default_factory=dict)
    joining: int = 0  # viewers being negotiated: they hold a seat until they join or fail
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set once the room has ended
    ended_for_good: str = ""  # why, when its target was revoked: the clients must not reconnect

    @property
    def target_id(self) -> str:
        """Return the target the room's sender drives."""
        return self.sender.target_id

    def describe(self) -> dict[str, Any]:
        """Return the room as `GET /api/rooms/{room}` answers it."""
        return {
            "room": self.name,
            "target": self.target_id,
            "fps": self.sender.fps,
            "viewers": len(self.viewers),
            "frames_rendered": self.sender.counters.rendered,
        }
