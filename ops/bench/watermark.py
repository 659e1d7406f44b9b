"""The provenance mark: how well it reads after each change a published avatar video goes through, how
often unmarked video reads as marked, what it costs in PSNR and in milliseconds.

    python ops/bench/watermark.py           # full: writes results/watermark.json, a RESULTS.md row, watermark.png
    python ops/bench/watermark.py --quick   # smoke: 2 seconds of video, 100 unmarked frames, JSON only

Hosts: the sample clip's 270 frames scaled to the composited frame's 256 × 256 (real faces, hair, a
background), each marked with one session's mark. Changes (headcast/recode.py): none; the gateway's
VP8 through aiortc's own encoder at its lowest (250 kbit/s) and default (500 kbit/s) rate; libx264
CRF 23 and 28 (preset medium); half size; a screen recording's crop (3 % of each side, unevenly);
and all of them after one another. For each: bit accuracy (the codeword's 64 bits before error
correction, per frame), frames read and one-second windows read (24 frames), and wrong marks.

False positives: unmarked frames from the clip (whole frames scaled to 256², and three 256² crops of
each at full resolution) and the synthetic corpus (random faces, scaled to 256²), read one at a time
and as one-second windows. Cost: PSNR of the marked frames against the unmarked ones; ms per 256²
frame to embed on one core (the session's pattern cached, and the first frame, which builds it), and
to read one frame at every crop (what `headcast verify` does per frame).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from _record import RESULTS_DIR, record

from base import assets
from edge.capture import VideoFile
from headcast import recode
from inference import watermark

SIZE = 256
WINDOW = 24  # one second of the clip (23.976 fps)
MARK = watermark.Mark.of("woman", "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b")
Frames = list[npt.NDArray[np.uint8]]

CHANGES: dict[str, Callable[[Frames], Frames]] = {
    "none": lambda frames: frames,
    "vp8 250 kbit/s": lambda frames: recode.vp8(frames, 250_000),
    "vp8 500 kbit/s": lambda frames: recode.vp8(frames, 500_000),
    "libx264 crf 23": lambda frames: recode.x264(frames, 23),
    "libx264 crf 28": lambda frames: recode.x264(frames, 28),
    "half size": recode.half,
    "screen crop 3 %": recode.screen_crop,
    "vp8 500, crop, half, crf 28": lambda frames: recode.x264(recode.half(recode.screen_crop(recode.vp8(frames))), 28),
}


def clip_frames() -> list[npt.NDArray[np.uint8]]:
    """Return the sample clip's frames at full resolution."""
    with VideoFile(assets.resolve("sample_clip")) as video:
        return [frame.rgb for frame in video]


def square(frames: Sequence[npt.NDArray[np.uint8]]) -> Frames:
    return [np.asarray(cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA), np.uint8) for f in frames]


