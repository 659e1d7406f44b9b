"""The avatar's video track: the newest rendered frame, paced at the session's frame rate.

One `AvatarTrack` per room; the sender's self-view and every viewer receive it through
`aiortc.contrib.media.MediaRelay` (unbuffered), so one render feeds every peer. Frames are never
queued: VP8 software encoding is CPU-heavy and a queue in front of a slow encoder only adds delay
(docs/notes.md, aiortc issues #80/#104/#744). A late `recv()` skips the ticks it missed instead of
bursting to catch up.

Frames leave `recv()` already in yuv420p, the encoders' format: the relay hands one `av.VideoFrame`
to every peer's encoder thread, and converting a shared frame in several threads at once crashes PyAV
(`VideoFrame.reformat` reuses one swscale context per frame; measured: a segfault within a second with
a sender and one viewer). Converting once per rendered frame here is also cheaper than once per peer.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from signaling.metrics import GatewayMetrics

VIDEO_CLOCK_RATE = 90_000  # RTP's video clock
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
PLACEHOLDER_GREY = 128


class AvatarTrack(MediaStreamTrack):
    """A video track showing whatever frame `show()` was last given, `fps` times a second.

    Until the first frame it shows a mid-grey `placeholder_size_px`² frame, so peers can negotiate
    and start decoding before the first render is done. yuv420p needs even sides: an odd last row or
    column is cropped.
    """

    kind = "video"

    def __init__(
        self,
        fps: int,
        placeholder_size_px: int,
        metrics: GatewayMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """clock and sleep: the time the track paces itself by (tests check the pacing on a clock of their own)."""
        super().__init__()
        self.fps = fps
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics
        self._yuv = _yuv420p(np.full((placeholder_size_px, placeholder_size_px, 3), PLACEHOLDER_GREY, np.uint8))
        self._start: float | None = None
        self._tick = 0
        self._last_sent: float | None = None

    def show(self, frame: npt.NDArray[np.uint8]) -> None:
        """Make `frame` ((H, W, 3) uint8 RGB) the one sent from the next tick on."""
        self._yuv = _yuv420p(frame)

    async def recv(self) -> av.VideoFrame:
        """Return the newest frame, stamped with the 90 kHz presentation time of its tick."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._tick += 1
            due = self._start + self._tick / self.fps
            if now > due + 1 / self.fps:
                # The consumer fell behind (a slow encoder): continue from the current tick, do not burst.
                self._tick = int((now - self._start) * self.fps)
            else:
                await self._sleep(max(0.0, due - now))
        if self.readyState != "live":  # stopped while waiting for the tick
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        frame.pts = self._tick * VIDEO_CLOCK_RATE // self.fps
        frame.time_base = VIDEO_TIME_BASE
        sent = self._clock()
        if self._metrics is not None and self._last_sent is not None:
            self._metrics.frame_interval_seconds.observe(sent - self._last_sent)
        self._last_sent = sent
        return frame


def _yuv420p(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Return an (H, W, 3) uint8 RGB image as yuv420p planes, (3H/2, W) uint8, cropped to even sides."""
    height, width = rgb.shape[0] & ~1, rgb.shape[1] & ~1
    even = np.ascontiguousarray(rgb[:height, :width])
    return np.asarray(av.VideoFrame.from_ndarray(even, format="rgb24").reformat(format="yuv420p").to_ndarray())
