"""The enrolment page end to end: Chromium's fake camera plays the sample clip's woman into /enrol, which shows
framing hints from MediaPipe in the page, counts down, records 10 s with MediaRecorder, previews it, uploads it
in chunks (the first chunk's connection is made to fail: the page resumes) and follows the real enrolment job
(configs/enrol.yaml tiny-ci, 10 fine-tuning steps, on a private local Ray head) until the target is ready; the
registry then holds her, with the consent record naming the recording the page hashed.

Chromium is launched here, not through conftest's session browser: its fake camera is fixed per process, and
this one plays the woman. Playwright's sync API runs in a worker thread of its own, so it never meets the
session browser's loop. Screenshots go to test-artifacts/browser/ (the path is printed).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from base import assets
from headcast.enrolment import JobEnroller
from signaling.auth import mint_token
from signaling.config import EnrolmentConfig, GatewayConfig
from signaling.gateway import start_gateway
from signaling.renderer import ServeRenderer

pytestmark = pytest.mark.slow

SECRET = b"n" * 32
TARGET = "woman"
SUBJECT = "The woman of the sample clip"
# Her first shot (frames 1-72) forwards then backwards, 142 frames that Chromium loops without a cut, at 8 fps
# (17.75 s): a 10 s recording holds ~80 frames, above the enrolment's 50 face frames + tiny-ci's 10 held out,
# and few enough that tracking and fitting them takes ~30 s on two cores (120 frames at 12 fps took 47 s).
CAMERA_SIZE = (360, 264)
CAMERA_FPS = 8
WOMAN = range(1, 73)
CHUNK_BYTES = 256 * 1024  # several chunks for a ~1 MB recording, so the resume path is taken
JOB_TIMEOUT_S = 240
# Fine-tuning steps: ~0.7 s each here, so the fine-tuning stage lasts long enough for the page's 1 s polls
# (each a Ray dashboard round trip on two busy cores) to show it several times.
STEPS = 10


def write_woman_y4m(path: Path) -> Path:
    """Write the fake camera's .y4m (yuv420p) of the sample clip's woman and return its path."""
    import av

    with av.open(str(assets.resolve("sample_clip"))) as clip:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(clip.decode(video=0)) if i in WOMAN]
    sequence = frames + frames[-2:0:-1]
    width, height = CAMERA_SIZE
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{CAMERA_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in sequence:
            out.write(b"FRAME\n" + av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width, height, "yuv420p")
                      .to_ndarray().tobytes())  # fmt: skip
    return path


@dataclass
class Observed:
    """What the page showed on its way, for the assertions (gathered in the browser's thread)."""

    hints: dict[str, str] = field(default_factory=dict)
    recording: dict[str, Any] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    job_bars: list[tuple[float, float]] = field(default_factory=list)
    etas: list[str] = field(default_factory=list)
    failed_puts: list[str] = field(default_factory=list)
    status: str = ""
    result_link: str = ""
    console_errors: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    screenshots: list[Path] = field(default_factory=list)


PAGE_STATE_JS = """() => {
  const status = document.getElementById('status');
  const section = document.getElementById('progress-section');
  const bar = document.getElementById('job-progress');
  return {state: status.dataset.state, text: status.textContent, stage: section.dataset.stage || '',
          value: bar.hasAttribute('value') ? bar.value : -1, max: bar.max,
          eta: document.getElementById('job-eta').textContent};
}"""


def drive_enrol_page(url: str, camera: Path, artifacts: Path, chromium: tuple[str, tuple[str, ...]]) -> Observed:
    """Enrol the fake camera's person through the page; return what it showed (runs in its own thread)."""
    from playwright.sync_api import Route, expect, sync_playwright

    seen = Observed()
    began = time.monotonic()

    def shot(page: Any, name: str) -> None:
        path = artifacts / f"enrol-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        seen.screenshots.append(path)

    def fail_first_put(route: Route) -> None:
        # The first chunk's connection dies before the gateway sees it: the page must ask where to resume.
        if route.request.method == "PUT" and not seen.failed_puts:
            seen.failed_puts.append(route.request.headers.get("upload-offset", "?"))
            route.abort("connectionreset")
        else:
            route.fallback()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium[0], args=[*chromium[1], f"--use-file-for-fake-video-capture={camera}"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: seen.console_errors.append(str(error)))
            page.route("**/api/uploads/*", fail_first_put)
            token = mint_token(SECRET, "alice", "studio", "enrol", (TARGET,))
            page.goto(f"{url}/enrol?target={TARGET}#token={token}")
            page.fill("#subject", SUBJECT)  # the token's subject ("alice") is the default; the recorded person differs
            expect(page.locator("#hint-face")).to_have_attribute("data-hint", "found", timeout=90_000)
            expect(page.locator("#hint-light")).to_have_attribute("data-hint", "ok")
            seen.hints = {"face": page.inner_text("#hint-face"), "light": page.inner_text("#hint-light")}
            seen.timings_s["face hints"] = time.monotonic() - began
            shot(page, "1-framing")
            page.click("#record")
            expect(page.locator("#status")).to_have_attribute("data-state", "countdown")
            expect(page.locator("#countdown")).to_be_visible()
            expect(page.locator("#status")).to_have_attribute("data-state", "recording", timeout=30_000)
            shot(page, "2-recording")
            expect(page.locator("#stop")).to_be_enabled(timeout=60_000)
            page.click("#stop")
            expect(page.locator("#preview-figure")).to_be_visible(timeout=60_000)
            seen.timings_s["recorded"] = time.monotonic() - began
            info = page.locator("#recording-info")
            seen.recording = {
                "text": info.inner_text(),
                "sha256": info.get_attribute("data-sha256"),
                "bytes": int(info.get_attribute("data-bytes") or 0),
                "warning_hidden": page.locator("#recording-warning").is_hidden(),
                "enrol_disabled_before_consent": page.locator("#enrol").is_disabled(),
                "enrol_help": page.inner_text("#enrol-help"),
            }
            shot(page, "3-preview")
            page.check("#consent")
            page.click("#enrol")
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while time.monotonic() < deadline:
                now = page.evaluate(PAGE_STATE_JS)
                if not seen.states or seen.states[-1] != now["state"]:
                    seen.states.append(now["state"])
                if now["stage"] and (not seen.stages or seen.stages[-1] != now["stage"]):
                    seen.stages.append(now["stage"])
                    if now["stage"] == "fine-tuning":
                        shot(page, "4-fine-tuning")
                if now["value"] >= 0:
                    seen.job_bars.append((now["value"], now["max"]))
                if now["eta"]:
                    seen.etas.append(now["eta"])
                if now["state"] == "enrolling":
                    seen.timings_s.setdefault("uploaded", time.monotonic() - began)
                if now["state"] in ("ready", "refused", "failed", "error", "unavailable", "forbidden"):
                    break
                time.sleep(0.25)
            seen.timings_s["job ended"] = time.monotonic() - began
            seen.status = page.inner_text("#status")
            link = page.locator("#result a")
            seen.result_link = link.get_attribute("href") or "" if link.count() else ""
            shot(page, "5-ready")
        finally:
            browser.close()
    return seen


def test_the_enrolment_page_records_uploads_and_follows_the_job_until_the_target_is_ready(
    enrolment_jobs: str, server_thread: Any, artifacts: Path, tmp_path: Path, chromium: tuple[str, tuple[str, ...]]
) -> None:
    camera = write_woman_y4m(tmp_path / "woman.y4m")
    uploads = tmp_path / "uploads"
    config = GatewayConfig(port=0, enrolment=EnrolmentConfig(uploads_dir=uploads, max_chunk_bytes=CHUNK_BYTES))
    enroller = JobEnroller(enrolment_jobs, profile="tiny-ci", steps=STEPS)
    running = server_thread.call(start_gateway(config, ServeRenderer("absent"), SECRET, enroller))
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="playwright") as pool:
            seen = pool.submit(drive_enrol_page, running.url, camera, artifacts, chromium).result(
                timeout=JOB_TIMEOUT_S + 120
            )
    finally:
        server_thread.call(running.stop())
    print("enrolment page screenshots:", *map(str, seen.screenshots), sep="\n  ")
    print("timings (s since the page opened):", {k: round(v, 1) for k, v in seen.timings_s.items()})
    print("states:", seen.states, "stages:", seen.stages)

    # MediaPipe logs its start as a console error and tries to send usage logs to Google, which the page's
    # Content-Security-Policy refuses; the cut connection is reported. Anything else is a fault.
    expected = ("TensorFlow Lite XNNPACK delegate", "odml.pa.googleapis.com", "net::ERR_CONNECTION_RESET")
    unexpected = [text for text in seen.console_errors if not any(e in text for e in expected)]
    assert not unexpected, unexpected
    assert sum("ERR_CONNECTION_RESET" in text for text in seen.console_errors) == 1
    assert "centred" in seen.hints["face"] and seen.hints["light"] == "Lighting is good.", seen.hints
    # 10 s at the camera's 8 fps, VP8 in WebM: hashed in the page, nothing to warn about.
    assert 10.0 <= float(seen.recording["text"].split(" s")[0]) < 13.0, seen.recording
    assert seen.recording["bytes"] > 0 and len(seen.recording["sha256"] or "") == 64, seen.recording
    assert seen.recording["warning_hidden"] and seen.recording["enrol_disabled_before_consent"], seen.recording
    assert seen.recording["enrol_help"] == "To enrol, give the consent.", seen.recording
    assert seen.failed_puts == ["0"], "the first chunk's connection was cut"
    assert seen.states[-1] == "ready", (seen.status, seen.states)
    assert seen.status == f"Ready: target {TARGET} can now be driven."
    assert seen.result_link == f"/send?target={TARGET}"
    assert "retrying" in seen.states and "enrolling" in seen.states, seen.states
    assert "fine-tuning" in seen.stages and "tracking, checking and fitting the recording" in seen.stages
    # The bar follows the job's steps (how many of them a 1 s poll catches depends on the load), then fills.
    steps = [value for value, top in seen.job_bars if top == STEPS]
    assert steps and steps == sorted(steps) and 1 <= steps[0] <= STEPS, seen.job_bars
    assert seen.job_bars[-1] == (1, 1), seen.job_bars
    assert any("left" in eta for eta in seen.etas), "an ETA was shown while fine-tuning"

    from inference.registry import TargetRegistry

    metadata = TargetRegistry(enrolment_jobs).metadata(TARGET)
    assert (metadata.owner, metadata.consent.subject) == ("alice", SUBJECT)
    assert metadata.consent.recording_sha256 == seen.recording["sha256"], "the consent names the page's recording"
    assert not list(uploads.iterdir()), "the finished job's upload is removed"


