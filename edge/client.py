"""The live client: coefficients to the gateway over a WebRTC data channel, the avatar video back.

The contract is docs/live-protocol.md. A `SenderClient` offers a peer connection with the
unordered, unreliable data channel "coeffs" and one receive-only video transceiver (its self-view),
sends each `Coefficients` as a compact wire packet, pings once a second, and re-offers after a
network drop. A `ViewerClient` only receives the video.

The offer is one HTTP POST per connection, made with urllib in a worker thread: the edge install then
needs no HTTP client library (aiohttp and its compiled dependencies stay a server-side extra) for a
request made once per session, and the event loop is never blocked by it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

import wire
from edge.config import ClientConfig
from edge.errors import EdgeError
from edge.stats import SenderMetrics, SenderStats, ViewerMetrics, ViewerStats
from face3d.coefficients import Coefficients

FrameSink = Callable[[npt.NDArray[np.uint8]], None]
"""Receives each video frame as (H, W, 3) uint8 RGB, on the event loop: it must return quickly."""

EventSink = Callable[[str], None]
"""Receives one human-readable line per connection event (lost, reconnecting, reconnected, gateway error)."""

DATA_CHANNEL = "coeffs"
EVENTS_CHANNEL = "events"  # a viewer's: the gateway says on it why the room ended for good
_WRAP_MS = 2**32  # timestamps are u32 milliseconds on the wire
# Refusals that, right after a drop, mean the gateway still holds our old session: worth retrying.
_OUR_OLD_SESSION = ("room_busy", "too_many_sessions")


def token_room(token: str) -> str:
    """Return the `room` claim of a headcast token (a JWT), read without verifying the signature.

    The edge does not hold the signing secret and need not: the gateway verifies every request.
    Reading the claim only spares the user from typing the room the token already names.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:  # a JWT is header.payload.signature
        raise EdgeError("the token is not a headcast token (three dot-separated parts); mint one with `headcast token`")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError) as error:
        raise EdgeError(f"the token's payload cannot be read ({error}); mint a new one with `headcast token`") from None
    room = claims.get("room") if isinstance(claims, dict) else None
    if not isinstance(room, str) or not room:
        raise EdgeError("the token names no room: give the room with --room")
    return room


