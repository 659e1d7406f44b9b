"""The browser pages end to end: Chromium's fake camera plays the sample clip into the sender page, which
tracks it with MediaPipe in the page and drives the real gateway and the real Serve app `avatar`; viewer
pages watch the room. Refusals and lost connections are shown in the pages.

The app serves the sample clip's woman with a tiny random-weight generator (tests/conftest.py): frames show
the NMFC's structure rather than her likeness, which is enough to see the avatar follow the clip's mouth.
Screenshots and captured avatar frames are written to test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import pytest

import wire
from face3d.blendshapes import BLENDSHAPE_INDEX
from inference.protocol import RenderRequest, RenderResult, TargetState
from inference.serve_config import ServingConfig
from signaling.auth import mint_token
from signaling.config import GatewayConfig
from signaling.gateway import RunningGateway, start_gateway
from signaling.renderer import ServeRenderer

pytestmark = pytest.mark.slow

SECRET = b"k" * 32
ROOM = "browser-room"
TARGET = "woman"
PLACEHOLDER_PX = 32  # unlike the app's 128² output: a frame of the output size is a rendered one
MOUTH = ("mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight")

# Draw a <video>'s current frame into a canvas and return its RGBA pixels as base64 (null before the first frame).
CAPTURE_JS = """(selector) => {
  const video = document.querySelector(selector);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(video, 0, 0);
  const bytes = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return {width: canvas.width, height: canvas.height, rgba: btoa(text)};
}"""


def token(role: str, room: str = ROOM, targets: tuple[str, ...] = (TARGET,), secret: bytes = SECRET) -> str:
    """Return a token for `role` in `room`."""
    return mint_token(secret, "bob", room, role, targets, max_sessions=4)  # type: ignore[arg-type]


def get_json(url: str, bearer: str) -> tuple[int, Any]:
    """Return (status, JSON body) of a GET with a Bearer token."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Return once `condition()` holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def capture(page: Any, selector: str = "#avatar") -> npt.NDArray[np.float64] | None:
    """Return the video's current frame as (H, W, 3) float RGB, None before the first frame."""
    shot = page.evaluate(CAPTURE_JS, selector)
    if shot is None:
        return None
    rgba = np.frombuffer(base64.b64decode(shot["rgba"]), np.uint8).reshape(shot["height"], shot["width"], 4)
    return rgba[..., :3].astype(np.float64)


def save_png(path: Path, rgb: npt.NDArray[np.float64]) -> None:
    """Write a captured frame as a PNG artefact."""
    from PIL import Image

    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)


def state(page: Any) -> str:
    """Return the page's state (the status region's data-state)."""
    return str(page.get_attribute("#status", "data-state"))


