"""The aiohttp gateway: tokens, rooms, WebRTC offers and answers, /metrics (docs/live-protocol.md).

One `RTCPeerConnection` per peer, as in aiortc's examples/server/server.py: a sender's offer opens a
room (its "coeffs" data channel drives the render loop, its video transceiver receives the self-view),
a viewer's offer subscribes to the room's video. Every connection is closed when its room ends and on
shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware
from aiortc import RTCDataChannel, RTCOutboundRtpStreamStats, RTCPeerConnection, RTCSessionDescription
from prometheus_client import CONTENT_TYPE_LATEST

from inference.protocol import TARGET_REVOKED, TargetState
from signaling.auth import AuthError, Grant, authorize, bearer_token, require, verify_token
from signaling.avatar_track import AvatarTrack
from signaling.config import GatewayConfig
from signaling.enrolment import add_enrolment_routes
from signaling.errors import GatewayError, RendererUnavailableError
from signaling.metrics import GatewayMetrics
from signaling.openapi import openapi_document
from signaling.pages import add_page_routes
from signaling.renderer import Renderer
from signaling.sessions import Peer, Room, SenderSession, log_failure
from signaling.tls import server_context

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 128  # room and target names: tokens bind them, this only bounds what is stored
_JSON_ENVELOPE_BYTES = 4096  # an offer's body besides the SDP (its escaping is bounded below)
CLOSE_GRACE_S = 5.0  # how long closing one peer connection may take before the gateway goes on without it
REVOKE_GRACE_S = 1.0  # how long clients told that their target was revoked have to close before the gateway does
EVENTS_CHANNEL = "events"  # a viewer's optional data channel: the gateway's notices (why the room ended)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Offer:
    """The validated body of a `send` or `view` request; target, fps and background only for `send`."""

    sdp: str
    body: dict[str, Any]


class Gateway:
    """The gateway's state: rooms, peers, sessions per token, metrics; its methods are the HTTP handlers."""

    def __init__(self, config: GatewayConfig, renderer: Renderer, secret: bytes) -> None:
        self.config = config
        self.renderer = renderer
        self.secret = secret
        self.metrics = GatewayMetrics()
        self.rooms: dict[str, Room] = {}
        self.peers: dict[str, Peer] = {}
        self._sessions_per_token: Counter[str] = Counter()
        self._opening: set[str] = set()  # rooms whose sender is being negotiated: a second sender gets room_busy
        self._background: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------------------------------------- routes

    async def send(self, request: web.Request) -> web.Response:
        """Return the answer to a sender's offer: the room opens and the sender's session starts."""
        room_name = request.match_info["room"]
        grant = self._authorize(request, "send", room_name)
        offer = await self._read_offer(request)
        target_id = offer.body.get("target")
        if not isinstance(target_id, str) or not 0 < len(target_id) <= MAX_NAME_CHARS:
            raise GatewayError(400, "bad_request", 'a sender\'s offer names the target it drives: "target": "<id>"')
        fps = self._fps(offer.body.get("fps"))
        background = _background(offer.body.get("background"))
        try:
            require(grant, "send", room_name, target_id)
        except AuthError as error:
            raise GatewayError(403, "forbidden", str(error)) from None
        if room_name in self.rooms or room_name in self._opening:
            raise GatewayError(409, "room_busy", f"room {room_name!r} already has a sender: pick another room")
        self._claim_session(grant)
        self._opening.add(room_name)
        pc: RTCPeerConnection | None = None
        try:
            state = await self._target_state(target_id)
            if state == "unknown":
                raise GatewayError(404, "unknown_target", f"no target {target_id!r} is enrolled (`headcast targets`)")
            if state == "revoked":
                raise GatewayError(410, TARGET_REVOKED, _revoked_message(target_id))
            session_id = uuid.uuid4().hex
            track = AvatarTrack(fps, self.config.placeholder_size_px, self.metrics)
            sender = SenderSession(
                session_id, target_id, fps, background, self.config, self.renderer, self.metrics, track
            )
            pc = self._open_connection()
            room = Room(room_name, sender, Peer(session_id, "send", room_name, grant.token_id, pc), track)
            answer = await self._answer(pc, offer.sdp, room, needs_channel=True)
        except BaseException:
            self._release_session(grant.token_id)
            if pc is not None:
                await self._close_connection(pc)
            raise
        finally:
            self._opening.discard(room_name)
        self.rooms[room_name] = room
        self._register(room.sender_peer)
        self.metrics.rooms.inc()
        pc.on("datachannel", lambda channel: self._on_channel(room, channel))
        self._watch(
            room.sender_peer, lambda why: self._close_room(room, why), ready=lambda: room.sender.channel_attached
        )
        log.info("session %s started: room %s, sender driving %s at %d fps", session_id, room_name, target_id, fps)
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": session_id, "fps": fps})

    async def view(self, request: web.Request) -> web.Response:
        """Return the answer to a viewer's offer: the viewer receives the room's video."""
        room_name = request.match_info["room"]
        grant = self._authorize(request, "view", room_name)
        offer = await self._read_offer(request)
        room = self._room(room_name)
        # The seat is taken before negotiating: offers past the limit are refused at once, without a
        # peer connection, however many arrive together.
        self._check_room_has_space(room)
        self._claim_session(grant)
        room.joining += 1
        pc = self._open_connection()
        try:
            answer = await self._answer(pc, offer.sdp, room, needs_channel=False)
            # While this viewer was negotiated the sender may have left.
            if self.rooms.get(room_name) is not room:
                raise GatewayError(404, "unknown_room", f"room {room_name!r} closed: its sender left")
        except BaseException:
            self._release_session(grant.token_id)
            await self._close_connection(pc)
            raise
        finally:
            room.joining -= 1
        peer = Peer(uuid.uuid4().hex, "view", room_name, grant.token_id, pc)
        pc.on("datachannel", lambda channel: _attach_events(peer, channel))
        room.viewers[peer.session_id] = peer
        room.sender.viewers = len(room.viewers)
        self._register(peer)
        self._watch(peer, lambda why: self._close_viewer(room, peer, why))
        log.info("session %s started: room %s, viewer (%d watching)", peer.session_id, room_name, len(room.viewers))
        return web.json_response(
            {"sdp": answer.sdp, "type": answer.type, "session": peer.session_id, "target": room.target_id}
        )

    async def describe(self, request: web.Request) -> web.Response:
        """Return a room's target, fps, viewers and frames rendered (any token of the room)."""
        room_name = request.match_info["room"]
        grant = self._verify(request)
        if grant.room != room_name:
            raise GatewayError(403, "forbidden", f"this token is for room {grant.room!r}, not {room_name!r}")
        return web.json_response(self._room(room_name).describe())

    async def metrics_page(self, request: web.Request) -> web.Response:
        """Return every metric in Prometheus' text format."""
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        """Return {"ok": true, "serve": "up" | "down"}: the gateway answers, and whether the Serve app runs."""
        up = await self.renderer.healthy()
        return web.json_response({"ok": True, "serve": "up" if up else "down"})

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Return the handler's response, or a refusal as the protocol's JSON error (counted by code)."""
        try:
            return await handler(request)
        except GatewayError as error:
            self.metrics.refusals.labels(error.code).inc()
            # Never the token (headers, ?token=): what was asked, where, and why it was refused.
            room = request.match_info.get("room", "-")
            role = request.path.rsplit("/", 1)[-1] if request.path.endswith(("/send", "/view")) else "-"
            log.info("refused %s %s: %d %s, room %s, role %s: %s", request.method, request.path, error.status,
                     error.code, room, role, error.message)  # fmt: skip
            return web.json_response({"error": error.message, "code": error.code}, status=error.status)

    # ----------------------------------------------------------------------------------------- validation

    def _verify(self, request: web.Request) -> Grant:
        """Return the grant of the request's token (header or ?token=); 401 when there is no valid one."""
        token = bearer_token(request.headers.get("Authorization")) or request.query.get("token")
        try:
            return verify_token(self.secret, token)
        except AuthError as error:
            raise GatewayError(401, "unauthorized", str(error)) from None

    def _authorize(self, request: web.Request, role: Literal["send", "view"], room: str) -> Grant:
        """Return the request's grant after checking it allows `role` in `room` (401, 403 otherwise)."""
        token = bearer_token(request.headers.get("Authorization")) or request.query.get("token")
        return authorize(self.secret, token, role, room)

    async def _read_offer(self, request: web.Request) -> Offer:
        """Return the request's offer; 413 for an oversized body or SDP, 400 for anything malformed."""
        max_sdp = self.config.limits.max_sdp_bytes
        too_large = GatewayError(413, "too_large", f"an offer's SDP may have {max_sdp} bytes at most")
        # JSON escaping at most doubles an SDP (its only escapes are \r\n), so the body is bounded before reading.
        max_body = 2 * max_sdp + _JSON_ENVELOPE_BYTES
        if request.content_length is not None and request.content_length > max_body:
            raise too_large
        try:
            raw = await request.read()  # the app's client_max_size bounds bodies sent without a length
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise GatewayError(400, "bad_request", 'the body must be JSON: {"sdp": ..., "type": "offer"}') from None
        if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) or body.get("type") != "offer":
            raise GatewayError(400, "bad_request", 'the body must be {"sdp": "<SDP>", "type": "offer", ...}')
        if len(body["sdp"].encode()) > max_sdp:
            raise too_large
        return Offer(body["sdp"], body)

    def _fps(self, value: object) -> int:
        """Return the session's frame rate: `value` when given and allowed, else the default."""
        if value is None:
            return self.config.default_fps
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= self.config.max_fps:
            raise GatewayError(400, "bad_request", f"fps is an integer from 1 to {self.config.max_fps}")
        return value

    def _check_room_has_space(self, room: Room) -> None:
        if len(room.viewers) + room.joining >= self.config.limits.max_viewers_per_room:
            raise GatewayError(
                429, "room_full", f"room {room.name!r} has its {self.config.limits.max_viewers_per_room} viewers"
            )

    def _room(self, name: str) -> Room:
        """Return the room `name`; 404 when it has no sender."""
        room = self.rooms.get(name)
        if room is None:
            raise GatewayError(404, "unknown_room", f"room {name!r} has no sender: start sending first")
        return room

    async def _target_state(self, target_id: str) -> TargetState:
        """Return the state of `target_id` in the Serve app's registry; an id the app refuses to look up is unknown."""
        try:
            async with asyncio.timeout(self.config.lookup_timeout_s):  # keeps a cancellation (wait_for may not)
                return await self.renderer.target_state(target_id)
        except TimeoutError:
            raise RendererUnavailableError(
                f"the Serve app did not say within {self.config.lookup_timeout_s:g} s whether {target_id!r} exists"
            ) from None
        except GatewayError as error:
            if error.code == "render_failed":  # e.g. an id the registry rejects ("../x"): it names no target
                return "unknown"
            raise

    # ------------------------------------------------------------------------------------------ sessions

    def _claim_session(self, grant: Grant) -> None:
        """Count one more session for the grant's token; 429 when it has `max_sessions` already."""
        if self._sessions_per_token[grant.token_id] >= grant.max_sessions:
            raise GatewayError(
                429, "too_many_sessions", f"this token allows {grant.max_sessions} concurrent session(s): close one"
            )
        self._sessions_per_token[grant.token_id] += 1

    def _release_session(self, token_id: str) -> None:
        self._sessions_per_token[token_id] -= 1
        if self._sessions_per_token[token_id] <= 0:
            del self._sessions_per_token[token_id]

    def _open_connection(self) -> RTCPeerConnection:
        """Return a new peer connection, counted until `_close_connection` has closed it."""
        pc = RTCPeerConnection()
        self.metrics.connections_opened.inc()
        self.metrics.connections.inc()
        return pc

    async def _close_connection(self, pc: RTCPeerConnection) -> None:
        try:
            await _close_quietly(pc)
        finally:
            self.metrics.connections.dec()

    def _register(self, peer: Peer) -> None:
        self.peers[peer.session_id] = peer
        self.metrics.sessions.labels(peer.role).inc()

    async def _answer(self, pc: RTCPeerConnection, sdp: str, room: Room, needs_channel: bool) -> RTCSessionDescription:
        """Return the local answer to `sdp`, with the room's video added to its video transceiver."""
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as error:
            # aiortc's SDP parser raises ValueError, KeyError, IndexError, AssertionError … on malformed
            # input; every one of them means the client sent a bad offer.
            raise GatewayError(400, "bad_request", f"the offer's SDP cannot be used ({error!r})") from error
        if not any(t.kind == "video" for t in pc.getTransceivers()):
            raise GatewayError(400, "bad_request", "the offer needs one video transceiver (recvonly) for the avatar")
        if needs_channel and pc.sctp is None:
            raise GatewayError(400, "bad_request", 'a sender\'s offer carries the data channel "coeffs"')
        # Unbuffered: each peer gets the newest frame; a slow encoder skips frames instead of queueing them.
        pc.addTrack(room.relay.subscribe(room.track, buffered=False))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return pc.localDescription

    def _on_channel(self, room: Room, channel: RTCDataChannel) -> None:
        if channel.label != "coeffs" or room.sender.channel_attached:
            log.info("room %s: ignoring data channel %r", room.name, channel.label)
            return
        room.sender.attach(channel)
        channel.on("close", lambda: self._spawn(self._close_room(room, "the sender closed its data channel")))

    def _watch(
        self, peer: Peer, close: Callable[[str], Awaitable[None]], ready: Callable[[], bool] = lambda: True
    ) -> None:
        """Call `close(reason)` when the peer's connection fails or closes, or is not connected and `ready()`
        in time."""

        async def on_state() -> None:
            state = peer.pc.connectionState
            if state == "failed":
                await close("its connection failed (the network was lost)")
            elif state == "closed":
                await close("its peer closed the connection")

        async def deadline() -> None:
            await asyncio.sleep(self.config.connect_timeout_s)
            peer.connect_deadline = None  # past its wait: whatever closing it starts must not be cancelled
            if peer.pc.connectionState != "connected":
                await close(f"it did not connect within {self.config.connect_timeout_s:g} s")
            elif not ready():
                await close(f"it opened no data channel within {self.config.connect_timeout_s:g} s")

        peer.pc.on("connectionstatechange", on_state)
        peer.connect_deadline = self._spawn(deadline())

    async def _within(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        """Await `coroutine` for at most CLOSE_GRACE_S; past that, leave it running in the background and log so."""
        _, pending = await asyncio.wait({self._spawn(coroutine)}, timeout=CLOSE_GRACE_S)
        if pending:
            log.warning("%s took over %.0f s; going on without waiting for it", what, CLOSE_GRACE_S)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Return `coroutine` running in the background, referenced until it is done (and cancelled at shutdown)."""
        return self._keep(asyncio.create_task(coroutine))

    def _keep(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Return `task`, kept referenced until it is done; an error it ends with is logged."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(log_failure)
        return task

    async def sample_traffic(self) -> None:
        """Count the video bytes every peer sent and close rooms whose sender went silent, every
        `stats_interval_s` (runs while the app serves)."""
        while True:
            await asyncio.sleep(self.config.stats_interval_s)
            for peer in list(self.peers.values()):
                await self._count_video_bytes(peer)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                silent_s = now - room.sender.last_message_at
                if room.sender.channel_attached and silent_s > self.config.sender_silence_s:
                    await self._close_room(room, f"the sender sent nothing for {silent_s:.1f} s")

    async def watch_targets(self) -> None:
        """End the rooms whose target was revoked or deleted, checking every `revocation_poll_s` (runs while the
        app serves). The registry is asked through the Serve app, never a replica's cache."""
        while True:
            await asyncio.sleep(self.config.revocation_poll_s)
            for target_id in {room.target_id for room in self.rooms.values()}:
                try:
                    state = await self._target_state(target_id)
                except GatewayError:  # the app is unreachable: its sessions say so themselves; ask again next time
                    continue
                if state != "enrolled":
                    for room in [r for r in self.rooms.values() if r.target_id == target_id]:
                        self._spawn(self._end_for_good(room, _revoked_message(target_id)))

    async def _end_for_good(self, room: Room, message: str) -> None:
        """End `room` because its target may no longer be driven: rendering stops at once, the sender and every
        viewer are told why (they do not reconnect), and the connections close after at most REVOKE_GRACE_S."""
        if self.rooms.get(room.name) is not room or room.ended_for_good:
            return
        room.ended_for_good = message
        notice = {"type": "ended", "code": TARGET_REVOKED, "message": message}
        for task in await room.sender.stop():  # no further frame of the revoked target is rendered
            self._keep(task)
        room.sender.send(notice)
        self.metrics.revoked_sessions.labels("send").inc()
        for viewer in room.viewers.values():
            if viewer.events is not None and viewer.events.readyState == "open":
                viewer.events.send(json.dumps(notice, separators=(",", ":")))
            self.metrics.revoked_sessions.labels("view").inc()
        log.info("room %s ends: %s", room.name, message)
        # The clients close on the notice; whoever has not after the grace is closed by the gateway.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REVOKE_GRACE_S):
                await room.closed.wait()
        await self._close_room(room, message)

    async def _count_video_bytes(self, peer: Peer) -> None:
        # aiortc's stats are plain counters, readable in any state, so a closing peer's last bytes count too.
        report = await peer.pc.getStats()
        sent = sum(s.bytesSent for s in report.values() if isinstance(s, RTCOutboundRtpStreamStats))
        if sent > peer.video_bytes_sent:
            self.metrics.bytes.labels("out", "video").inc(sent - peer.video_bytes_sent)
            peer.video_bytes_sent = sent

    async def _close_peer(self, peer: Peer, reason: str) -> None:
        """Close one peer connection and log its session's end: which, where, after how long, and why.

        The session stops counting against its token at once; closing the connection itself may take
        a while (or never finish, on a broken link) and is given CLOSE_GRACE_S.
        """
        if self.peers.pop(peer.session_id, None) is None:
            return  # closed already (closing a peer fires its own state change)
        self._release_session(peer.token_id)
        self.metrics.sessions.labels(peer.role).dec()
        # A session that ends before its connect deadline does not keep the deadline's task waiting (one per
        # session, `connect_timeout_s` long, piled up under churn).
        if peer.connect_deadline is not None:
            peer.connect_deadline.cancel()
        await self._count_video_bytes(peer)
        await self._within(self._close_connection(peer.pc), f"closing session {peer.session_id}'s connection")
        lasted_s = time.monotonic() - peer.started_at
        log.info("session %s ended: room %s, %s, after %.1f s: %s", peer.session_id, peer.room,
                 "sender" if peer.role == "send" else "viewer", lasted_s, peer.ending or reason)  # fmt: skip

    async def _close_viewer(self, room: Room, peer: Peer, reason: str) -> None:
        room.viewers.pop(peer.session_id, None)
        room.sender.viewers = len(room.viewers)
        peer.ending = peer.ending or reason
        await self._close_peer(peer, reason)

    async def _close_room(self, room: Room, reason: str) -> None:
        """End a room for `reason`: its sender's session, its video, and every peer connection in it."""
        if self.rooms.get(room.name) is not room:
            return
        del self.rooms[room.name]
        room.closed.set()
        reason = room.ended_for_good or reason
        self.metrics.rooms.dec()
        c = room.sender.counters
        room.sender_peer.ending = f"{reason} ({c.received} packets received, {c.rendered} frames rendered)"
        for task in await room.sender.stop():
            self._keep(task)
        room.track.stop()
        for viewer in list(room.viewers.values()):
            await self._close_viewer(room, viewer, f"the room closed: {reason}")
        await self._close_peer(room.sender_peer, reason)

    async def close(self) -> None:
        """Close every room and peer connection (the app's on_shutdown)."""
        for room in list(self.rooms.values()):
            await self._close_room(room, "the gateway is shutting down")
        for peer in list(self.peers.values()):
            await self._close_peer(peer, "the gateway is shutting down")
        background = list(self._background)
        for task in background:
            task.cancel()
        if background:
            _, pending = await asyncio.wait(background, timeout=CLOSE_GRACE_S)
            if pending:
                log.warning("%d background task(s) still running at shutdown: not waiting for them", len(pending))


def _background(value: object) -> tuple[int, int, int] | None:
    """Return the background colour of a sender's offer (None: the target's own plate)."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise GatewayError(400, "bad_request", "background is null or [r, g, b] with integers 0-255")
    return (value[0], value[1], value[2])


def _revoked_message(target_id: str) -> str:
    return f"target {target_id!r} was revoked (its consent was withdrawn or it was deleted): it can no longer be driven"


def _attach_events(peer: Peer, channel: RTCDataChannel) -> None:
    """Keep a viewer's "events" channel (the gateway's notices to it); other channels are ignored."""
    if channel.label == EVENTS_CHANNEL and peer.events is None:
        peer.events = channel


async def _close_quietly(pc: RTCPeerConnection) -> None:
    """Close `pc`, even one whose negotiation failed half-way."""
    try:
        await pc.close()
    except AttributeError as error:
        # aiortc 1.16 cannot close a connection whose remote description failed to apply (a transceiver
        # without transport); nothing was started on it, so there is nothing left to release.
        log.debug("closing a half-negotiated peer connection: %r", error)


class PathAccessLogger(AbstractAccessLogger):
    """The access log without query strings: viewer links carry their token as `?token=`."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log one request: client, method, path, status, body bytes, seconds."""
        self.logger.info(
            '%s "%s %s" %d %d %.3f',
            request.remote, request.method, request.path, response.status, response.body_length, time,
        )  # fmt: skip


