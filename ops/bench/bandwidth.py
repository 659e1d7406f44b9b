"""Bandwidth of the coefficient stream next to video of the same face: bytes/frame and kbit/s at 30 fps.

    python ops/bench/bandwidth.py           # full: the whole sample clip, writes results + a RESULTS.md row
    python ops/bench/bandwidth.py --quick   # smoke: the woman's first 30 frames, JSON only

Coefficients: plain and compact wire forms (wire, key frame every DEFAULT_KEY_INTERVAL frames)
of every face frame of the sample clip, and of the woman's frames alone (person 0), as the edge
sends them: face3d's online path (Procrustes pose, One-Euro smoothing), restarted at every cut.

Video: libx264 through PyAV (CRF 23, preset medium, tune zerolatency, yuv420p) of the woman's frames
cropped to a square around her landmarks (side 1.6 × the median landmark extent, centre smoothed
over 9 frames so the crop does not shake) and scaled to 256 × 256, encoded at the clip's frame rate.
The ratio compares it with the compact coefficients of the same frames. Both rates are quoted at
30 fps (bytes/frame × 8 × 30).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from _record import record

import wire
from base import assets
from edge import TrackedFrame, Tracks, VideoFile, track_video
from edge.coefficients import coefficient_stream
from face3d.coefficients import Coefficients

FPS = 30
CROP_SIZE_PX = 256
CROP_MARGIN = 1.6
CENTRE_SMOOTHING_FRAMES = 9
WOMAN = 0


def kbit_per_s(bytes_per_frame: float) -> float:
    """Return the bit rate in kbit/s of `bytes_per_frame` at 30 frames a second."""
    return bytes_per_frame * 8 * FPS / 1000


def coefficients_of(frames: list[TrackedFrame]) -> list[Coefficients]:
    """Return the Coefficients the edge sends for `frames`: face3d's online path, reset at cuts."""
    return [coefficients for _, coefficients in coefficient_stream(frames)]


def coefficient_sizes(frames: list[Coefficients]) -> dict[str, Any]:
    """Return plain and compact bytes/frame of `frames`, with the compact form's largest blendshape error."""
    plain = [len(wire.encode_plain(c)) for c in frames]
    packets = wire.encode_stream(frames, wire.DEFAULT_KEY_INTERVAL)
    decoder = wire.CompactDecoder()
    decoded = [decoder.decode(p) for p in packets]
    error = max(float(np.abs(d.blendshapes - c.blendshapes).max()) for d, c in zip(decoded, frames, strict=True))
    compact = float(np.mean([len(p) for p in packets]))
    return {
        "frames": len(frames),
        "plain_bytes_per_frame": float(np.mean(plain)),
        "plain_kbit_per_s_30fps": round(kbit_per_s(float(np.mean(plain))), 2),
        "compact_bytes_per_frame": round(compact, 2),
        "compact_kbit_per_s_30fps": round(kbit_per_s(compact), 2),
        "compact_key_frames": sum(p[1] & 0b11 == wire.KIND_PLAIN for p in packets),
        "compact_max_blendshape_error_steps": round(error * 255, 4),
    }


