"""A frame source tracked live in a worker thread, as an async stream of Coefficients for the client.

MediaPipe takes ~8 ms a frame and the face fit well under 1 ms: done on the event loop, that would
stall the peer connection's packets and pings. The worker thread owns the tracker (MediaPipe graphs
are used from the thread that made them) and hands finished Coefficients to the loop through a small
bounded queue; a file source is thereby read no faster than the client sends it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.capture import FrameSource
from edge.coefficients import coefficient_stream
from edge.config import EdgeConfig
from edge.shots import ShotDetector
from edge.tracking import FaceTracker, TrackedFrame
from face3d.coefficients import Coefficients
from face3d.online import OnlineConfig


@dataclass(frozen=True)
class _End:
    """Put on the queue when the worker ends; carries its error, if any."""

    error: BaseException | None = None


class LiveCoefficients:
    """Async iterator of the smoothed Coefficients of `source`'s frames that show a face.

    Use as `async with LiveCoefficients(source) as stream: async for c in stream: ...`. The stream
    owns the source and closes it. Errors of the source or the tracker are raised by the iterator.
    latest_rgb: the last captured frame ((H, W, 3) uint8, for a preview); frames / faces: frames read
    and frames with a face; tracking_ms: the recent per-frame tracking times.
    """

    def __init__(
        self,
        source: FrameSource,
        config: EdgeConfig | None = None,
        online: OnlineConfig | None = None,
        max_queued: int = 4,
    ) -> None:
        self.source = source
        self.config = config or EdgeConfig.load()
        self.online = online
        self.latest_rgb: npt.NDArray[np.uint8] | None = None
        self.frames = 0
        self.faces = 0
        self.tracking_ms: deque[float] = deque(maxlen=250)
        self._queue: asyncio.Queue[Coefficients | _End] = asyncio.Queue(max_queued)
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ended = False

    async def __aenter__(self) -> LiveCoefficients:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="edge-tracking", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def __aiter__(self) -> LiveCoefficients:
        return self

    async def __anext__(self) -> Coefficients:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._ended = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        """Stop the worker and wait for it (it finishes the frame it is on, then closes the source)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _put(self, item: Coefficients | _End) -> bool:
        """Return True once `item` is queued; False when the stream was closed first (called by the worker)."""
        assert self._loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is closed: nobody reads any more
            return False
        while True:
            try:
                future.result(timeout=0.1)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return False

    def _tracked(self, tracker: FaceTracker) -> Iterator[TrackedFrame]:
        detector = ShotDetector(self.config.shots)
        shot = 0
        for frame in self.source:
            if self._stop.is_set():
                return
            self.latest_rgb = frame.rgb
            if detector.is_cut(frame.rgb):  # a cut in a file: no tracker or filter state may cross it
                shot += 1
                tracker.restart()
            start = time.perf_counter()
            tracked = tracker.track(frame.rgb, frame.timestamp_ms, frame.index, shot)
            self.tracking_ms.append((time.perf_counter() - start) * 1000)
            self.frames += 1
            self.faces += tracked.face_found
            yield tracked

    def _work(self) -> None:
        error: BaseException | None = None
        try:
            with FaceTracker(self.config.tracker) as tracker:
                for _, coefficients in coefficient_stream(self._tracked(tracker), self.online):
                    if not self._put(coefficients):
                        return
        except Exception as failure:  # handed to the consumer, which raises it
            error = failure
        finally:
            self.source.close()
        self._put(_End(error))
