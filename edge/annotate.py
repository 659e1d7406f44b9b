"""Annotated video a person can look at: landmarks, pose axes, shot and person labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.capture import VideoFile
from edge.tracking import TrackedFrame
from edge.tracks import Tracks
from face3d.pose import project_points, yaw_pitch_roll_deg

_AXES_CM = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 10]], dtype=np.float64)
_AXIS_COLOURS = ((230, 40, 40), (40, 210, 40), (60, 90, 255))  # x red, y green, z (out of the face) blue
_PERSON_COLOURS = ((255, 200, 0), (0, 220, 255), (255, 90, 200), (140, 255, 120), (255, 150, 80))


def annotate(
    rgb: npt.NDArray[np.uint8], frame: TrackedFrame, mask: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """Return a copy of `rgb` with the frame's landmarks, pose axes and labels drawn on it.

    With a foreground `mask` ((H, W) uint8, 255 = person), the background is dimmed to show it.
    """
    import cv2

    image = np.ascontiguousarray(rgb).copy()
    if mask is not None:
        keep = 0.35 + 0.65 * (mask.astype(np.float32) / 255.0)
        image = (image * keep[:, :, None]).astype(np.uint8)
    height, width = image.shape[:2]
    scale = max(1, round(min(width, height) / 400))
    if frame.landmarks is not None and frame.matrix is not None:
        colour = _PERSON_COLOURS[frame.identity % len(_PERSON_COLOURS)] if frame.identity >= 0 else (220, 220, 220)
        points = np.round(frame.landmarks_px()).astype(np.int32)
        for x, y in points[:468]:
            cv2.circle(image, (int(x), int(y)), scale, colour, -1, cv2.LINE_AA)
        for x, y in points[468:]:
            cv2.circle(image, (int(x), int(y)), scale + 1, (255, 255, 255), -1, cv2.LINE_AA)
        axes = np.round(project_points(frame.matrix, _AXES_CM, width, height)).astype(np.int32)
        origin = (int(axes[0, 0]), int(axes[0, 1]))
        for end, axis_colour in zip(axes[1:], _AXIS_COLOURS, strict=True):
            cv2.arrowedLine(
                image, origin, (int(end[0]), int(end[1])), axis_colour, 2 * scale, cv2.LINE_AA, tipLength=0.15
            )
        yaw, pitch, roll = yaw_pitch_roll_deg(frame.matrix)
        who = f"person {frame.identity}" if frame.identity >= 0 else "person ?"
        label = f"#{frame.index} shot {frame.shot} {who}  yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}"
        label_colour: tuple[int, int, int] = colour
    else:
        label, label_colour = f"#{frame.index} shot {frame.shot}  NO FACE", (255, 60, 60)
    origin_text = (8 * scale, 22 * scale)
    cv2.putText(image, label, origin_text, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (0, 0, 0), 4 * scale, cv2.LINE_AA)
    cv2.putText(image, label, origin_text, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, label_colour, scale, cv2.LINE_AA)
    return image


class VideoWriter:
    """H.264 (libx264, yuv420p) MP4 writer for RGB frames; odd sizes are cropped to even."""

    def __init__(
        self, path: str | Path, width: int, height: int, fps: float, crf: int = 23,
        metadata: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        """metadata: the container's tags (title, comment, …), written into the MP4's header."""
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container: Any = av.open(str(self.path), mode="w")
        self._container.metadata.update(metadata or {})
        rate = Fraction(fps).limit_denominator(1001)
        self._stream: Any = self._container.add_stream("libx264", rate=rate)
        self._width, self._height = width - width % 2, height - height % 2
        self._stream.width, self._stream.height = self._width, self._height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self.frames = 0

    def write(self, rgb: npt.NDArray[np.uint8]) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self._height, : self._width]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def write_annotated(
    video: str | Path, tracks: Tracks, out_path: str | Path, on_frame: Callable[[int], None] | None = None
) -> Path:
    """Write the annotated copy of `video` (tracked as `tracks`) to `out_path`; return the path."""
    by_index = {f.index: f for f in tracks.frames}
    with (
        VideoFile(video) as source,
        VideoWriter(out_path, source.info.width, source.info.height, source.info.fps) as writer,
    ):
        for frame in source:
            tracked = by_index.get(frame.index)
            if tracked is None:
                break
            mask = tracks.masks[frame.index] if tracks.masks is not None else None
            writer.write(annotate(frame.rgb, tracked, mask))
            if on_frame is not None:
                on_frame(frame.index)
    return Path(out_path)