def wait_for_state(page: Any, wanted: str, timeout_s: float) -> None:
    """Wait until the page shows `wanted`; on timeout, fail with what it shows instead."""
    deadline = time.monotonic() + timeout_s
    while state(page) != wanted:
        if time.monotonic() > deadline:
            pytest.fail(f"the page shows {state(page)!r} ({page.inner_text('#status')}), not {wanted!r}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Rendered:
    """One frame the Serve app rendered for the gateway: its request and the frame before video coding."""

    request: RenderRequest
    frame: npt.NDArray[np.float64]

    @property
    def seq(self) -> int:
        return self.request.seq


class RecordingRenderer:
    """The gateway's renderer (the Serve app), keeping the last `keep` requests and frames for the tests."""

    def __init__(self, inner: ServeRenderer, keep: int = 400) -> None:
        self.inner = inner
        self._rendered: deque[Rendered] = deque(maxlen=keep)
        self._lock = threading.Lock()  # appended on the servers' loop, read from the test's thread

    async def render(self, request: RenderRequest) -> RenderResult:
        result = await self.inner.render(request)
        with self._lock:
            self._rendered.append(Rendered(request, result.frame.astype(np.float64)))
        return result

    async def target_state(self, target_id: str) -> TargetState:
        return await self.inner.target_state(target_id)

    async def healthy(self) -> bool:
        return await self.inner.healthy()

    def rendered(self, session: str) -> list[Rendered]:
        """Return the kept renders of one session, oldest first."""
        with self._lock:
            return [r for r in self._rendered if r.request.session_id == session]


@dataclass
class Gateway:
    """The gateway under test, serving in the background thread, and what its renderer rendered."""

    running: RunningGateway
    thread: Any  # conftest's ServerThread: call(coroutine) runs it on the servers' loop
    renderer: RecordingRenderer

    @property
    def url(self) -> str:
        return self.running.url

    def room(self, name: str = ROOM) -> dict[str, Any]:
        """Return GET /api/rooms/{name} (status asserted 200)."""
        status, body = get_json(f"{self.url}/api/rooms/{name}", token("view", name))
        assert status == 200, body
        return dict(body)

    def render(self, request: RenderRequest) -> npt.NDArray[np.float64]:
        """Return the frame the Serve app renders for `request` now."""
        result: RenderResult = self.thread.call(self.renderer.inner.render(request))
        return result.frame.astype(np.float64)


@pytest.fixture(scope="module")
def gateway(avatar_app: ServingConfig, server_thread: Any) -> Iterator[Gateway]:
    """The real gateway rendering through the Serve app, in the background loop."""
    # previous_frames=0: the test generator's random weights never settle when fed its own faces, so each
    # frame is a function of the coefficient window alone (as in tests/signaling/test_live_sessions.py).
    config = GatewayConfig(port=0, placeholder_size_px=PLACEHOLDER_PX, app_name=avatar_app.app_name, previous_frames=0)
    renderer = RecordingRenderer(ServeRenderer(avatar_app.app_name))
    running = server_thread.call(start_gateway(config, renderer, SECRET))
    try:
        yield Gateway(running, server_thread, renderer)
    finally:
        server_thread.call(running.stop())


@dataclass
class SenderPage:
    """The live sender page and every URL it requested."""

    page: Any
    requests: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        return dict(self.page.evaluate("window.headcast.stats()"))

    def history(self, last: int = 60) -> list[dict[str, Any]]:
        return list(self.page.evaluate(f"window.headcast.history().slice(-{last})"))


@pytest.fixture(scope="module")
def sender(browser: Any, gateway: Gateway) -> Iterator[SenderPage]:
    """The sender page, live in ROOM as TARGET, fed by the fake camera."""
    context = browser.new_context()
    page = context.new_page()
    sender = SenderPage(page)
    page.on("request", lambda request: sender.requests.append(request.url))
    started = time.monotonic()
    page.goto(f"{gateway.url}/send?room={ROOM}&target={TARGET}#token={token('send')}")
    wait_for_state(page, "live", 90)
    print(f"sender page live {time.monotonic() - started:.1f} s after opening (camera, offer, MediaPipe)")
    try:
        yield sender
    finally:
        context.close()


def rendered_at(page: Any) -> Callable[[], bool]:
    """Return a condition: the page's avatar video shows frames of the output size (not the placeholder)."""
    return lambda: bool(page.evaluate("document.querySelector('#avatar').videoWidth") == 128)


def number(page: Any, stat: str) -> float:
    """Return the number a page shows for `data-stat="stat"`."""
    text = page.inner_text(f'[data-stat="{stat}"]')
    found = re.match(r"-?\d+(\.\d+)?", text)
    assert found, f"{stat} shows {text!r}"
    return float(found.group(0))


# ---------------------------------------------------------------------------------------------------- live


def test_the_sender_page_tracks_the_clip_and_drives_the_avatar(
    gateway: Gateway, sender: SenderPage, artifacts: Path
) -> None:
    until(lambda: gateway.room()["frames_rendered"] >= 40, 90, "40 rendered frames")
    room = gateway.room()
    assert (room["target"], room["fps"]) == (TARGET, 25)
    until(lambda: (sender.stats().get("roundTrips") or 0) >= 20, 60, "20 measured round trips")
    stats = sender.stats()
    assert stats["connected"] and stats["framesSent"] >= 40
    # The clip's man is found in almost every frame (one frame at the loop's cut may be lost).
    assert stats["facesFound"] >= 0.9 * stats["framesTracked"]
    assert stats["bytesPerFrame"] <= 80  # the budget: ~25 B compact deltas with a 74 B key frame every 30
    assert stats["droppedOffline"] == 0 and stats["droppedCongested"] == 0
    # The page shows its live numbers.
    assert number(sender.page, "uplink") > 0
    assert number(sender.page, "fps") > 0  # how many a second depends on this machine's speed
    assert number(sender.page, "latency") > 0
    assert number(sender.page, "video") > 0
    until(rendered_at(sender.page), 60, "the self-view showing rendered frames")
    print(
        f"tracking {stats['trackingMsMean']:.1f} ms/frame in the page; {stats['sentFps']:.1f} fps sent; "
        f"{stats['bytesPerFrame']:.1f} B/frame ({stats['keyFrames']} key frames of {stats['framesSent']}); "
        f"uplink {stats['uplinkKbitS']:.2f} kbit/s; round trip p50 {stats['roundTripMsP50']:.0f} ms "
        f"p95 {stats['roundTripMsP95']:.0f} ms; ping {stats['rttMs']:.1f} ms; self-view {stats['videoFps']:.1f} fps"
    )
    sender.page.screenshot(path=str(artifacts / "sender.png"), full_page=True)
    # Everything the page loaded came from the gateway: no CDN, no model hub (MediaPipe's usage log is
    # blocked by the page's Content-Security-Policy before it becomes a request).
    origins = {urlsplit(url).netloc for url in sender.requests if not url.startswith(("data:", "blob:"))}
    assert origins == {urlsplit(gateway.url).netloc}


def test_several_viewers_watch_the_avatar(browser: Any, gateway: Gateway, sender: SenderPage, artifacts: Path) -> None:
    link = f"{gateway.url}/view?room={ROOM}#token={token('view')}"
    viewers = [browser.new_context().new_page() for _ in range(2)]
    try:
        for viewer in viewers:
            viewer.goto(link)
        for viewer in viewers:
            wait_for_state(viewer, "live", 60)
            until(rendered_at(viewer), 60, "a rendered frame at the viewer")
        assert gateway.room()["viewers"] == 2
        frames = []
        for _ in range(16):  # 3 s of the 6.3 s loop always hold moving frames or the cut from closed to open
            frame = capture(viewers[0])
            assert frame is not None
            frames.append(frame)
            time.sleep(0.2)
        grey = np.full_like(frames[0], 128.0)
        for frame in frames:
            # Not the gateway's mid-grey placeholder: a rendered face with structure.
            assert np.abs(frame - grey).mean() > 5 and frame.std() > 10
        changes = [np.abs(a - b).mean() for a, b in itertools.pairwise(frames)]
        assert max(changes) > 2, f"the avatar did not change over 3 s: {changes}"
        assert viewers[1].evaluate("window.headcast.stats().framesReceived") > 10
        viewers[0].screenshot(path=str(artifacts / "viewer.png"), full_page=True)
        fps = viewers[0].evaluate("window.headcast.stats().videoFps")
        print(
            f"viewer: {fps:.1f} fps; mean |difference| of frames 0.2 s apart: {', '.join(f'{c:.1f}' for c in changes)}"
        )
    finally:
        for viewer in viewers:
            viewer.context.close()


def held_phase(history: list[dict[str, Any]], window_ms: float) -> tuple[str, list[dict[str, Any]]] | None:
    """Return ("closed" | "open", the window's entries) when the camera has held one of the two still frames
    for the last `window_ms`: every frame has a face and was sent, the raw mouth scores and the pose are still."""
    if not history or history[0]["t"] > history[-1]["t"] - window_ms:
        return None
    recent = [e for e in history if e["t"] >= history[-1]["t"] - window_ms]
    if len(recent) < 4 or not all(e["face"] and e["sent"] for e in recent):
        return None
    mouth = [sum(e["raw"][name] for name in MOUTH) for e in recent]
    rotation = np.array([e["rotation"] for e in recent])
    if max(mouth) - min(mouth) > 0.05 or np.ptp(rotation, axis=0).max() > math.radians(0.3):
        return None
    level = float(np.mean(mouth))
    phase = "closed" if level < 0.3 else "open" if level > 1.0 else None
    return (phase, recent) if phase else None


def mean_difference(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Return the mean absolute difference of two frames (0-255 scale)."""
    return float(np.abs(a - b).mean())


def blocks(frame: npt.NDArray[np.float64], side: int = 4) -> npt.NDArray[np.float64]:
    """Return the means of the frame's side×side pixel blocks."""
    height, width, channels = frame.shape
    return frame.reshape(height // side, side, width // side, side, channels).mean(axis=(1, 3))


def mouth_of(blendshapes: npt.NDArray[np.float32]) -> float:
    """Return the sum of the four lip-opening blendshapes (jawOpen barely moves on the clip)."""
    return float(sum(blendshapes[BLENDSHAPE_INDEX[name]] for name in MOUTH))


def with_blendshapes(request: RenderRequest, blendshapes: npt.NDArray[np.float32]) -> RenderRequest:
    """Return `request` with every window frame's expression replaced, its pose kept."""
    frames = tuple(
        dataclasses.replace(f, coefficients=dataclasses.replace(f.coefficients, blendshapes=blendshapes))
        for f in request.frames
    )
    return dataclasses.replace(request, frames=frames)


def test_the_avatar_opens_its_mouth_when_the_clip_does(
    browser: Any, gateway: Gateway, sender: SenderPage, artifacts: Path
) -> None:
    """The clip's held mouth-closed and mouth-open frames, tracked in the page, reach the renderer through the
    wire and change the avatar: in the frames rendered, in the video a viewer receives, and — with the pose
    held fixed by re-rendering — through the mouth alone.

    Why not the video's pixels alone: the test generator's random weights turn any change of its input into a
    new texture (0.1° of head turn, or 0.1 % of size, moves a frame by ~2/255), and the gateway's running mean
    of the source's pose keeps moving for seconds after the clip cuts to a held frame, so VP8 never settles on
    one picture. The frames rendered before video coding, and re-renders with only the mouth swapped, are exact.
    """
    viewer = browser.new_context().new_page()
    try:
        viewer.goto(f"{gateway.url}/view?room={ROOM}#token={token('view')}")
        wait_for_state(viewer, "live", 60)
        session = gateway.running.gateway.rooms[ROOM].sender.session_id
        phases: dict[str, tuple[list[dict[str, Any]], list[Rendered], npt.NDArray[np.float64]]] = {}
        # The fake camera loops every 6.3 s. On a loaded machine rendering falls behind and most of a held
        # phase's packets are superseded (newest wins): a phase rendered fewer than twice is waited for again
        # on a later loop rather than judged.
        deadline = time.monotonic() + 150
        undersampled: dict[str, int] = {}
        while len(phases) < 2:
            if time.monotonic() > deadline:
                pytest.fail(f"the held mouth phases were not both rendered twice (seen: {sorted(phases)}; "
                            f"renders of the best under-sampled ones: {undersampled})")  # fmt: skip
            # Held for 0.8 s: the smoothed coefficients have settled and renders of them are on the video.
            found = held_phase(sender.history(), window_ms=800)
            if found is None or found[0] in phases:
                time.sleep(0.05)
                continue
            phase, entries = found
            shown = capture(viewer)
            seqs = {e["seq"] for e in entries}
            renders = [r for r in gateway.renderer.rendered(session) if r.seq in seqs]
            if shown is None or len(renders) < 2:
                undersampled[phase] = max(undersampled.get(phase, 0), len(renders))
                time.sleep(0.05)
                continue
            phases[phase] = (entries, renders, shown)
        closed_entries, closed, closed_shown = phases["closed"]
        open_entries, opened, open_shown = phases["open"]

        # 1. The page's coefficients carry the mouth, and the gateway renders what the page sent (decoded wire).
        page_mouth = {p: float(np.mean([e["mouth"] for e in phases[p][0]])) for p in phases}
        wire_mouth = {p: float(np.mean([mouth_of(r.request.frames[-1].coefficients.blendshapes) for r in phases[p][1]]))
                      for p in phases}  # fmt: skip
        assert page_mouth["open"] - page_mouth["closed"] > 1.0
        for p in phases:
            assert wire_mouth[p] == pytest.approx(page_mouth[p], abs=4 * wire.BLENDSHAPE_STEP)  # a step per field
        rotations = (open_entries[-1]["rotation"], closed_entries[-1]["rotation"])
        turn = math.degrees(float(np.linalg.norm(np.subtract(*rotations))))
        assert turn < 3  # the two held frames show the head in nearly the same pose

        # 2. The mouth alone changes the frame: the open phase's last request re-rendered as it was gives the same
        #    frame (rendering is deterministic); with the closed phase's expression and its own pose, another one.
        request = opened[-1].request
        assert mean_difference(gateway.render(request), opened[-1].frame) == 0
        expression = closed[-1].request.frames[-1].coefficients.blendshapes
        closed_mouth = gateway.render(with_blendshapes(request, expression))
        mouth_only = mean_difference(closed_mouth, opened[-1].frame)
        # Rendering is deterministic, so 0 means the mouth did not reach the renderer. Measured 1.84 over the
        # whole frame: the target's warped frames move only around the mouth (≈ 8.5 when G painted every pixel).
        assert mouth_only > 0.5

        # 3. The viewer's video shows each phase's renders: each captured frame is nearer to the renders of its
        #    own phase than to those of the other. Compared as 4×4-pixel block means: the video's 4:2:0 chroma and
        #    VP8 keep little of the test generator's pixel-scale texture (per pixel even the right render is
        #    ~12/255 away), while the blocks keep what distinguishes the phases (≈ 1.2 against 2.7).
        def nearest(shown: npt.NDArray[np.float64], renders: list[Rendered]) -> float:
            return min(mean_difference(blocks(shown), blocks(r.frame)) for r in renders)

        assert nearest(closed_shown, closed) < nearest(closed_shown, opened)
        assert nearest(open_shown, opened) < nearest(open_shown, closed)
        # For the record: how much the renders move within a held phase (the pose mean's drift) and across.
        within = max(mean_difference(a.frame, b.frame) for r in (closed, opened) for a, b in itertools.pairwise(r))
        across = mean_difference(closed[-1].frame, opened[-1].frame)

        print(
            f"mouth coefficients {page_mouth['closed']:.2f} → {page_mouth['open']:.2f} (page), "
            f"{wire_mouth['closed']:.2f} → {wire_mouth['open']:.2f} (rendered); head turn {turn:.1f}°; "
            f"rendered frames' mean |difference| (0-255): mouth alone {mouth_only:.2f}, consecutive within a phase "
            f"≤ {within:.2f}, across the phases {across:.2f}; viewer frame to the nearest render of its own / the "
            f"other phase: "
            f"{nearest(closed_shown, closed):.1f} / {nearest(closed_shown, opened):.1f} (closed), "
            f"{nearest(open_shown, opened):.1f} / {nearest(open_shown, closed):.1f} (open)"
        )
        save_png(artifacts / "avatar-mouth-closed.png", closed[-1].frame)
        save_png(artifacts / "avatar-mouth-open.png", opened[-1].frame)
        save_png(artifacts / "avatar-mouth-open-at-the-viewer.png", open_shown)
        save_png(artifacts / "avatar-mouth-alone-difference-x4.png", 4 * np.abs(closed_mouth - opened[-1].frame))
    finally:
        viewer.context.close()


# ------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("page", "query", "bearer", "wanted", "words"),
    [
        ("send", f"room={ROOM}-x&target={TARGET}", token("send", f"{ROOM}-x", secret=b"w" * 32), "unauthorized",
         "token was refused"),
        ("send", f"room={ROOM}-x&target={TARGET}", token("send", f"{ROOM}-x", targets=("man",)), "target-not-allowed",
         f"does not allow driving “{TARGET}”"),
        ("view", "room=nobody-here", token("view", "nobody-here"), "unknown-room", "“nobody-here” does not exist"),
        ("view", f"room={ROOM}", "not-a-token", "unauthorized", "token was refused"),
        ("view", f"room={ROOM}", token("view", "another-room"), "forbidden", "does not open room"),
    ],
)  # fmt: skip
def test_refusals_are_shown_in_the_page(
    browser: Any, gateway: Gateway, artifacts: Path, page: str, query: str, bearer: str, wanted: str, words: str
) -> None:
    tab = browser.new_context().new_page()
    try:
        tab.goto(f"{gateway.url}/{page}?{query}#token={bearer}")
        wait_for_state(tab, wanted, 60)
        status = tab.locator("#status")
        assert words in status.inner_text()
        assert status.get_attribute("role") == "status" and status.get_attribute("aria-live") == "assertive"
        assert status.get_attribute("data-severity") == "error"
        assert tab.locator("#start, #join").is_enabled()  # the person can fix the form and try again
        tab.screenshot(path=str(artifacts / f"refused-{page}-{wanted}.png"))
    finally:
        tab.context.close()
    assert f"{ROOM}-x" not in gateway.running.gateway.rooms  # a refusal opens no room


def test_a_denied_camera_and_a_missing_face_are_shown(browser: Any, gateway: Gateway, artifacts: Path) -> None:
    link = f"{gateway.url}/send?room={ROOM}-camera&target={TARGET}#token={token('send', f'{ROOM}-camera')}"
    denied = browser.new_context()
    denied.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));"
    )
    try:
        tab = denied.new_page()
        tab.goto(link)
        wait_for_state(tab, "camera-denied", 60)
        assert "Allow this site to use the camera" in tab.inner_text("#status")
        tab.screenshot(path=str(artifacts / "refused-camera-denied.png"))
    finally:
        denied.close()
    # A camera that shows no face: a plain grey canvas stream.
    blank = browser.new_context()
    blank.add_init_script(
        """navigator.mediaDevices.getUserMedia = async () => {
             const canvas = Object.assign(document.createElement('canvas'), {width: 320, height: 240});
             const context = canvas.getContext('2d');
             setInterval(() => { context.fillStyle = '#777'; context.fillRect(0, 0, 320, 240); }, 40);
             return canvas.captureStream(25);
           };"""
    )
    try:
        tab = blank.new_page()
        tab.goto(link)
        wait_for_state(tab, "no-face", 90)
        assert "No face in view" in tab.inner_text("#status")
        assert tab.get_attribute("#face", "data-face") == "missing"
        assert tab.evaluate("window.headcast.stats().framesSent") == 0
        tab.screenshot(path=str(artifacts / "sender-no-face.png"))
    finally:
        blank.close()


