"""The provenance mark: how well it reads after each change a published avatar video goes through, how
often unmarked video reads as marked, what it costs in PSNR and in milliseconds.

    python ops/bench/watermark.py           # full: writes results/watermark.json, a RESULTS.md row, watermark.png
    python ops/bench/watermark.py --quick   # smoke: 2 seconds of video, 300 unmarked frames, JSON only

Marked video, each shot marked with one session's mark: the sample clip's 270 frames scaled to the
composited frame's 256 × 256; three 256² crops of it at full resolution (three more shots of 270
frames); and 8 synthetic people (72 frames each, 256²): 1,656 frames, 68 one-second windows (a shot's
last frames, short of a second, are read one by one but make no window). Changes
(headcast/recode.py), each made to a whole shot: none; the gateway's VP8 through aiortc's own encoder
at its lowest (250 kbit/s) and default (500 kbit/s) rate; libx264 CRF 23 and 28 (preset medium); half
size; a screen recording's crop (3 % of each side, unevenly); and all of them after one another. For
each: bit accuracy (the codeword's 64 bits before error correction, per frame), the share of frames and
of one-second windows (24 frames) that name the mark, and wrong marks.

False positives: unmarked shots read one frame at a time and as one-second windows: the clip scaled,
twelve 256² crops of it at full resolution, and 100 synthetic people (other seeds than the marked
ones): 10,710 frames. Cost: PSNR of the marked frames against the unmarked ones; ms per 256² frame to
embed on one core (the session's pattern cached, and the first frame, which builds it), and to read
one frame at every crop (what `headcast verify` does per frame).
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


def crops(full: Sequence[npt.NDArray[np.uint8]], rows: int, cols: int) -> dict[str, Frames]:
    """Return rows × cols shots of 256² crops of `full`, on a grid from corner to corner."""
    height, width = full[0].shape[:2]
    shots = {}
    for y in np.linspace(0, height - SIZE, rows).astype(int):
        for x in np.linspace(0, width - SIZE, cols).astype(int):
            shots[f"crop {y},{x}"] = [np.ascontiguousarray(f[y : y + SIZE, x : x + SIZE]) for f in full]
    return shots


def synthetic(people: int, seed: int) -> dict[str, Frames]:
    """Return one 3-second shot (72 frames) per synthetic person (seeds `seed`, `seed` + 1, …), 256²."""
    from training.clips import synthetic_corpus

    return {clip.identity: list(clip.frames) for clip in synthetic_corpus(people, 3 * WINDOW, SIZE, seed)}


def marked(frames: Frames, mark: watermark.Mark = MARK) -> Frames:
    out = [frame.copy() for frame in frames]
    for frame in out:
        watermark.embed(frame, mark)
    return out


def readings_of(shots: list[Frames]) -> dict[str, Any]:
    """Return bit accuracy, frames read and windows read of marked shots."""
    truth = watermark.codeword_bits(MARK)
    singles = [watermark.read([frame]) for shot in shots for frame in shot]
    whole = [shot[: len(shot) // WINDOW * WINDOW] for shot in shots]  # one-second windows only: no shorter tail
    windows = [reading for shot in whole for reading in watermark.read_windows(shot, WINDOW)]
    return {
        "bit_accuracy": round(float(np.mean([np.mean(np.sign(r.soft) == truth) for r in singles])), 4),
        "frames": len(singles),
        "frames_read": round(float(np.mean([r.mark == MARK for r in singles])), 4),
        "windows": len(windows),
        "windows_read": round(float(np.mean([r.mark == MARK for r in windows])), 4),
        "wrong_marks": sum(r.mark not in (None, MARK) for r in [*singles, *windows]),
        "pilot_z_median_frame": round(float(np.median([r.pilot_z for r in singles])), 1),
        "pilot_z_min_window": round(min(r.pilot_z for r in windows), 1),
    }


def false_positives(corpus: dict[str, dict[str, Frames]]) -> dict[str, Any]:
    """Return, per unmarked set of shots, how many frames and windows read as marked and the largest pilot."""
    out: dict[str, Any] = {}
    for name, shots in corpus.items():
        singles = [watermark.read([frame]) for shot in shots.values() for frame in shot]
        windows = [reading for shot in shots.values() for reading in watermark.read_windows(shot, WINDOW)]
        out[name] = {
            "frames": len(singles),
            "frames_marked": sum(r.mark is not None for r in singles),
            "windows": len(windows),
            "windows_marked": sum(r.mark is not None for r in windows),
            "pilot_z_max": round(max(r.pilot_z for r in [*singles, *windows]), 2),
            "pilot_z_p99": round(float(np.percentile([r.pilot_z for r in singles], 99)), 2),
        }
        print(f"unmarked {name}: {out[name]}", flush=True)
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


def read_of(change: dict[str, Any]) -> str:
    """Return "k/n": the one-second windows of a change that named the mark, of all."""
    return f"{round(change['windows_read'] * change['windows'])}/{change['windows']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seconds of video, 300 unmarked frames, JSON only")
    args = parser.parse_args()
    full = clip_frames()
    if args.quick:
        hosts = {"clip scaled": square(full[: 2 * WINDOW])}
        unmarked = {"clip scaled": {"clip": square(full[:100])}, "clip crops": crops(full[:100], 1, 2)}
    else:
        hosts = {"clip scaled": square(full), **crops(full, 1, 3), **synthetic(8, seed=1000)}
        unmarked = {"clip scaled": {"clip": square(full)}, "clip crops": crops(full, 3, 4),
                    "synthetic people": synthetic(100, seed=2000)}  # fmt: skip
    marked_shots = [marked(shot) for shot in hosts.values()]
    changes: dict[str, Any] = {}
    for name, change in CHANGES.items():
        changes[name] = readings_of([change(shot) for shot in marked_shots])
        print(f"{name}: {changes[name]}", flush=True)
    fp = false_positives(unmarked)
    all_hosts = [frame for shot in hosts.values() for frame in shot]
    all_marked = [frame for shot in marked_shots for frame in shot]
    results: dict[str, Any] = {
        "mark": {
            "payload_bits": 8 * watermark.PAYLOAD_BYTES,
            "parity_bits": 8 * watermark.PARITY_BYTES,
            "amplitude_rms": watermark.AMPLITUDE,
            "min_pilot_z": watermark.MIN_PILOT_Z,
        },
        "hosts": {name: len(shot) for name, shot in hosts.items()},
        "psnr_db": psnr(all_marked, all_hosts),
        "changes": changes,
        "false_positives": fp,
        "timing": timings(hosts["clip scaled"]),
    }
    first = hosts["clip scaled"]
    if not args.quick:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        write_picture(first[len(first) // 3], marked_shots[0][len(first) // 3])
    frames_fp = sum(s["frames_marked"] for s in fp.values())
    frames_seen = sum(s["frames"] for s in fp.values())
    windows_fp = sum(s["windows_marked"] for s in fp.values())
    windows_seen = sum(s["windows"] for s in fp.values())
    timing = results["timing"]
    summary = (
        "1-s windows read (bit accuracy per frame): "
        + "; ".join(f"{name} {read_of(c)} ({c['bit_accuracy']:.3f})" for name, c in changes.items())
        + f"; false marks {frames_fp} of {frames_seen} unmarked frames, {windows_fp} of {windows_seen} windows; "
        f"PSNR {results['psnr_db']} dB; embed {timing['embed_ms']} ms/frame at 256² on one core "
        f"(first frame of a session {timing['embed_first_frame_ms']} ms), read {timing['read_ms']} ms/frame"
    )
    path = record("watermark", results, summary, args.quick)
    print(summary)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