def origin_guard(config: GatewayConfig) -> Middleware:
    """Return the middleware refusing /api/ requests made by pages of other origins (403 `bad_origin`).

    A browser names the page's origin in every cross-origin request and in same-origin ones that are
    not GET; the gateway's own pages come from its own origin (scheme and Host of the request) or one of
    `allowed_origins`. A copy of a page served elsewhere cannot use a token it got hold of, not even
    with a "simple" request that needs no CORS preflight. Clients that are not browsers send no Origin.
    """
    allowed = frozenset(config.allowed_origins)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.host}"
        if origin is not None and request.path.startswith("/api/") and origin not in (own, *allowed):
            raise GatewayError(403, "bad_origin", f"pages of {origin} may not use this gateway's API: open the "
                               "gateway's own pages (or list the origin in allowed_origins)")  # fmt: skip
        return await handler(request)

    return guard


GATEWAY_KEY = web.AppKey("gateway", Gateway)


def create_app(config: GatewayConfig, renderer: Renderer, secret: bytes, enroller: Any = None) -> web.Application:
    """Return the gateway's aiohttp application; every peer connection is closed on its shutdown.

    enroller: what starts and follows enrolment jobs for uploads (signaling/enrolment.py); None: no
    enrolment routes.
    """
    gateway = Gateway(config, renderer, secret)
    max_body = 2 * config.limits.max_sdp_bytes + _JSON_ENVELOPE_BYTES
    app = web.Application(middlewares=[gateway.errors, origin_guard(config)], client_max_size=max_body)
    app[GATEWAY_KEY] = gateway
    app.router.add_post("/api/rooms/{room}/send", gateway.send)
    app.router.add_post("/api/rooms/{room}/view", gateway.view)
    app.router.add_get("/api/rooms/{room}", gateway.describe)
    app.router.add_get("/metrics", gateway.metrics_page)
    app.router.add_get("/healthz", gateway.healthz)
    add_page_routes(app, config)
    add_enrolment_routes(app, config, secret, enroller)
    description = openapi_document(enrolment=enroller is not None)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(description)

    app.router.add_get("/api/openapi.json", openapi)

    async def on_startup(app: web.Application) -> None:
        gateway._spawn(gateway.sample_traffic())
        gateway._spawn(gateway.watch_targets())

    async def on_shutdown(app: web.Application) -> None:
        await gateway.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