def _post_json(url: str, token: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Return the JSON object the gateway answers to a POST; raises EdgeError with the gateway's message."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = response.read()
    except urllib.error.HTTPError as error:
        raise _refusal(error.code, error.read()) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise EdgeError(f"cannot reach the gateway at {url} ({reason}): check --server and that it runs") from None
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise EdgeError(f"the gateway at {url} answered something other than a JSON object: is --server right?")
    return answer


def _refusal(status: int, body: bytes) -> EdgeError:
    """Return the EdgeError for an HTTP error answer, carrying the gateway's message and code."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        code = str(data.get("code") or "")
        return EdgeError(f"{data['error']} (gateway: {status} {code})", status=status, code=code or None)
    return EdgeError(f"the gateway answered HTTP {status} without an error message", status=status)


class Pacer:
    """When to send each frame so that frames leave as far apart as their capture timestamps say.

    The first frame anchors media time to the wall clock. A frame more than `max_lag_s` late (the
    producer fell behind) re-anchors instead of being followed by a burst that catches up; so does a
    timestamp that goes backwards (a new stream). Timestamps wrap at 2**32 ms like the wire's.
    """

    def __init__(self, max_lag_s: float = 0.1) -> None:
        self.max_lag_s = max_lag_s
        self._origin: tuple[int, float] | None = None

    def delay_s(self, timestamp_ms: int, now: float) -> float:
        """Return how many seconds to wait, from `now`, before sending the frame captured at `timestamp_ms`."""
        if self._origin is not None:
            first_ms, first_s = self._origin
            elapsed_ms = (timestamp_ms - first_ms) % _WRAP_MS
            if elapsed_ms < _WRAP_MS // 2:
                due = first_s + elapsed_ms / 1000.0
                if now - due <= self.max_lag_s:
                    return max(0.0, due - now)
        self._origin = (timestamp_ms, now)
        return 0.0


class Channel(Protocol):
    """The part of aiortc's RTCDataChannel the uplink uses."""

    @property
    def readyState(self) -> str: ...  # noqa: N802 (aiortc's, after the WebRTC API)

    @property
    def bufferedAmount(self) -> int: ...  # noqa: N802

    def send(self, data: bytes | str) -> None: ...


class CoefficientUplink:
    """Encodes Coefficients as compact wire packets and sends them, counting the frames it cannot send.

    A frame is not sent (and is counted) while there is no open channel, or while the channel's
    backlog is over `max_buffered_bytes`: the gateway only wants the newest frame, so queueing old
    ones behind a slow link would add latency. A skipped frame is never encoded, so the next delta
    still references a frame the gateway has.
    """

    def __init__(self, metrics: SenderMetrics, key_interval: int = wire.DEFAULT_KEY_INTERVAL,
                 max_buffered_bytes: int = 8192) -> None:  # fmt: skip
        self.metrics = metrics
        self.max_buffered_bytes = max_buffered_bytes
        self._encoder = wire.CompactEncoder(key_interval)

    def reset(self) -> None:
        """Start a new chain: the next packet is a key frame (a new session's decoder holds no reference)."""
        self._encoder.reset()

    def send(self, coefficients: Coefficients, channel: Channel | None, now: float) -> bytes | None:
        """Return the packet sent for `coefficients`, or None when the frame was dropped."""
        if channel is None or channel.readyState != "open":
            self.metrics.dropped_offline += 1
            return None
        if channel.bufferedAmount > self.max_buffered_bytes:
            self.metrics.dropped_congested += 1
            return None
        packet = self._encoder.encode(coefficients)
        channel.send(packet)
        key = packet[1] == wire.KIND_PLAIN  # a plain (key) packet's flags byte is 0, a delta's never is
        self.metrics.packet_sent(coefficients.seq, len(packet), key, now)
        return packet


def synthetic_video_tags(target: str) -> dict[str, str]:
    """Return the MP4 tags of a recording of a headcast avatar: it is synthetic, and whose likeness it shows."""
    whose = f"of the enrolled target {target!r}" if target else "of an enrolled target"
    return {
        "title": f"headcast avatar: {target or 'unknown target'}",
        "comment": f"SYNTHETIC VIDEO: a headcast avatar {whose}, generated from another person's face coefficients",
        "description": f"synthetic=true; generator=headcast; target={target}",
    }


class RecordingSink:
    """Writes received frames to an MP4 (edge.annotate.VideoWriter) at the size the stream settles on.

    The file is opened at the size of the newest of the first `settle_frames` frames; frames of
    another size among those are dropped (a placeholder the gateway sent while the first render was
    on its way can still arrive after it), later ones are scaled to the file's size.
    """

    def __init__(self, path: str | Path, fps: float, settle_frames: int = 3) -> None:
        self.path = Path(path)
        self.fps = fps
        self.settle_frames = settle_frames
        self.target = ""  # whose avatar it shows: the file says it is synthetic, and of whom (set before frames come)
        self.frames = 0
        self._writer: Any = None
        self._size = (0, 0)
        self._pending: list[npt.NDArray[np.uint8]] = []

    def __call__(self, rgb: npt.NDArray[np.uint8]) -> None:
        if self._writer is not None:
            self._write(rgb)
            return
        self._pending.append(rgb)
        if len(self._pending) >= self.settle_frames:
            self._open()

    def _open(self) -> None:
        from edge.annotate import VideoWriter

        newest = self._pending[-1]
        self._size = (newest.shape[1], newest.shape[0])
        self._writer = VideoWriter(self.path, *self._size, self.fps, metadata=synthetic_video_tags(self.target))
        for rgb in self._pending:
            if (rgb.shape[1], rgb.shape[0]) == self._size:
                self._write(rgb)
        self._pending = []

    def _write(self, rgb: npt.NDArray[np.uint8]) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self._size:
            import cv2

            rgb = np.asarray(cv2.resize(rgb, self._size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
        self._writer.write(rgb)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (flush the encoder, write the index); nothing is written when no frame came."""
        if self._writer is None and self._pending:
            self._open()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def _as_async(coefficients: AsyncIterator[Coefficients] | Iterable[Coefficients]) -> AsyncIterator[Coefficients]:
    if isinstance(coefficients, AsyncIterator):
        async for c in coefficients:
            yield c
        return
    for c in coefficients:
        yield c
        await asyncio.sleep(0)  # let the peer connection's tasks run between frames of a ready-made list


class _Peer:
    """One RTCPeerConnection to the gateway: the optional "coeffs" channel and the video it receives."""

    def __init__(self, *, coefficients: bool, on_frame: Callable[[npt.NDArray[np.uint8]], None],
                 on_message: Callable[[str | bytes], None] | None = None, events: bool = False) -> None:  # fmt: skip
        self.pc = RTCPeerConnection()
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.failure: Exception | None = None  # a sink that raised: not a network problem, not retried
        self.last_heard = time.monotonic()
        self._on_frame = on_frame
        self._on_message = on_message
        self._closing = False
        self._readers: list[asyncio.Task[None]] = []
        self.channel: Any = None
        if coefficients:
            self.channel = self.pc.createDataChannel(DATA_CHANNEL, ordered=False, maxRetransmits=0)
            self.channel.on("open", self._channel_open)
            self.channel.on("close", self._channel_closed)
            self.channel.on("message", self._message)
        elif events:  # a viewer's channel for the gateway's notices (the room's end and why)
            self.pc.createDataChannel(EVENTS_CHANNEL).on("message", self._message)
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._track)
        self.pc.on("connectionstatechange", self._state_changed)

    def _channel_open(self) -> None:
        self.last_heard = time.monotonic()
        self.ready.set()

    def _channel_closed(self) -> None:
        self.mark_lost("the data channel closed")

    def _message(self, message: str | bytes) -> None:
        self.last_heard = time.monotonic()
        if self._on_message is not None:
            self._on_message(message)

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.channel is None:
            self.ready.set()
        elif state in ("failed", "closed"):
            self.mark_lost(f"the peer connection {state}")

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._readers.append(asyncio.create_task(self._read_video(track)))

    async def _read_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:  # the track ended with the connection
                return
            if not isinstance(frame, VideoFrame):
                continue
            try:
                self._on_frame(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            except Exception as error:  # the sink failed (disk full, window gone): end the session with its error
                self.failure = error
                self.mark_lost(f"the video sink failed: {error}")
                return

    def mark_lost(self, reason: str) -> None:
        if not self._closing and not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    async def negotiate(self, url: str, token: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Return the gateway's answer after offering this connection to `url` and applying the answer."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._negotiate(url, token, body, timeout_s)
        except TimeoutError:
            raise EdgeError(f"the gateway at {url} did not answer within {timeout_s:.0f} s") from None

    async def _negotiate(self, url: str, token: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        offer = await self.pc.createOffer()
        # aiortc gathers every ICE candidate inside setLocalDescription: the SDP posted is complete.
        await self.pc.setLocalDescription(offer)
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", **body}
        answer = await asyncio.to_thread(_post_json, url, token, body, timeout_s)
        if not isinstance(answer.get("sdp"), str) or answer.get("type") != "answer":
            raise EdgeError(f"the gateway at {url} answered without an SDP answer: is it a headcast gateway?")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        except ValueError as error:
            raise EdgeError(f"the gateway's SDP answer was refused by WebRTC ({error})") from None
        return answer

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the connection carries media (sender: the data channel is open); else EdgeError."""
        ready, lost = asyncio.create_task(self.ready.wait()), asyncio.create_task(self.lost.wait())
        try:
            await asyncio.wait({ready, lost}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            lost.cancel()
        if not self.ready.is_set():
            why = self.lost_reason or f"not connected after {timeout_s:.0f} s"
            raise EdgeError(
                f"the gateway accepted the offer but no WebRTC connection followed ({why}): "
                "a firewall or NAT between here and the gateway may block UDP"
            )

    async def close(self) -> None:
        self._closing = True
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)  # they end on cancel; nothing to report


def _rooms_url(server_url: str, room: str, action: str) -> str:
    return f"{server_url.rstrip('/')}/api/rooms/{urllib.parse.quote(room, safe='')}/{action}"


class SenderClient:
    """Drives a target from a stream of Coefficients and receives the rendered avatar (the self-view).

    server_url: the gateway, e.g. http://127.0.0.1:8080; token: a send token (`headcast token`);
    target: the enrolled target id; room: defaults to the token's room; fps: the session's render rate.
    record: write the self-view to this MP4 (from the first rendered frame on; the gateway's placeholders
        before it are skipped); on_frame: also hand each received frame to this callback.
    on_event: one line per connection event (drop, reconnection, gateway error) for the user.
    background: None, or an (r, g, b) colour to composite the face on instead of the target's plate.
    """

    def __init__(
        self,
        server_url: str,
        token: str,
        target: str,
        room: str | None = None,
        fps: int = 25,
        record: str | Path | None = None,
        *,
        on_frame: FrameSink | None = None,
        on_event: EventSink | None = None,
        background: tuple[int, int, int] | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.server_url = server_url
        self.token = token
        self.target = target
        self.room = room or token_room(token)
        self.fps = fps
        self.config = config or ClientConfig()
        self.background = background
        self.session: str | None = None
        self.recording = RecordingSink(record, fps) if record is not None else None
        if self.recording is not None:
            self.recording.target = target
        self.on_frame = on_frame
        self.on_event = on_event
        self._metrics = SenderMetrics(self.config.latency_window)
        self._uplink = CoefficientUplink(self._metrics, self.config.key_interval, self.config.max_buffered_bytes)
        self._peer: _Peer | None = None
        self._stop = asyncio.Event()
        self._started = False
        self._rendering = False  # the session's first "rendered" message came: its video shows the avatar

    @property
    def stats(self) -> SenderStats:
        """Return a snapshot of the session's statistics."""
        return self._metrics.snapshot(time.monotonic())

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """Return the current peer connection (None before the first connection)."""
        return self._peer.pc if self._peer is not None else None

    def stop(self) -> None:
        """Ask `run` to end: it stops sending, closes the connection and finishes the recording."""
        self._stop.set()

    async def run(
        self, coefficients: AsyncIterator[Coefficients] | Iterable[Coefficients], realtime: bool = True
    ) -> SenderStats:
        """Return the final stats after sending every frame of `coefficients` (or until `stop()`).

        realtime: send each frame when its timestamp falls due (a file plays at its own speed); a live
        source's frames are due as they arrive. Without it, frames leave as fast as they come.
        A synchronous iterable is read on the event loop: pass an async iterator for anything slow.
        Raises EdgeError when the gateway refuses the session, or when a drop cannot be recovered.
        """
        if self._started:
            raise EdgeError("a SenderClient runs one session; make a new one")
        self._started = True
        tasks: list[asyncio.Task[None]] = []
        try:
            self._peer = await self._connect()
            keep_alive = asyncio.create_task(self._keep_alive())
            sending = asyncio.create_task(self._send_all(coefficients, realtime))
            stopping = asyncio.create_task(self._wait_stop())
            tasks = [keep_alive, sending, stopping]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in (sending, keep_alive):
                if task in done:
                    task.result()  # re-raises the failure (a gateway refusal, the source's error)
            if sending in done:
                self._check_delivered()
                await self._drain()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # cancelled, or their error already raised above
            if self._peer is not None:
                await self._peer.close()
            self._metrics.session_lost()
            if self.recording is not None:
                self.recording.close()
        return self.stats

    def _check_delivered(self) -> None:
        """Raise EdgeError when the source ended while the connection was down: its last frames never
        reached the gateway, and the session, never recovered, is not a success."""
        peer = self._peer
        if peer is not None and peer.lost.is_set():
            dropped = self._metrics.snapshot(time.monotonic()).dropped_offline
            raise EdgeError(
                f"the source ended while reconnecting to the gateway ({peer.lost_reason}): the session never "
                f"recovered; {dropped} frames were not sent"
            )

    async def _wait_stop(self) -> None:
        await self._stop.wait()

    def _event(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)

    async def _connect(self) -> _Peer:
        peer = _Peer(coefficients=True, on_frame=self._frame, on_message=self._message)
        body: dict[str, Any] = {"target": self.target, "fps": self.fps}
        if self.background is not None:
            body["background"] = list(self.background)
        url = _rooms_url(self.server_url, self.room, "send")
        try:
            answer = await peer.negotiate(url, self.token, body, self.config.connect_timeout_s)
            await peer.wait_ready(self.config.connect_timeout_s)
        except BaseException:  # a refusal, a timeout, a cancellation: the half-made connection goes either way
            await peer.close()
            raise
        self.session = str(answer.get("session") or "")
        self._uplink.reset()
        self._metrics.session_opened()
        self._rendering = False
        return peer

    async def _send_all(
        self, coefficients: AsyncIterator[Coefficients] | Iterable[Coefficients], realtime: bool
    ) -> None:
        pacer = Pacer()
        async for c in _as_async(coefficients):
            if realtime:
                delay = pacer.delay_s(c.timestamp_ms, time.monotonic())
                if delay > 0:
                    await asyncio.sleep(delay)
            channel = self._peer.channel if self._peer is not None and not self._peer.lost.is_set() else None
            self._uplink.send(c, channel, time.monotonic())

    async def _drain(self) -> None:
        """Wait (at most `drain_s`) until the last packet sent has been rendered."""
        deadline = time.monotonic() + self.config.drain_s
        trips = self._metrics.round_trips
        while time.monotonic() < deadline and trips.last_sent_seq is not None:
            if trips.last_rendered_seq == trips.last_sent_seq:
                await asyncio.sleep(2.0 / self.fps)  # its frame follows the "rendered" message on the video track
                return
            await asyncio.sleep(0.02)

    async def _keep_alive(self) -> None:
        """Ping once a second, watch for drops, and reconnect after one; raises EdgeError when it cannot."""
        next_ping = time.monotonic()
        while True:
            peer = self._peer
            assert peer is not None
            # Checked first: a zero timeout cancels the wait even when the event is set.
            if not peer.lost.is_set():
                try:
                    async with asyncio.timeout(max(0.0, next_ping - time.monotonic())):
                        await peer.lost.wait()
                except TimeoutError:
                    now = time.monotonic()
                    if now - peer.last_heard > self.config.silence_timeout_s:
                        peer.mark_lost(f"nothing heard from the gateway for {now - peer.last_heard:.1f} s")
                    elif peer.channel.readyState == "open":
                        peer.channel.send(json.dumps({"type": "ping", "t": round(now * 1000)}))
                    next_ping = now + self.config.ping_interval_s
                    continue
            if peer.failure is not None:
                raise peer.failure
            await self._reconnect(peer)
            next_ping = time.monotonic()

    async def _reconnect(self, lost: _Peer) -> None:
        """Replace a lost connection with a new one (backoff, bounded attempts); raises EdgeError when it cannot.

        Frames keep flowing from the source meanwhile and are dropped (counted). Network trouble and 503
        are retried `reconnect_attempts` times; 409 room_busy and 429 too_many_sessions `busy_retries`
        times, because the gateway holds our old session (its room, its count against the token) until
        it notices the drop. Any other refusal (401, 403, 404 …) stands.
        """
        self._metrics.session_lost()
        reason = lost.lost_reason
        await lost.close()
        config = self.config
        if config.reconnect_attempts == 0:
            raise EdgeError(f"lost the connection to the gateway ({reason}); reconnecting is off")
        self._event(f"connection lost ({reason}); reconnecting")
        started = time.monotonic()
        attempts = busy = 0
        delay = config.reconnect_first_delay_s
        while True:
            await asyncio.sleep(delay)
            delay = min(config.reconnect_max_delay_s, max(delay * 2, 0.1))
            try:
                self._peer = await self._connect()
            except EdgeError as error:
                if error.code in _OUR_OLD_SESSION and busy < config.busy_retries:
                    if busy == 0:
                        self._event(f"the gateway still holds the old session ({error.code}); waiting for it to end")
                    busy += 1
                    continue
                if error.status is None or error.status == 503:  # the network, or the gateway's "unavailable"
                    attempts += 1
                    if attempts < config.reconnect_attempts:
                        self._event(f"reconnection attempt {attempts} of {config.reconnect_attempts} failed: {error}")
                        continue
                raise EdgeError(
                    f"lost the connection to the gateway ({reason}) and could not reconnect: {error}",
                    status=error.status,
                    code=error.code,
                ) from None
            self._event(f"reconnected after {time.monotonic() - started:.1f} s (session {self.session})")
            return

    def _frame(self, rgb: npt.NDArray[np.uint8]) -> None:
        self._metrics.frame_received(time.monotonic())
        # Until a session's first render the gateway sends grey placeholders: the recording skips them.
        if self.recording is not None and self._rendering:
            self.recording(rgb)
        if self.on_frame is not None:
            self.on_frame(rgb)

    def _message(self, message: str | bytes) -> None:
        """Handle one gateway message; malformed or unknown ones are ignored (a newer gateway may send more)."""
        if isinstance(message, bytes):
            return
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        now = time.monotonic()
        if kind == "rendered" and isinstance(data.get("seq"), int):
            self._metrics.rendered(data["seq"], now)
            self._rendering = True
        elif kind == "stats":
            self._metrics.gateway_stats(data)
        elif kind == "pong" and isinstance(data.get("t"), int | float):
            self._metrics.pong(float(data["t"]), now * 1000)
        elif kind == "key_frame":  # the gateway's decoder lost our chain (a dropped packet): restart it now
            self._uplink.reset()
        elif kind == "error":
            code, text = str(data.get("code", "error")), str(data.get("message", ""))
            self._metrics.gateway_error(code, text)
            self._event(f"gateway: {code}: {text}")
        elif kind == "ended" and self._peer is not None:  # for good (the target was revoked): not reconnected
            code, text = str(data.get("code", "ended")), str(data.get("message", "the gateway ended the session"))
            self._peer.failure = EdgeError(f"the gateway ended the session: {text}", status=410, code=code)
            self._peer.mark_lost(text)


class ViewerClient:
    """Watches a room: receives the avatar video into a recording and/or a callback.

    A viewer does not reconnect: when the connection ends (the sender left, the network dropped),
    `run` returns and says why in `ended_because`.
    """

    def __init__(
        self,
        server_url: str,
        token: str,
        room: str | None = None,
        record: str | Path | None = None,
        fps: float = 25.0,
        *,
        on_frame: FrameSink | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.server_url = server_url
        self.token = token
        self.room = room or token_room(token)
        self.config = config or ClientConfig()
        self.session: str | None = None
        self.recording = RecordingSink(record, fps) if record is not None else None
        self.ended_because = ""
        self.target = ""  # whose avatar the room shows, from the gateway's answer
        self.on_frame = on_frame
        self._metrics = ViewerMetrics()
        self._peer: _Peer | None = None
        self._stop = asyncio.Event()

    @property
    def stats(self) -> ViewerStats:
        """Return a snapshot of the viewer's statistics."""
        return self._metrics.snapshot(time.monotonic())

    def stop(self) -> None:
        """Ask `run` to end."""
        self._stop.set()

    async def run(self, duration_s: float | None = None) -> ViewerStats:
        """Return the final stats after watching for `duration_s` seconds (None: until `stop()` or the end)."""
        url = _rooms_url(self.server_url, self.room, "view")
        peer = self._peer = _Peer(coefficients=False, on_frame=self._frame, on_message=self._message, events=True)
        try:
            answer = await peer.negotiate(url, self.token, {}, self.config.connect_timeout_s)
            self.session = str(answer.get("session") or "")
            self.target = str(answer.get("target") or "")
            if self.recording is not None:
                self.recording.target = self.target
            await peer.wait_ready(self.config.connect_timeout_s)
            self._metrics.connected = True
            waits = [asyncio.create_task(peer.lost.wait()), asyncio.create_task(self._stop.wait())]
            try:
                done, _ = await asyncio.wait(waits, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            self.ended_because = peer.lost_reason if peer.lost.is_set() else ("stopped" if done else "duration reached")
            if peer.failure is not None:
                raise peer.failure
        finally:
            self._metrics.connected = False
            await peer.close()
            if self.recording is not None:
                self.recording.close()
        return self.stats

    def _frame(self, rgb: npt.NDArray[np.uint8]) -> None:
        self._metrics.frame_received(time.monotonic())
        if self.recording is not None:
            self.recording(rgb)
        if self.on_frame is not None:
            self.on_frame(rgb)

    def _message(self, message: str | bytes) -> None:
        """Handle a notice on the events channel: {"type": "ended", "code", "message"} ends the watch with it."""
        try:
            data = json.loads(message)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("type") == "ended" and self._peer is not None:
            self._peer.mark_lost(f"{data.get('code', 'ended')}: {data.get('message', 'the room ended')}")
