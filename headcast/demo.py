"""The demo on the embedded default: the sample clip's man drives a live avatar of its woman.

Everything runs through the real stack on this machine: local Ray with the Serve app `avatar`,
the WebRTC gateway on loopback, the Python edge streaming the man's coefficients (compact wire
codec over the "coeffs" data channel) and a viewer peer recording the avatar's video track.

The woman is enrolled once and cached (`<cache>/demo`): a small stage-1 base pretrained on the
synthetic corpus, then her few-shot fine-tuning from the clip — both at the CPU profile `tiny-ci`
(64² faces), so the first run takes a few minutes and later runs seconds. The avatar is blurry at
that size and budget; a GPU enrolment at `base` (256²) is the real configuration.

Outputs: avatar.mp4 (what a viewer received), side-by-side.mp4 (source | NMFC | avatar, paired by
the measured median round trip), report.json (latency, bandwidth, drops, per-stage medians from
the gateway's /metrics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.annotate import VideoWriter
from edge.capture import VideoFile
from edge.coefficients import coefficient_stream
from edge.tracks import Tracks
from face3d import assets
from face3d.coefficients import Coefficients
from face3d.retarget import SourcePoseTracker

DEMO_TARGET = "woman"
DEMO_ROOM = "demo"
AVATAR_VIDEO = "avatar.mp4"
SIDE_BY_SIDE_VIDEO = "side-by-side.mp4"
REPORT = "report.json"
# Stage-1 steps of the demo's base: enough for the fine-tuning to start from faces rather than noise
# (the enrolment benchmark's 200-step base beat random initialisation), short enough for a first run.
BASE_STEPS = 200
# The demo's target is cached per base: a different number of base steps enrols it again.
PANEL_PX = 256


def demo_cache() -> Path:
    """Return where the demo keeps its enrolled target: `<asset cache>/demo`."""
    return assets.cache_dir() / "demo"


def ensure_demo_target(
    clip: Path, cache: Path, log: Callable[[str], None], base_steps: int = BASE_STEPS
) -> tuple[str, bool]:
    """Return (the demo registry's root, whether the target was cached), enrolling the woman when needed."""
    from inference.registry import TargetRegistry

    cache = cache / f"base-{base_steps}"
    registry = str(cache / "registry")
    if TargetRegistry(registry).versions(DEMO_TARGET):
        return registry, True
    from training.clips import synthetic_corpus
    from training.enroll import enroll, load_enroll_config
    from training.pretrain import pretrain
    from training.trainer_steps import load_pretrain_config

    log(f"pretraining the demo's base ({base_steps} steps on synthetic faces, once)")
    config = load_pretrain_config("tiny-ci", None, steps=base_steps, holdout_frames=0)
    base = pretrain(config, synthetic_corpus(4, 48, 64, 100), cache / "base", backend="local")
    log("enrolling the clip's woman (few-shot fine-tuning, once)")
    enroll(clip, DEMO_TARGET, registry, "demo", "the sample clip's woman (OpenCV's Megamind.avi, opencv-doc)",
           base.checkpoint, load_enroll_config("tiny-ci"), cache / "enrol", person=0)  # fmt: skip
    return registry, False


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
    try:
        view_token = mint_token(secret, "demo-viewer", DEMO_ROOM, "view", ttl_s=3600, max_sessions=8)
        announce(f"watch in a browser: {gateway.url}/view?room={DEMO_ROOM}#token={view_token}")
        send_token = mint_token(secret, "demo", DEMO_ROOM, "send", (DEMO_TARGET,))
        received: list[tuple[float, npt.NDArray[np.uint8]]] = []
        sender = SenderClient(gateway.url, send_token, DEMO_TARGET, fps=round(fps),
                              on_frame=lambda rgb: received.append((time.monotonic(), rgb)))  # fmt: skip
        log = SentLog()
        sending = asyncio.create_task(sender.run(paced_stream(stream, log), realtime=True))
        while sender.session is None and not sending.done():
            await asyncio.sleep(0.05)
        viewer = ViewerClient(gateway.url, view_token, record=out_dir / AVATAR_VIDEO, fps=fps)
        watching = asyncio.create_task(viewer.run())
        stats = await sending
        viewer.stop()
        viewer_stats = await watching
        metrics = {stage: q["p50"] for stage, q in (await stage_quantiles_ms(gateway.url)).items()}
    finally:
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


def write_side_by_side(clip: Path, registry: str, session: dict[str, Any], fps: float, path: Path) -> int:
    """Write source | NMFC | avatar for every self-view frame showing the avatar; return the frames written.

    A received frame is paired with the coefficients sent one median round trip before it arrived.
    """
    import cv2
    import torch

    from inference.avatar import AvatarTarget
    from inference.protocol import DriveFrame, RenderRequest
    from inference.registry import TargetRegistry

    log: SentLog = session["log"]
    round_trip_s = (session["stats"].round_trip_ms_p50 or 0.0) / 1000
    bundle = TargetRegistry(registry).load(DEMO_TARGET)
    size = int(bundle.metadata.training["model_config"]["size_px"])
    # Only its NMFC is used here: the generator runs where the session ran, in the Serve app.
    target = AvatarTarget(bundle, _no_generator, size_px=size, nmfc_frames=1, previous_frames=0, output_size=size,
                          device=torch.device("cpu"))  # fmt: skip
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
    written = 0
    first_width = next(iter(sources.values())).shape[1] if sources else PANEL_PX
    with VideoWriter(path, first_width + 2 * PANEL_PX, PANEL_PX, fps) as writer:
        for arrived, avatar in session["received"]:
            shown = [seq for t, seq in sent if t <= arrived - round_trip_s]
            if not shown or float(np.std(avatar)) < 1.0:  # before the first render: the gateway's grey placeholder
                continue
            seq = shown[-1]
            coefficients = log.coefficients[seq]
            request = RenderRequest(DEMO_TARGET, "demo", (DriveFrame(coefficients, offsets[seq]),))
            nmfc = cv2.resize(target.nmfc_window(request)[-1], (PANEL_PX, PANEL_PX), interpolation=cv2.INTER_NEAREST)
            panel = cv2.resize(avatar, (PANEL_PX, PANEL_PX))
            writer.write(np.concatenate([sources[log.sent[seq][1]], nmfc, panel], axis=1))
            written += 1
    return written


def _no_generator(nmfc: Any, previous: Any) -> Any:
    raise RuntimeError("the demo's side-by-side renders NMFC only")


def session_report(
    session: dict[str, Any], source: int, frames: int, fps: float, cached: bool, side_by_side: int
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
            "p50": stats.round_trip_ms_p50,
            "p95": stats.round_trip_ms_p95,
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
        "machine": {"cpus": os.cpu_count()},
    }


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Write the demo's report.json; return its path."""
    path = out_dir / REPORT
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