@dataclass(frozen=True)
class RunningGateway:
    """A gateway serving in the current event loop: its URL, and the runner that stops it."""

    url: str
    runner: web.AppRunner

    @property
    def gateway(self) -> Gateway:
        """Return the gateway's state (rooms, peers, metrics)."""
        return self.runner.app[GATEWAY_KEY]

    async def stop(self) -> None:
        """Close every peer connection and stop serving."""
        await self.runner.cleanup()


async def start_gateway(
    config: GatewayConfig, renderer: Renderer, secret: bytes, enroller: Any = None
) -> RunningGateway:
    """Return a gateway serving on `config.host`:`config.port` (0: a free port) in the running loop (HTTPS
    when the config names a certificate)."""
    ssl_context = _ssl_context(config)  # before anything starts: a bad certificate fails with nothing to undo
    runner = web.AppRunner(create_app(config, renderer, secret, enroller), access_log_class=PathAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
    await site.start()
    host, port = runner.addresses[0][:2]
    return RunningGateway(f"{config.scheme}://{host}:{port}", runner)


def run_gateway(config: GatewayConfig, renderer: Renderer, secret: bytes, enroller: Any = None) -> None:
    """Serve the gateway until interrupted (what `headcast serve` calls, after connecting to Ray)."""
    web.run_app(
        create_app(config, renderer, secret, enroller),
        host=config.host,
        port=config.port,
        ssl_context=_ssl_context(config),
        access_log_class=PathAccessLogger,
    )


def _ssl_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """Return the TLS context of the config's certificate and key; None for plain HTTP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    return server_context(config.tls_cert, config.tls_key)
