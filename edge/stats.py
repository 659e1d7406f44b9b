"""Live statistics of a session: uplink rate, round trip, network RTT, received fps, drops.

Pure bookkeeping: every method takes the time (`now`, seconds of a monotonic clock) from its caller,
so the maths is tested without a network and the client decides which clock is used.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

_DROPPED = "dropped."  # key prefix of the gateway's drop counts among its other counters


def percentile(values: Iterable[float], q: float) -> float | None:
    """Return the q-th percentile (0-100, linear interpolation) of `values`, None when there are none."""
    data = np.fromiter(values, dtype=np.float64)
    return float(np.percentile(data, q)) if data.size else None


class RateMeter:
    """Amounts per second over a sliding window (bytes → B/s, frames → fps).

    Before a full window has passed since the first event, the rate is taken over the time elapsed
    since then, so a fresh meter does not under-report by the share of the window not yet lived.
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()
        self._in_window = 0.0
        self._start: float | None = None

    def add(self, now: float, amount: float = 1.0) -> None:
        if self._start is None:
            self._start = now
        self._events.append((now, amount))
        self._in_window += amount
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            self._in_window -= self._events.popleft()[1]

    def rate(self, now: float) -> float:
        """Return the amount per second over the last window (0 before the first event)."""
        if self._start is None:
            return 0.0
        self._expire(now)
        span = min(self.window_s, now - self._start)
        return self._in_window / span if span > 0 else 0.0


class RoundTrips:
    """Send times by sequence number and the round trips measured against them (milliseconds).

    A round trip is the arrival of the gateway's "rendered" message for seq S minus the send time of
    packet S. Only the last `keep` send times are held: a frame rendered later than that is not measured.
    """

    def __init__(self, window: int = 250, keep: int = 512) -> None:
        self._sent: OrderedDict[int, float] = OrderedDict()
        self._keep = keep
        self.recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.last_sent_seq: int | None = None
        self.last_rendered_seq: int | None = None

    def sent(self, seq: int, now: float) -> None:
        self._sent[seq] = now
        self._sent.move_to_end(seq)
        self.last_sent_seq = seq
        while len(self._sent) > self._keep:
            self._sent.popitem(last=False)

    def rendered(self, seq: int, now: float) -> float | None:
        """Return the round trip of `seq` in ms, None when its send time is unknown (or was forgotten)."""
        self.last_rendered_seq = seq
        sent = self._sent.pop(seq, None)
        if sent is None:
            return None
        ms = (now - sent) * 1000.0
        self.recent.append(ms)
        self.count += 1
        return ms

    def forget(self) -> None:
        """Drop the held send times (a new session cannot answer for the old one's packets)."""
        self._sent.clear()


@dataclass(frozen=True)
class SenderStats:
    """A snapshot of a sender's session.

    connected: the data channel is open now; connections: sessions opened (1 + reconnections).
    frames_sent / bytes_sent: coefficient packets and their payload bytes; key_frames: plain packets among them.
    uplink_kbit_s: payload rate over the last two seconds; bytes_per_frame: mean payload per packet.
    round_trip_ms_p50/p95: coefficient → "rendered" message over the last `latency_window` frames (None
        before the first); round_trips: how many were measured in all.
    rtt_ms: the last ping → pong; video_fps: self-view frames per second; frames_received: all of them.
    dropped_offline: coefficient frames not sent because the connection was down;
    dropped_congested: not sent because the data channel's backlog was over its limit;
    gateway_dropped: the gateway's counts by reason (stale, superseded, bad, rate) summed over every session;
    gateway_received / gateway_rendered: the gateway's counts, summed likewise; viewers: the last count.
    last_error: the gateway's last error message on the data channel ("code: message").
    """

    connected: bool = False
    connections: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    key_frames: int = 0
    uplink_kbit_s: float = 0.0
    bytes_per_frame: float = 0.0
    round_trip_ms_p50: float | None = None
    round_trip_ms_p95: float | None = None
    round_trips: int = 0
    rtt_ms: float | None = None
    video_fps: float = 0.0
    frames_received: int = 0
    dropped_offline: int = 0
    dropped_congested: int = 0
    gateway_dropped: dict[str, int] = field(default_factory=dict)
    gateway_received: int = 0
    gateway_rendered: int = 0
    viewers: int = 0
    last_error: str | None = None

    @property
    def dropped(self) -> int:
        """Return every frame lost on the way: not sent here, or dropped by the gateway."""
        return self.dropped_offline + self.dropped_congested + sum(self.gateway_dropped.values())