def test_the_fake_camera_plays_the_womans_first_shot_forwards_and_back(tmp_path: Path) -> None:
    import av

    path = write_woman_y4m(tmp_path / "woman.y4m")
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        assert (stream.average_rate, stream.width, stream.height) == (CAMERA_FPS, *CAMERA_SIZE)
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 2 * len(WOMAN) - 2
    # Frame k going forwards is frame k coming back, so the loop Chromium plays has no cut.
    digests = [hashlib.sha256(f.tobytes()).hexdigest() for f in frames]
    assert all(digests[k] == digests[len(frames) - k] for k in range(1, len(WOMAN) - 1))


# In-page: the framing module's judgements on made-up faces and pictures (a face box is 0.8 h wide, h high).
FRAMING_JS = """async () => {
  const f = await import('/static/enrol-framing.js');
  const face = (cx, cy, h) => f.judgeFace({x0: cx - 0.4 * h, x1: cx + 0.4 * h, y0: cy - h / 2, y1: cy + h / 2});
  const picture = (left, right) => {  // 8×4 RGBA: the left half one grey, the right half another
    const data = new Uint8ClampedArray(8 * 4 * 4);
    for (let i = 0; i < 32; i += 1) data.fill((i % 8) < 4 ? left : right, 4 * i, 4 * i + 3);
    return new ImageData(data, 8, 4);
  };
  const landmarks = [[0.3, 0.2, 0], [0.7, 0.8, 0.1], [0.5, 0.5, -0.1]];
  return {
    faces: [face(0.5, 0.5, 0.4), f.judgeFace(null), face(0.5, 0.5, 0.1), face(0.5, 0.5, 0.9), face(0.2, 0.5, 0.4),
            face(0.85, 0.5, 0.4), face(0.5, 0.2, 0.4), face(0.5, 0.75, 0.4)].map(([what, hint]) => [what, hint]),
    box: f.faceBox(landmarks),
    light: [f.judgeLight(null)[0], f.judgeLight(39.9)[0], f.judgeLight(40)[0], f.judgeLight(215)[0],
            f.judgeLight(215.1)[0]],
    means: [f.meanLuminance(picture(0, 200)), f.meanLuminance(picture(0, 200), {x0: 0.5, x1: 1, y0: 0, y1: 1}),
            f.meanLuminance(picture(0, 200), {x0: 0.5, x1: 0.5, y0: 0, y1: 1})],
  };
}"""


def test_the_framing_hints_judge_presence_size_position_and_light(browser: Any, pages_url: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{pages_url}/view")  # any page of the origin: the module comes from its /static/
        judged = page.evaluate(FRAMING_JS)
    finally:
        context.close()
    faces = [what for what, _ in judged["faces"]]
    assert faces == ["found", "none", "small", "large", "off-centre", "off-centre", "off-centre", "off-centre"]
    assert [hint.split("near the ")[-1] for what, hint in judged["faces"][4:]] == [
        "left of the picture.", "right of the picture.", "top of the picture.", "bottom of the picture."]  # fmt: skip
    assert judged["box"] == {"x0": 0.3, "y0": 0.2, "x1": 0.7, "y1": 0.8}
    # configs/enrol.yaml's dark_luminance 40 and bright_luminance 215 are the limits, inclusive of "ok".
    assert judged["light"] == ["unknown", "dark", "ok", "ok", "bright"]
    mean, right_half, empty = judged["means"]
    assert mean == pytest.approx(100.0, abs=0.01) and right_half == pytest.approx(200.0, abs=0.01)
    assert empty is None