def unmarked_corpus(full: Sequence[npt.NDArray[np.uint8]], limit: int | None) -> dict[str, Frames]:
    """Return unmarked 256² frames: the clip scaled, three crops of it, and the synthetic corpus."""
    from training.clips import synthetic_corpus

    height, width = full[0].shape[:2]
    crops = [(0, 0), ((height - SIZE) // 2, (width - SIZE) // 2), (height - SIZE, width - SIZE)]
    corpus = {
        "clip scaled": square(full),
        "clip crops": [np.ascontiguousarray(f[y : y + SIZE, x : x + SIZE]) for f in full for y, x in crops],
        "synthetic corpus": square([frame for clip in synthetic_corpus() for frame in clip.frames]),
    }
    return {name: frames[:limit] for name, frames in corpus.items()}


def marked(frames: Frames, mark: watermark.Mark = MARK) -> Frames:
    out = [frame.copy() for frame in frames]
    for frame in out:
        watermark.embed(frame, mark)
    return out


def readings_of(frames: Frames) -> dict[str, Any]:
    """Return bit accuracy, frames read and windows read of marked `frames`."""
    truth = watermark.codeword_bits(MARK)
    singles = [watermark.read([frame]) for frame in frames]
    windows = list(watermark.read_windows(frames, WINDOW))
    return {
        "bit_accuracy": round(float(np.mean([np.mean(np.sign(r.soft) == truth) for r in singles])), 4),
        "frames_read": round(float(np.mean([r.mark == MARK for r in singles])), 4),
        "windows_read": round(float(np.mean([r.mark == MARK for r in windows])), 4),
        "windows": len(windows),
        "wrong_marks": sum(r.mark not in (None, MARK) for r in [*singles, *windows]),
        "pilot_z_median_frame": round(float(np.median([r.pilot_z for r in singles])), 1),
        "pilot_z_min_window": round(min(r.pilot_z for r in windows), 1),
    }


def false_positives(corpus: dict[str, Frames]) -> dict[str, Any]:
    """Return, per unmarked set, how many frames and windows read as marked and the largest pilot seen."""
    out: dict[str, Any] = {}
    for name, frames in corpus.items():
        singles = [watermark.read([frame]) for frame in frames]
        windows = list(watermark.read_windows(recode.x264(frames, 23), WINDOW)) if name != "clip crops" else []
        out[name] = {
            "frames": len(frames),
            "frames_marked": sum(r.mark is not None for r in singles),
            "windows": len(windows),
            "windows_marked": sum(r.mark is not None for r in windows),
            "pilot_z_max": round(max(r.pilot_z for r in singles), 2),
            "pilot_z_p99": round(float(np.percentile([r.pilot_z for r in singles], 99)), 2),
        }
    return out


def timings(hosts: Frames) -> dict[str, float]:
    """Return median ms per 256² frame: embed (pattern cached), first embed of a session, read one frame."""
    cv2.setNumThreads(1)
    cached, first, reads = [], [], []
    for index, host in enumerate(hosts):
        frame = host.copy()
        started = time.perf_counter()
        watermark.embed(frame, MARK)
        cached.append((time.perf_counter() - started) * 1000)
        session = watermark.Mark(MARK.target_tag, index)  # a new session: its pattern is built first
        frame = host.copy()
        started = time.perf_counter()
        watermark.embed(frame, session)
        first.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        watermark.read([frame])
        reads.append((time.perf_counter() - started) * 1000)
    return {
        "embed_ms": round(float(np.median(cached)), 3),
        "embed_first_frame_ms": round(float(np.median(first)), 3),
        "read_ms": round(float(np.median(reads)), 2),
    }


def psnr(marked_frames: Frames, hosts: Frames) -> float:
    error = np.mean([(m.astype(np.float64) - h) ** 2 for m, h in zip(marked_frames, hosts, strict=True)])
    return round(float(10 * np.log10(255**2 / error)), 2)


def write_picture(host: npt.NDArray[np.uint8], marked_frame: npt.NDArray[np.uint8]) -> None:
    """Write watermark.png: unmarked | marked | difference × 20 | both at 3× around the eyes."""
    difference = np.clip((marked_frame.astype(np.int16) - host) * 20 + 128, 0, 255).astype(np.uint8)
    zoom = [cv2.resize(f[64:149, 80:165], (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) for f in (host, marked_frame)]
    sheet = np.hstack([host, marked_frame, difference, *zoom])
    cv2.imwrite(str(RESULTS_DIR / "watermark.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seconds of video, 100 unmarked frames, JSON only")
    args = parser.parse_args()
    full = clip_frames()
    hosts = square(full[: 2 * WINDOW] if args.quick else full)
    marked_frames = marked(hosts)
    changes: dict[str, Any] = {}
    for name, change in CHANGES.items():
        changes[name] = readings_of(change(marked_frames))
        print(f"{name}: {changes[name]}", flush=True)
    fp = false_positives(unmarked_corpus(full, 100 if args.quick else None))
    results: dict[str, Any] = {
        "mark": {
            "payload_bits": 8 * watermark.PAYLOAD_BYTES,
            "parity_bits": 8 * watermark.PARITY_BYTES,
            "amplitude_rms": watermark.AMPLITUDE,
            "min_pilot_z": watermark.MIN_PILOT_Z,
        },
        "hosts": len(hosts),
        "psnr_db": psnr(marked_frames, hosts),
        "changes": changes,
        "false_positives": fp,
        "timing": timings(hosts),
    }
    if not args.quick:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        write_picture(hosts[len(hosts) // 3], marked_frames[len(hosts) // 3])
    frames_fp = sum(s["frames_marked"] for s in fp.values())
    frames_seen = sum(s["frames"] for s in fp.values())
    windows_fp = sum(s["windows_marked"] for s in fp.values())
    windows_seen = sum(s["windows"] for s in fp.values())
    timing = results["timing"]
    summary = (
        "1-s windows read (bit accuracy per frame): "
        + "; ".join(f"{name} {c['windows_read']:.0%} ({c['bit_accuracy']:.3f})" for name, c in changes.items())
        + f"; false marks {frames_fp} of {frames_seen} unmarked frames, {windows_fp} of {windows_seen} windows; "
        f"PSNR {results['psnr_db']} dB; embed {timing['embed_ms']} ms/frame at 256² on one core "
        f"(first frame of a session {timing['embed_first_frame_ms']} ms), read {timing['read_ms']} ms/frame"
    )
    path = record("watermark", results, summary, args.quick)
    print(summary)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