def test_a_lost_connection_is_shown_and_recovered(browser: Any, gateway: Gateway, sender: SenderPage) -> None:
    viewer = browser.new_context().new_page()
    try:
        viewer.goto(f"{gateway.url}/view?room={ROOM}#token={token('view')}")
        wait_for_state(viewer, "live", 60)
        before = sender.stats()
        room = gateway.running.gateway.rooms[ROOM]

        async def drop() -> None:
            await room.sender_peer.pc.close()  # the gateway's side of the sender's connection goes away

        gateway.thread.call(drop())
        # The sender notices at once (its data channel closes) and offers again; the room reopens.
        wait_for_state(sender.page, "reconnected", 60)
        states = sender.page.evaluate("window.headcast.states")
        lost = len(states) - 1 - states[::-1].index("lost")
        assert states[lost + 1] == "reconnecting" and "reconnected" in states[lost:]
        until(lambda: gateway.running.gateway.rooms.get(ROOM) not in (None, room), 60, "the room reopened")
        until(lambda: gateway.room()["frames_rendered"] >= 10, 60, "frames rendered after the reconnection")
        after = sender.stats()
        # A new session, started with a key frame (the new session's decoder holds no reference).
        assert after["connections"] == before["connections"] + 1 and after["keyFrames"] > before["keyFrames"]
        # The viewer's connection closed with the old room: it hears nothing, says so, and rejoins the new one.
        wait_for_state(viewer, "reconnected", 90)
        viewer_states = viewer.evaluate("window.headcast.states")
        assert "lost" in viewer_states and "reconnecting" in viewer_states
        until(rendered_at(viewer), 60, "rendered frames at the viewer again")
        print(f"reconnected: sender {sender.page.inner_text('#status')!r}; viewer {viewer.inner_text('#status')!r}")
    finally:
        viewer.context.close()