@dataclass(frozen=True)
class ViewerStats:
    """A snapshot of a viewer: connected now, frames received, their rate over the last two seconds."""

    connected: bool = False
    frames_received: int = 0
    video_fps: float = 0.0


class SenderMetrics:
    """The running counters behind `SenderStats`; the client calls one method per event."""

    def __init__(self, latency_window: int = 250) -> None:
        self.connected = False
        self.connections = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.key_frames = 0
        self.dropped_offline = 0
        self.dropped_congested = 0
        self.frames_received = 0
        self.rtt_ms: float | None = None
        self.viewers = 0
        self.last_error: str | None = None
        self.round_trips = RoundTrips(latency_window)
        self._uplink = RateMeter()
        self._video = RateMeter()
        # The gateway's counters restart with each session: what earlier sessions reported is kept apart.
        self._gateway_base: Counter[str] = Counter()
        self._gateway_now: Counter[str] = Counter()

    def session_opened(self) -> None:
        self._gateway_base.update(self._gateway_now)
        self._gateway_now = Counter()
        self.round_trips.forget()
        self.connections += 1
        self.connected = True

    def session_lost(self) -> None:
        self.connected = False

    def packet_sent(self, seq: int, size: int, key: bool, now: float) -> None:
        self.frames_sent += 1
        self.bytes_sent += size
        self.key_frames += key
        self._uplink.add(now, size)
        self.round_trips.sent(seq, now)

    def rendered(self, seq: int, now: float) -> float | None:
        """Return the round trip of `seq` in ms (None when unknown)."""
        return self.round_trips.rendered(seq, now)

    def pong(self, sent_ms: float, now_ms: float) -> None:
        self.rtt_ms = now_ms - sent_ms

    def frame_received(self, now: float) -> None:
        self.frames_received += 1
        self._video.add(now)

    def gateway_stats(self, message: dict[str, object]) -> None:
        """Take the counts of a gateway "stats" message; fields that are missing or not integers are skipped."""
        counts: dict[str, object] = {"received": message.get("received"), "rendered": message.get("rendered")}
        dropped = message.get("dropped")
        if isinstance(dropped, dict):  # stale, superseded, bad, and whatever reasons a newer gateway counts
            counts.update({f"{_DROPPED}{kind}": value for kind, value in dropped.items()})
        for key, value in counts.items():
            if isinstance(value, int) and not isinstance(value, bool):
                self._gateway_now[key] = value
        viewers = message.get("viewers")
        if isinstance(viewers, int):
            self.viewers = viewers

    def gateway_error(self, code: str, message: str) -> None:
        self.last_error = f"{code}: {message}"

    def snapshot(self, now: float) -> SenderStats:
        """Return the stats as of `now`."""
        total = Counter(self._gateway_base)
        total.update(self._gateway_now)  # update, not +: zero counts stay (a reason seen, never dropped)
        recent = self.round_trips.recent
        return SenderStats(
            connected=self.connected,
            connections=self.connections,
            frames_sent=self.frames_sent,
            bytes_sent=self.bytes_sent,
            key_frames=self.key_frames,
            uplink_kbit_s=self._uplink.rate(now) * 8 / 1000,
            bytes_per_frame=self.bytes_sent / self.frames_sent if self.frames_sent else 0.0,
            round_trip_ms_p50=percentile(recent, 50),
            round_trip_ms_p95=percentile(recent, 95),
            round_trips=self.round_trips.count,
            rtt_ms=self.rtt_ms,
            video_fps=self._video.rate(now),
            frames_received=self.frames_received,
            dropped_offline=self.dropped_offline,
            dropped_congested=self.dropped_congested,
            gateway_dropped={key.removeprefix(_DROPPED): n for key, n in total.items() if key.startswith(_DROPPED)},
            gateway_received=total["received"],
            gateway_rendered=total["rendered"],
            viewers=self.viewers,
            last_error=self.last_error,
        )


class ViewerMetrics:
    """The running counters behind `ViewerStats`."""

    def __init__(self) -> None:
        self.connected = False
        self.frames_received = 0
        self._video = RateMeter()

    def frame_received(self, now: float) -> None:
        self.frames_received += 1
        self._video.add(now)

    def snapshot(self, now: float) -> ViewerStats:
        """Return the stats as of `now`."""
        return ViewerStats(self.connected, self.frames_received, self._video.rate(now))
