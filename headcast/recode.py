"""What happens to an avatar video after it leaves the Serve app, done to frames in memory: the gateway's
own VP8 (aiortc's encoder, at its bitrate), H.264 re-encoding with libx264, rescaling, and the crop of
a screen recording. The provenance mark must survive each (tests/inference/test_watermark.py,
ops/bench/watermark.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt
from aiortc.codecs.vpx import DEFAULT_BITRATE, Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

Frames = Sequence[npt.NDArray[np.uint8]]
VIDEO_CLOCK = Fraction(1, 90_000)


def vp8(frames: Frames, bitrate: int = DEFAULT_BITRATE, fps: float = 25.0) -> list[npt.NDArray[np.uint8]]:
    """Return `frames` (RGB) as a viewer decodes them from the gateway's VP8 track at `bitrate` bit/s."""
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = bitrate
    out: list[npt.NDArray[np.uint8]] = []
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = round(index * 90_000 / fps), VIDEO_CLOCK
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(payload) for payload in payloads)
        for decoded in decoder.decode(JitterFrame(data, timestamp)):
            out.append(np.asarray(cast(av.VideoFrame, decoded).to_ndarray(format="rgb24"), np.uint8))
    return out


def x264(frames: Frames, crf: int = 28, fps: int = 25) -> list[npt.NDArray[np.uint8]]:
    """Return `frames` re-encoded with libx264 at constant rate factor `crf` (medium preset) and decoded."""
    buffer = io.BytesIO()
    height, width = frames[0].shape[:2]
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in frames:
            even = np.ascontiguousarray(image[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer, "r") as reader:
        return [np.asarray(frame.to_ndarray(format="rgb24"), np.uint8) for frame in reader.decode(video=0)]


def half(frames: Frames) -> list[npt.NDArray[np.uint8]]:
    """Return `frames` scaled to half their size (area filter)."""
    return [np.asarray(cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA), np.uint8)
            for f in frames]  # fmt: skip


def screen_crop(frames: Frames, share: float = 0.03) -> list[npt.NDArray[np.uint8]]:
    """Return `frames` cropped as a screen recording crops a video: unevenly, about `share` of each side
    (more on the left and top), the size kept as cropped."""
    out = []
    for frame in frames:
        height, width = frame.shape[:2]
        top, bottom = round(height * share), height - round(height * share * 0.6)
        left, right = round(width * share * 1.4), width - round(width * share * 0.8)
        out.append(np.ascontiguousarray(frame[top:bottom, left:right]))
    return out