def test_a_revoked_target_ends_the_pages_sessions_with_the_reason(
    browser: Any, gateway: Gateway, avatar_app: ServingConfig, avatar_bundle: Any, artifacts: Path
) -> None:
    from inference.registry import TargetRegistry

    registry = TargetRegistry(str(avatar_app.registry))
    target = f"revocable-{uuid.uuid4().hex[:8]}"  # a copy of the woman: revoking it touches no other test
    registry.save(dataclasses.replace(avatar_bundle, metadata=dataclasses.replace(avatar_bundle.metadata,
                                                                                  target_id=target)))  # fmt: skip
    room = f"{ROOM}-revoked"
    sending, viewing = browser.new_context().new_page(), browser.new_context().new_page()
    try:
        sending.goto(f"{gateway.url}/send?room={room}&target={target}#token={token('send', room, (target,))}")
        wait_for_state(sending, "live", 90)
        viewing.goto(f"{gateway.url}/view?room={room}#token={token('view', room)}")
        wait_for_state(viewing, "live", 60)
        until(rendered_at(viewing), 60, "a rendered frame at the viewer")
        registry.revoke(target, "alice", "consent withdrawn")
        for page in (sending, viewing):
            wait_for_state(page, "target-revoked", 60)
            assert "can no longer be driven" in page.inner_text("#status")
            assert page.get_attribute("#status", "data-severity") == "error"
            assert page.locator("#start, #join").is_enabled()  # ended: not reconnecting, the form is back
        sending.screenshot(path=str(artifacts / "revoked-sender.png"))
        viewing.screenshot(path=str(artifacts / "revoked-viewer.png"))
        until(lambda: room not in gateway.running.gateway.rooms, 60, "the room to close")
        assert "reconnecting" not in sending.evaluate("window.headcast.states")[-3:]
        # Starting again is refused with the same reason.
        sending.click("#start")
        until(lambda: "was withdrawn" in sending.inner_text("#status"), 60, "the refusal of a new session")
    finally:
        sending.context.close()
        viewing.context.close()
