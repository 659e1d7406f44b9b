"""The demo on the embedded default: the sample clip's man drives a live avatar of its woman.

Everything runs through the real stack on this machine: local Ray with the Serve app `avatar`,
the WebRTC gateway on loopback, the Python edge streaming the man's coefficients (compact wire
codec over the "coeffs" data channel) and a viewer peer recording the avatar's video track.

The woman is enrolled once and cached (`<cache>/demo`): a small stage-1 base pretrained on the
synthetic corpus, then her few-shot fine-tuning from the clip — both at the CPU profile `cpu`
(128² faces, composited to 256²), so the first run takes a few minutes and later runs seconds. Her
avatar is her own face: four of her frames warped along the mesh to the man's pose and expression
and refined by the generator (inference/warp.py). A GPU enrolment at `base` (256²) is the real
configuration.

Outputs: avatar.mp4 (what a viewer received), side-by-side.mp4 (source | NMFC | warped reference |
avatar, paired by the measured median round trip), contact-sheet.png (the same columns for a few
frames), report.json (latency, bandwidth, drops, per-stage medians from the gateway's /metrics, and
whose face the avatar shows: dlib's identity distance of each received frame to the woman and to
the man).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from base.cache import cache_dir
from base.files import write_json_atomic
from edge.annotate import VideoWriter
from edge.capture import VideoFile
from edge.coefficients import coefficient_stream
from edge.tracks import Tracks
from face3d.coefficients import Coefficients
from face3d.retarget import SourcePoseTracker

if TYPE_CHECKING:
    from training.pretrain import PretrainProgress

DEMO_TARGET = "woman"
DEMO_ROOM = "demo"
AVATAR_VIDEO = "avatar.mp4"
SIDE_BY_SIDE_VIDEO = "side-by-side.mp4"
CONTACT_SHEET = "contact-sheet.png"
REPORT = "report.json"
# The CPU profiles of configs/pretrain.yaml and configs/enrol.yaml the demo's target is trained with.
DEMO_PROFILE = "cpu"
# Stage-1 steps of the demo's base: enough for the fine-tuning to start from faces rather than noise
# (the enrolment benchmark's 200-step base beat random initialisation), short enough for a first run.
BASE_STEPS = 200
# The demo's target is cached per base: a different number of base steps enrols it again.
PANEL_PX = 256


def demo_cache() -> Path:
    """Return where the demo keeps its enrolled target: `<asset cache>/demo`."""
    return cache_dir() / "demo"


def ensure_demo_target(
    clip: Path, cache: Path, log: Callable[[str], None], base_steps: int = BASE_STEPS
) -> tuple[str, bool]:
    """Return (the demo registry's root, whether the target was cached), enrolling the woman when needed."""
    from inference.registry import TargetRegistry

    cache = cache / f"{DEMO_PROFILE}-base-{base_steps}"
    registry = str(cache / "registry")
    if TargetRegistry(registry).versions(DEMO_TARGET):
        return registry, True
    from training.clips import synthetic_corpus
    from training.enrol import EnrolConfig, enrol
    from training.pretrain import pretrain
    from training.trainer_steps import PretrainConfig

    config = PretrainConfig.load(DEMO_PROFILE, steps=base_steps, holdout_frames=0)
    size = config.model_configs()[0].size_px
    log(f"pretraining the demo's base ({base_steps} steps on synthetic faces at {size}², once)")
    base = pretrain(config, synthetic_corpus(4, 48, size, 100), cache / "base", backend="local",
                    progress=tenths(log, "pretraining"))  # fmt: skip
    log("enrolling the clip's woman (few-shot fine-tuning, once)")
    enrol(clip, DEMO_TARGET, registry, "demo", "the sample clip's woman (OpenCV's Megamind.avi, opencv-doc)",
           base.checkpoint, EnrolConfig.load(DEMO_PROFILE), cache / "enrol", person=0,
           progress=tenths(log, "fine-tuning"))  # fmt: skip
    return registry, False


def tenths(log: Callable[[str], None], stage: str) -> Callable[[PretrainProgress], None]:
    """Return a progress callback that logs `stage` at every tenth of its steps, with the time left."""
    shown = -1

    def report(update: PretrainProgress) -> None:
        nonlocal shown
        tenth = update.step * 10 // max(1, update.total)
        if tenth > shown:
            shown = tenth
            log(f"  {stage}: step {update.step}/{update.total}, about {update.eta_s / 60:.0f} min left")

    return report


@dataclass
class SentLog:
    """When each coefficient frame left the edge: seq → (monotonic seconds, source frame index)."""

    sent: dict[int, tuple[float, int]] = field(default_factory=dict)
    coefficients: dict[int, Coefficients] = field(default_factory=dict)


async def paced_stream(frames: list[tuple[int, Coefficients]], log: SentLog) -> AsyncIterator[Coefficients]:
    """Yield the coefficients, logging each one's hand-over time (the client paces them by timestamp)."""
    for index, coefficients in frames:
        log.sent[coefficients.seq] = (time.monotonic(), index)
        log.coefficients[coefficients.seq] = coefficients
        yield coefficients
        await asyncio.sleep(0)


def retimed(tracks: Tracks, person: int, fps: float, repeat: int = 1) -> list[tuple[int, Coefficients]]:
    """Return (frame index, coefficients) of a person's frames renumbered as one continuous stream at `fps`,
    played `repeat` times.

    The man appears in two shots; played back to back, the stream has no pause between them.
    """
    once = list(coefficient_stream(tracks.frames_of(person)))
    out = []
    for seq in range(len(once) * repeat):
        frame, coefficients = once[seq % len(once)]
        out.append((frame.index, dataclasses.replace(coefficients, seq=seq, timestamp_ms=round(seq * 1000 / fps))))
    return out


async def live_session(
    registry: str, stream: list[tuple[int, Coefficients]], fps: float, out_dir: Path, announce: Callable[[str], None]
) -> dict[str, Any]:
    """Return the session's report after streaming `stream` through the gateway to the Serve app and back."""
    from edge.client import SenderClient, ViewerClient
    from inference.serve_app import run_app
    from inference.serve_config import ServingConfig
    from signaling.auth import mint_token
    from signaling.config import GatewayConfig
    from signaling.gateway import start_gateway
    from signaling.renderer import ServeRenderer

    serving = ServingConfig.load(registry=registry, output_size=PANEL_PX)
    run_app(serving)
    secret = secrets.token_bytes(32)  # this run's own: its tokens are good for this gateway only
    gateway = await start_gateway(GatewayConfig.load(port=0), ServeRenderer(serving.app_name), secret)
    clients: list[SenderClient | ViewerClient] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        view_token = mint_token(secret, "demo-viewer", DEMO_ROOM, "view", ttl_s=3600, max_sessions=8)
        announce(f"watch in a browser: {gateway.url}/view?room={DEMO_ROOM}#token={view_token}")
        send_token = mint_token(secret, "demo", DEMO_ROOM, "send", (DEMO_TARGET,))
        received: list[tuple[float, npt.NDArray[np.uint8]]] = []
        sender = SenderClient(gateway.url, send_token, DEMO_TARGET, fps=round(fps),
                              on_frame=lambda rgb: received.append((time.monotonic(), rgb)))  # fmt: skip
        log = SentLog()
        clients.append(sender)
        sending = asyncio.create_task(sender.run(paced_stream(stream, log), realtime=True))
        tasks.append(sending)
        while sender.session is None and not sending.done():
            await asyncio.sleep(0.05)
        viewer = ViewerClient(gateway.url, view_token, record=out_dir / AVATAR_VIDEO, fps=fps)
        clients.append(viewer)
        watching = asyncio.create_task(viewer.run())
        tasks.append(watching)
        stats = await sending
        viewer.stop()
        viewer_stats = await watching
        metrics = {stage: q["p50"] for stage, q in (await stage_quantiles_ms(gateway.url)).items()}
    finally:
        # Ended or interrupted (Ctrl-C cancels this coroutine): the peers leave before the gateway stops,
        # so no connection is left waiting for the other side, and the recording is finished.
        for client in clients:
            client.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gateway.stop()
    return {
        "stats": stats,
        "viewer_frames": viewer_stats.frames_received,
        "received": received,
        "log": log,
        "stage_ms_p50": metrics,
        "gateway": gateway.url,
    }


async def stage_quantiles_ms(url: str, quantiles: tuple[float, ...] = (0.5,)) -> dict[str, dict[str, float]]:
    """Return each of the gateway's stage histograms' quantiles in ms ({"queue": {"p50": …}, …}), from its /metrics."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    # Asynchronously: the gateway answering it may run on this very event loop.
    async with aiohttp.ClientSession() as client, client.get(f"{url}/metrics") as response:
        text = await response.text()
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "headcast_gateway_stage_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.setdefault(sample.labels["stage"], []).append((float(sample.labels["le"]), sample.value))
    return {
        stage: {f"p{round(q * 100)}": round(histogram_quantile(points, q) * 1000, 2) for q in quantiles}
        for stage, points in buckets.items()
    }


def histogram_quantile(points: list[tuple[float, float]], q: float) -> float:
    """Return Prometheus's histogram_quantile: linear interpolation inside the bucket holding the quantile."""
    points = sorted(points)
    total = points[-1][1]
    if total == 0:
        return math.nan
    rank, lower_bound, lower_count = q * total, 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class SideBySide:
    """What `write_side_by_side` wrote: its frame count, and every written frame's panels (source, NMFC,
    warped reference, avatar: each (PANEL_PX, ·, 3) uint8) for the contact sheet and the identity check."""

    frames: int
    panels: list[tuple[npt.NDArray[np.uint8], ...]] = field(default_factory=list)


def write_side_by_side(clip: Path, registry: str, session: dict[str, Any], fps: float, path: Path) -> SideBySide:
    """Write source | NMFC | warped reference | avatar for every self-view frame showing the avatar.

    A received frame is paired with the coefficients sent one median round trip before it arrived.
    The warped reference is what the generator refines: the woman's reference frames warped to that
    frame's mesh and blended by their priors (grey for a target without references).
    """
    import cv2
    import torch

    from inference.avatar import AvatarTarget
    from inference.protocol import DriveFrame, RenderRequest
    from inference.registry import TargetRegistry
    from inference.warp import prior_blend

    log: SentLog = session["log"]
    round_trip_s = (session["stats"].round_trip_ms_p50 or 0.0) / 1000
    bundle = TargetRegistry(registry).load(DEMO_TARGET)
    size = int(bundle.metadata.training["model_config"]["size_px"])
    warp_count = len(bundle.references) if bundle.references is not None else 0
    # Only its NMFC and warp are used here: the generator runs where the session ran, in the Serve app.
    target = AvatarTarget(bundle, _no_generator, size_px=size, nmfc_frames=1, previous_frames=0, output_size=size,
                          device=torch.device("cpu"), warp_references=warp_count)  # fmt: skip
    tracker = SourcePoseTracker()
    offsets = {seq: tracker.update(c) for seq, c in sorted(log.coefficients.items())}
    wanted = {index for _, index in log.sent.values()}
    sources: dict[int, npt.NDArray[np.uint8]] = {}
    with VideoFile(clip) as video:
        for frame in video:
            if frame.index in wanted:
                height, width = frame.rgb.shape[:2]
                resized = cv2.resize(frame.rgb, (round(width * PANEL_PX / height), PANEL_PX))
                sources[frame.index] = np.asarray(resized, dtype=np.uint8)
    sent = sorted((t, seq) for seq, (t, _) in log.sent.items())
    result = SideBySide(0)
    first_width = next(iter(sources.values())).shape[1] if sources else PANEL_PX
    grey = np.full((PANEL_PX, PANEL_PX, 3), 128, np.uint8)
    with VideoWriter(path, first_width + 3 * PANEL_PX, PANEL_PX, fps) as writer:
        for arrived, avatar in session["received"]:
            shown = [seq for t, seq in sent if t <= arrived - round_trip_s]
            if not shown or float(np.std(avatar)) < 1.0:  # before the first render: the gateway's grey placeholder
                continue
            seq = shown[-1]
            coefficients = log.coefficients[seq]
            request = RenderRequest(DEMO_TARGET, "demo", (DriveFrame(coefficients, offsets[seq]),))
            nmfc = cv2.resize(target.nmfc_window(request)[-1], (PANEL_PX, PANEL_PX), interpolation=cv2.INTER_NEAREST)
            warped = grey
            if warp_count:
                blend = prior_blend(target.warp_inputs(target.crop_pixels(request.frames[-1])[None]))[0]
                rgb = ((blend.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
                warped = np.asarray(cv2.resize(np.ascontiguousarray(rgb), (PANEL_PX, PANEL_PX)), dtype=np.uint8)
            panel = np.asarray(cv2.resize(avatar, (PANEL_PX, PANEL_PX)), dtype=np.uint8)
            panels = (sources[log.sent[seq][1]], np.asarray(nmfc, dtype=np.uint8), warped, panel)
            writer.write(np.concatenate(panels, axis=1))
            result.panels.append(panels)
            result.frames += 1
    return result


def write_contact_sheet(side_by_side: SideBySide, path: Path, rows: int = 4) -> Path | None:
    """Write source | NMFC | warped reference | avatar for `rows` frames of the side-by-side; None when it has none."""
    from training.metrics import contact_sheet, write_png

    if not side_by_side.panels:
        return None
    titles = ("source", "NMFC", "warped reference", "avatar")
    columns = [(title, np.stack([p[i] for p in side_by_side.panels])) for i, title in enumerate(titles)]
    return write_png(path, contact_sheet(columns, rows=rows, panel_px=PANEL_PX))


def avatar_identity(
    clip: Path, tracks: Tracks, target: int, source: int, side_by_side: SideBySide
) -> dict[str, Any] | None:
    """Return whose face the received avatar shows: per-frame dlib distances to the target's and the
    source's real face crops (training.metrics.cross_identity); None when no frame was received or
    the identity network is not installed."""
    from training.metrics import IdentityFeatures, MetricsError, cross_identity
    from training.preprocess import PreprocessConfig, crop_boxes, crop_square

    if not side_by_side.panels:
        return None
    try:
        features = IdentityFeatures()
    except MetricsError:
        return None
    crops: dict[int, list[npt.NDArray[np.uint8]]] = {target: [], source: []}
    framing = PreprocessConfig.load()  # the enrolment's crops: the avatar is framed the same way
    boxes = {}
    for person in crops:
        frames = tracks.frames_of(person)
        landmarks = np.stack([f.landmarks_px()[:468] for f in frames])
        boxes.update(
            {
                (person, f.index): box
                for f, box in zip(
                    frames, crop_boxes(landmarks, framing.crop_margin, framing.smooth_frames), strict=True
                )
            }
        )
    with VideoFile(clip) as video:
        for frame in video:
            for person, found in crops.items():
                box = boxes.get((person, frame.index))
                if box is not None:
                    found.append(crop_square(frame.rgb, box, PANEL_PX))
    avatar = np.stack([p[3] for p in side_by_side.panels])
    generated, detected = features.describe(avatar)
    report = cross_identity(generated, features.describe(np.stack(crops[target]))[0],
                            features.describe(np.stack(crops[source]))[0])  # fmt: skip
    report["face_detected_fraction"] = float(np.mean(detected))
    return report


def _no_generator(nmfc: Any, previous: Any) -> Any:
    raise RuntimeError("the demo's side-by-side renders NMFC only")


def avatar_provenance(video: Path) -> dict[str, Any]:
    """Return what `headcast verify` reads from the avatar video the viewer received (after VP8 and H.264)."""
    from headcast.provenance import verify

    found = verify(video, [DEMO_TARGET])
    return {
        "target": found.target,
        "session_tag": None if found.mark is None else f"{found.mark.session_tag:04x}",
        "windows": found.windows,
        "marked_windows": found.marked,
        "confidence": round(found.confidence, 3),
        "pilot_z": round(found.pilot_z, 1),
    }


def session_report(
    session: dict[str, Any],
    source: int,
    frames: int,
    fps: float,
    cached: bool,
    side_by_side: int,
    identity: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the demo's report.json content."""
    stats = session["stats"]
    return {
        "target": DEMO_TARGET,
        "target_cached": cached,
        "source_person": source,
        "frames_streamed": frames,
        "frames_sent": stats.frames_sent,
        "uplink_bytes_per_frame": round(stats.bytes_per_frame, 1),
        "uplink_kbit_per_s": round(stats.bytes_per_frame * 8 * fps / 1000, 2),
        "round_trip_ms": {
            "p50": _round(stats.round_trip_ms_p50),
            "p95": _round(stats.round_trip_ms_p95),
            "measured": stats.round_trips,
        },
        "self_view_fps": round(stats.video_fps, 1),
        "self_view_frames": stats.frames_received,
        "viewer_frames": session["viewer_frames"],
        "gateway_rendered": stats.gateway_rendered,
        "dropped": {
            "offline": stats.dropped_offline,
            "congested": stats.dropped_congested,
            **stats.gateway_dropped,
        },
        "gateway_stage_ms_p50": session["stage_ms_p50"],
        "side_by_side_frames": side_by_side,
        "avatar_identity": identity,
        "provenance": provenance,
        "machine": {"cpus": os.cpu_count()},
    }


def _round(ms: float | None) -> float | None:
    """Return a latency to 0.1 ms: what a clock on a shared machine resolves, the rest is noise."""
    return None if ms is None else round(ms, 1)


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Write the demo's report.json; return its path."""
    return write_json_atomic(out_dir / REPORT, report)
