"""Frames in: a video file (PyAV) or a camera (OpenCV), as RGB arrays with timestamps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge.errors import TrackingError


@dataclass(frozen=True)
class Frame:
    """One captured frame. rgb: (H, W, 3) uint8; timestamp_ms increases strictly."""

    index: int
    timestamp_ms: int
    rgb: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source before reading it; frame_count is 0 when unknown (cameras)."""

    name: str
    width: int
    height: int
    fps: float
    frame_count: int


class FrameSource(Protocol):
    """Anything that yields Frames and can be closed."""

    info: SourceInfo

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class VideoFile:
    """Frames of a video file, decoded with PyAV.

    Decoding errors part-way (a truncated or damaged file) end the iteration early and are kept in
    `error`, so that the frames before them are not lost.
    """

    def __init__(self, path: str | Path) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise TrackingError(f"{self.path}: no such file. Give the path of a video file (mp4, avi, mkv, …).")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
            raise TrackingError(
                f"{self.path}: not a video FFmpeg can read ({error}). Re-encode it, e.g. "
                f"`ffmpeg -i {self.path.name} out.mp4`, or record it again."
            ) from None
        if not self._container.streams.video:
            self._container.close()
            raise TrackingError(f"{self.path}: the file holds no video stream (audio only?).")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.base_rate or Fraction(25)
        self._stream = stream
        self.fps = float(rate)
        self.error: str | None = None
        self.info = SourceInfo(
            name=self.path.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=self.fps,
            frame_count=stream.frames or 0,
        )

    def __iter__(self) -> Iterator[Frame]:
        import av

        index = 0
        try:
            for decoded in self._container.decode(self._stream):
                rgb: npt.NDArray[np.uint8] = np.asarray(decoded.to_ndarray(format="rgb24"), dtype=np.uint8)
                # MediaPipe VIDEO mode wants strictly increasing millisecond timestamps.
                yield Frame(index, round(index * 1000 / self.fps), rgb)
                index += 1
        except av.FFmpegError as error:
            self.error = f"decoding stopped after frame {index - 1}: {error}"
        if index == 0 and self.error is None:
            self.error = "the video stream holds no decodable frame"
        elif self.error is None and 0 < index < self.info.frame_count:
            self.error = (
                f"the video ended after {index} of the {self.info.frame_count} frames its header "
                "announces: the file is probably truncated"
            )

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Camera:
    """Frames of a local camera (OpenCV), timestamped by the monotonic clock."""

    def __init__(self, index: int = 0, max_frames: int | None = None) -> None:
        import cv2

        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise TrackingError(
                f"camera {index} could not be opened: check that it is connected, that no other program "
                "uses it and that this user may access it (Linux: the `video` group), or give a video file."
            )
        self.max_frames = max_frames
        self.error: str | None = None
        self.info = SourceInfo(
            name=f"camera {index}",
            width=int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(self._capture.get(cv2.CAP_PROP_FPS) or 30.0),
            frame_count=max_frames or 0,
        )

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        start = time.monotonic()
        last_ms = -1
        index = 0
        while self.max_frames is None or index < self.max_frames:
            ok, bgr = self._capture.read()
            if not ok:
                self.error = f"the camera stopped delivering frames after frame {index - 1}"
                return
            stamp = max(round((time.monotonic() - start) * 1000), last_ms + 1)
            last_ms = stamp
            yield Frame(index, stamp, np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8))
            index += 1

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_source(spec: str, max_frames: int | None = None) -> VideoFile | Camera:
    """Return a frame source for `spec`: "camera", "camera:N", or the path of a video file."""
    if spec == "camera" or spec.startswith("camera:"):
        _, _, number = spec.partition(":")
        if number and not number.isdigit():
            raise TrackingError(f"{spec!r}: a camera is named camera or camera:N with N a device number")
        return Camera(int(number or 0), max_frames=max_frames)
    return VideoFile(spec)