def face_crops(tracks: Tracks, frames: list[TrackedFrame]) -> list[npt.NDArray[np.uint8]]:
    """Return the 256 × 256 RGB crops of `frames`: a steady square around the landmarks."""
    points = [f.landmarks_px() for f in frames]
    extent = float(np.median([np.ptp(p, axis=0).max() for p in points]))
    side = round(extent * CROP_MARGIN)
    centres = np.array([p.mean(axis=0) for p in points])
    kernel = np.ones(CENTRE_SMOOTHING_FRAMES) / CENTRE_SMOOTHING_FRAMES
    pad = CENTRE_SMOOTHING_FRAMES // 2
    smoothed = np.stack(
        [np.convolve(np.pad(centres[:, i], pad, mode="edge"), kernel, mode="valid") for i in range(2)], axis=1
    )
    wanted = {f.index: centre for f, centre in zip(frames, smoothed, strict=True)}
    width, height = tracks.source.width, tracks.source.height
    crops = []
    with VideoFile(assets.resolve("sample_clip")) as video:
        for frame in video:
            if frame.index not in wanted:
                continue
            cx, cy = wanted[frame.index]
            # Pad with black so that a crop reaching past the border keeps its size and the face its place.
            padded = np.pad(frame.rgb, ((side, side), (side, side), (0, 0)))
            x0 = int(np.clip(round(cx - side / 2), -side, width)) + side
            y0 = int(np.clip(round(cy - side / 2), -side, height)) + side
            crop = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded[y0 : y0 + side, x0 : x0 + side]), "rgb24")
            scaled = crop.reformat(width=CROP_SIZE_PX, height=CROP_SIZE_PX).to_ndarray(format="rgb24")
            crops.append(np.asarray(scaled, dtype=np.uint8))
    return crops


def x264_sizes(crops: list[npt.NDArray[np.uint8]], fps: float) -> list[int]:
    """Return the libx264 packet size of every crop (CRF 23, preset medium, tune zerolatency)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width = codec.height = CROP_SIZE_PX
    codec.pix_fmt = "yuv420p"
    rate = Fraction(fps).limit_denominator(1001)
    codec.framerate = rate
    codec.time_base = 1 / rate
    codec.options = {"crf": "23", "preset": "medium", "tune": "zerolatency"}
    sizes: list[int] = []
    for i, crop in enumerate(crops):
        frame = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        sizes.extend(packet.size for packet in codec.encode(frame))
    sizes.extend(packet.size for packet in codec.encode(None))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the woman's first 30 frames, no markdown row")
    args = parser.parse_args()
    for name in ("face_landmarker", "face_descriptor", "face_aligner"):
        assets.ensure(name)
    tracks = track_video(assets.resolve("sample_clip"))
    woman = tracks.frames_of(WOMAN)
    everyone = [f for f in tracks.frames if f.face_found]
    if args.quick:
        woman, everyone = woman[:30], woman[:30]
    all_faces = coefficient_sizes(coefficients_of(everyone))
    hers = coefficient_sizes(coefficients_of(woman))
    sizes = x264_sizes(face_crops(tracks, woman), tracks.source.fps)
    x264 = float(np.mean(sizes))
    results = {
        "key_interval": wire.DEFAULT_KEY_INTERVAL,
        "coefficients_all_face_frames": all_faces,
        "coefficients_woman": hers,
        "x264_woman_256": {
            "frames": len(sizes),
            "crf": 23,
            "preset": "medium",
            "tune": "zerolatency",
            "encoded_fps": round(tracks.source.fps, 3),
            "bytes_per_frame": round(x264, 1),
            "first_frame_bytes": sizes[0],
            "kbit_per_s_30fps": round(kbit_per_s(x264), 1),
        },
        "x264_over_compact": round(x264 / hers["compact_bytes_per_frame"], 1),
        "x264_over_plain": round(x264 / hers["plain_bytes_per_frame"], 1),
    }
    summary = (
        f"coefficients {all_faces['plain_bytes_per_frame']:.0f} B/frame plain, "
        f"{all_faces['compact_bytes_per_frame']:.1f} B/frame compact ({all_faces['compact_kbit_per_s_30fps']:.1f} "
        f"kbit/s at 30 fps, blendshape error ≤ {all_faces['compact_max_blendshape_error_steps']:.2f} step); "
        f"libx264 256² face crop {x264:.0f} B/frame ({kbit_per_s(x264):.0f} kbit/s): "
        f"{results['x264_over_compact']}× the compact form"
    )
    path = record("bandwidth", results, summary, quick=args.quick)
    print(summary)
    print(f"details: {path}")


if __name__ == "__main__":
    main()
