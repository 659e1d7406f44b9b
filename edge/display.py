"""What a person watches during a live session: a stats table (rich) and a preview window (OpenCV)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from types import TracebackType

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.live import Live
from rich.table import Table

from edge.errors import EdgeError
from edge.stats import SenderStats, ViewerStats

Stats = SenderStats | ViewerStats


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def stats_table(stats: Stats, title: str = "") -> Table:
    """Return a two-column table of `stats`: what a person checks during a session."""
    table = Table(title=title or None, show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim", no_wrap=True, min_width=13)
    table.add_column(overflow="fold")
    state = "[green]connected[/]" if stats.connected else "[yellow]not connected[/]"
    if isinstance(stats, ViewerStats):
        table.add_row("link", state)
        table.add_row("video", f"{stats.video_fps:.1f} fps, {stats.frames_received} frames")
        return table
    table.add_row("link", state + (f" (session {stats.connections})" if stats.connections > 1 else ""))
    table.add_row("uplink", f"{stats.uplink_kbit_s:.1f} kbit/s, {stats.bytes_per_frame:.1f} B/frame")
    table.add_row("round trip", f"p50 {_ms(stats.round_trip_ms_p50)}, p95 {_ms(stats.round_trip_ms_p95)}")
    table.add_row("network RTT", _ms(stats.rtt_ms))
    table.add_row("video", f"{stats.video_fps:.1f} fps, {stats.frames_received} frames")
    causes = {"offline": stats.dropped_offline, "congested": stats.dropped_congested, **stats.gateway_dropped}
    table.add_row("dropped", f"{stats.dropped}" + "".join(f", {cause} {n}" for cause, n in causes.items() if n))
    if stats.last_error:
        table.add_row("gateway error", f"[red]{stats.last_error}[/]")
    return table


class LiveStats:
    """Shows `snapshot()` as a table on `console`, refreshed once a second, while in an `async with`.

    Nothing is shown until the client first connects, so a refused session prints its error alone.
    """

    def __init__(
        self, console: Console, snapshot: Callable[[], Stats], title: str = "", interval_s: float = 1.0
    ) -> None:
        self.console = console
        self.snapshot = snapshot
        self.title = title
        self.interval_s = max(interval_s, 1.0)  # a terminal redrawn faster is unreadable and costs the loop time
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveStats:
        self._task = asyncio.create_task(self._refresh())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # cancelled by us: nothing to report
        if self._live.is_started:
            self._live.update(stats_table(self.snapshot(), self.title), refresh=True)
            self._live.stop()

    async def _refresh(self) -> None:
        while not self.snapshot().connected:
            await asyncio.sleep(0.1)
        self._live.start()
        while True:
            self._live.update(stats_table(self.snapshot(), self.title), refresh=True)
            await asyncio.sleep(self.interval_s)


def has_display() -> bool:
    """Return True when a window can be opened: always on Windows and macOS, with X11 or Wayland on Linux."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewWindow:
    """An OpenCV window showing the avatar, with the camera image beside it when one is given."""

    def __init__(self, name: str = "headcast") -> None:
        if not has_display():
            raise EdgeError(
                "--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set (a headless machine or "
                "an ssh session without -X): drop --show and use --record FILE to keep the video"
            )
        import cv2

        self.name = name
        try:
            cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)
        except cv2.error as error:
            raise EdgeError(f"OpenCV cannot open a window ({error}); drop --show and use --record FILE") from None

    def show(self, avatar: npt.NDArray[np.uint8], camera: npt.NDArray[np.uint8] | None = None) -> None:
        import cv2

        image = avatar
        if camera is not None:
            height = avatar.shape[0]
            width = max(1, round(camera.shape[1] * height / camera.shape[0]))
            image = np.concatenate([cv2.resize(camera, (width, height), interpolation=cv2.INTER_AREA), avatar], axis=1)
        cv2.imshow(self.name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)  # lets the window draw; 1 ms is the shortest wait OpenCV offers

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.name)
