"""The demo on the embedded default: the sample clip's man drives the sample clip's woman.

What exists end to end today: tracking (annotated video), the woman fitted as the target (cached),
the man's frames turned into the coefficient stream the edge sends (through the compact wire codec
and back), retargeted onto her model and rendered as NMFC images — the generator's input. The
report says what each stage cost and how many bytes crossed the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.annotate import VideoWriter, annotate
from edge.capture import VideoFile
from edge.coefficients import coefficient_stream
from edge.tracking import TrackedFrame
from edge.tracks import Tracks
from face3d import wire
from face3d.camera import project_to_image
from face3d.coefficients import Coefficients
from face3d.fit import FitConfig, fit_person
from face3d.nmfc import nmfc_topology, render_nmfc_px
from face3d.person import PersonModel
from face3d.retarget import PoseAdapter, retarget

TARGET_MODEL = "target-person.npz"
REENACTMENT_VIDEO = "reenactment.mp4"
REPORT = "report.json"


@dataclass
class StageTimes:
    """Per-frame milliseconds of each stage, in the order they run."""

    stages: dict[str, list[float]] = field(default_factory=dict)

    def add(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.stages.setdefault(stage, []).append((now - started) * 1000)
        return now

    def medians(self) -> dict[str, float]:
        return {stage: round(float(np.median(ms)), 3) for stage, ms in self.stages.items()}


def target_model(tracks: Tracks, person: int, config: FitConfig, cache: Path) -> tuple[PersonModel, bool]:
    """Return the target's PersonModel, fitted once and cached at `cache`; the bool says whether it was cached."""
    if cache.is_file():
        return PersonModel.load(cache), True
    model = fit_person(tracks.frames_of(person), config).model
    model.save(cache)
    return model, False


def reenact(video: Path, tracks: Tracks, source: int, target: PersonModel, out_path: Path,
            on_frame: Callable[[int], None] | None = None) -> dict[str, object]:  # fmt: skip
    """Write source frame | target NMFC (driven by the source) for the source's frames; return the report.

    The coefficients go through the compact wire codec and are decoded again, as a receiver would.
    """
    topology = nmfc_topology()
    width, height = tracks.source.width, tracks.source.height
    encoder, decoder = wire.CompactEncoder(), wire.CompactDecoder()
    adapter = PoseAdapter(target)
    times = StageTimes()
    packet_bytes: list[int] = []
    by_index = {}
    for frame, coefficients in _timed_stream(tracks, source, times):
        started = time.perf_counter()
        packet = encoder.encode(coefficients)
        received = wire.decode(packet, decoder)
        started = times.add("wire encode+decode", started)
        packet_bytes.append(len(packet))
        mesh = retarget(target, received, adapter)
        started = times.add("retarget", started)
        pixels = project_to_image(mesh.vertices, mesh.rotation, mesh.translation, mesh.scale, (width, height))
        by_index[frame.index] = (frame, render_nmfc_px(pixels, (height, width), topology).to_uint8())
        times.add("NMFC render", started)
    with VideoFile(video) as clip, VideoWriter(out_path, 2 * width, height, clip.info.fps) as writer:
        for captured in clip:
            if captured.index in by_index:
                tracked, nmfc = by_index[captured.index]
                writer.write(np.concatenate([annotate(captured.rgb, tracked), nmfc], axis=1))
            if on_frame is not None:
                on_frame(captured.index)
    mean_bytes = float(np.mean(packet_bytes)) if packet_bytes else 0.0
    return {
        "source_person": source,
        "frames_driven": len(packet_bytes),
        "wire_bytes_per_frame_mean": round(mean_bytes, 1),
        "wire_kbit_per_s_at_30fps": round(mean_bytes * 8 * 30 / 1000, 2),
        "wire_plain_bytes_per_frame": wire.PLAIN_SIZE,
        "stage_ms_median": times.medians(),
    }


def _timed_stream(tracks: Tracks, person: int, times: StageTimes) -> Iterator[tuple[TrackedFrame, Coefficients]]:
    """Yield the person's coefficient stream, timing each frame's online step."""
    stream = coefficient_stream(tracks.frames_of(person))
    while True:
        started = time.perf_counter()
        try:
            item = next(stream)
        except StopIteration:
            return
        times.add("online coefficients", started)
        yield item


def write_report(report: dict[str, object], out_dir: Path) -> Path:
    """Write the demo's report.json; return its path."""
    path = out_dir / REPORT
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
