"""Browser fixtures: Debian's Chromium driven by Playwright, a fake camera made from the sample clip, and
servers (the pages alone, or the whole gateway) running in a background thread's event loop.

Playwright's sync API runs its own loop on the test's thread, so the servers get a thread of their own;
tests talk to them over HTTP and, where they must reach inside, through `ServerThread.call`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web

from base import assets
from signaling.config import GatewayConfig
from signaling.pages import WEB_DIR, add_page_routes

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"

# docs/notes.md "MediaPipe in headless Chromium": the fake camera, SwiftShader for MediaPipe's WebGL input,
# and no attempts to reach hosts this machine cannot reach. Background tabs keep their timers and media.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--autoplay-policy=no-user-gesture-required",
)

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- the camera


@dataclass(frozen=True)
class FakeCamera:
    """The .y4m Chromium plays (looping) as its camera, and what is in it.

    The clip's man (shot 2, frames 98–153, talking and turning) plays at 24 fps, then frame 141 (mouth
    closed) and frame 143 (mouth open) are each held for `hold_frames`: the head pose of the two differs
    by about 1.5°, their mouths by the clip's widest opening, so the avatar's change between the two held
    phases is the mouth's.
    """

    path: Path
    size: tuple[int, int]
    fps: int
    frames: int
    hold_frames: int


CAMERA_SIZE = (360, 264)  # the clip's 720×528 halved: a face of ~75 px, plenty for FaceLandmarker
CAMERA_FPS = 24
PLAYING = range(98, 154)
MOUTH_CLOSED_FRAME = 141
MOUTH_OPEN_FRAME = 143
HOLD_FRAMES = 48  # 2 s: the smoothed pose settles in ~0.4 s and a render comes back in ~0.1 s


def write_y4m(path: Path, frames: list[npt.NDArray[np.uint8]], size: tuple[int, int], fps: int) -> None:
    """Write RGB frames as a 4:2:0 YUV4MPEG2 file of `size` (width, height) at `fps`."""
    import av

    width, height = size
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width, height, "yuv420p")
            out.write(b"FRAME\n")
            out.write(frame.to_ndarray().tobytes())


@pytest.fixture(scope="session")
def fake_camera(tmp_path_factory: pytest.TempPathFactory) -> FakeCamera:
    """The fake camera's .y4m, made once per session from the sample clip (~1 s, 18 MB)."""
    import av

    with av.open(str(assets.resolve("sample_clip"))) as clip:
        frames = [np.asarray(frame.to_ndarray(format="rgb24"), np.uint8) for frame in clip.decode(video=0)]
    sequence = [frames[i] for i in PLAYING]
    sequence += [frames[MOUTH_CLOSED_FRAME]] * HOLD_FRAMES + [frames[MOUTH_OPEN_FRAME]] * HOLD_FRAMES
    path = tmp_path_factory.mktemp("fake-camera") / "sample-clip.y4m"
    write_y4m(path, sequence, CAMERA_SIZE, CAMERA_FPS)
    return FakeCamera(path, CAMERA_SIZE, CAMERA_FPS, len(sequence), HOLD_FRAMES)


# ---------------------------------------------------------------------------------------------- the browser


def require_chromium_and_pages() -> None:
    """Skip when Debian's Chromium is not installed; fail when the pages' dependency is (`make web`)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (`make system` does) to run the browser tests")
    if not (WEB_DIR / "node_modules" / "@mediapipe" / "tasks-vision").is_dir():
        pytest.fail("web/node_modules is missing: run `make web` (npm ci in web/) before the browser tests")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, tuple[str, ...]]:
    """Return (Chromium's path, its launch arguments without a camera), for tests that launch their own."""
    require_chromium_and_pages()
    return str(CHROMIUM), CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser(fake_camera: FakeCamera) -> Iterator[Any]:
    """Headless Debian Chromium with the fake camera; skipped (with the reason) when it is not installed.

    Module-scoped on purpose: while Playwright's sync API is started, the test thread has a running event
    loop and `asyncio.run` — which the suite's other modules use — refuses to start. Each module that needs
    the browser gets one (a launch takes ~1 s) and stops Playwright when it is done.
    """
    require_chromium_and_pages()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={fake_camera.path}"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The folder screenshots and captured frames are written to (git-ignored); its path is printed."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"browser test artefacts: {ARTIFACTS}")
    return ARTIFACTS


# ---------------------------------------------------------------------------------------------- the servers


class ServerThread:
    """An asyncio event loop in a daemon thread, for servers the (synchronous) browser tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T] | Awaitable[T], timeout_s: float = 60.0) -> T:
        """Return the result of running `coroutine` on the server loop."""

        async def run() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout_s)

    def stop(self) -> None:
        """Stop the loop and wait for its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def server_thread() -> Iterator[ServerThread]:
    """One background event loop for the session's servers."""
    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.stop()


async def serve_app(app: web.Application) -> tuple[str, web.AppRunner]:
    """Return (url, runner) of `app` serving on a free loopback port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner


@pytest.fixture(scope="session")
def pages_url(server_thread: ServerThread) -> Iterator[str]:
    """The URL of an aiohttp app with only the pages' routes (no Ray, no rooms): for the in-page module tests."""
    app = web.Application()
    add_page_routes(app, GatewayConfig(port=0))
    url, runner = server_thread.call(serve_app(app))
    try:
        yield url
    finally:
        server_thread.call(runner.cleanup())
