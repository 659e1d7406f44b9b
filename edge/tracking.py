"""Face tracking with MediaPipe FaceLandmarker (Tasks API, VIDEO mode) into typed TrackedFrames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from base import assets
from edge.config import TrackerConfig
from edge.errors import TrackingError
from edge.native import quiet_native_stderr
from face3d import NUM_BLENDSHAPES

NUM_LANDMARKS = 478  # 468 mesh vertices + 10 iris points


@dataclass(frozen=True)
class TrackedFrame:
    """What the tracker saw in one frame. When no face was found, the three arrays are None.

    index: frame number in the source; timestamp_ms: capture time.
    image_size: (width, height) in pixels.
    landmarks: (478, 3) float32; x, y normalised to the image width/height, z in image widths
        (smaller = closer to the camera).
    blendshapes: (52,) float32 in [0, 1], in face3d.BLENDSHAPE_NAMES order.
    matrix: (4, 4) float32, canonical-mesh centimetres → camera space (rotation without scale).
    shot: index of the shot (between hard cuts) the frame belongs to.
    identity: person id within the recording, -1 when unknown or no face.
    recovered: the face was found by the IMAGE-mode retry after VIDEO mode lost it.
    """

    index: int
    timestamp_ms: int
    image_size: tuple[int, int]
    landmarks: npt.NDArray[np.float32] | None
    blendshapes: npt.NDArray[np.float32] | None
    matrix: npt.NDArray[np.float32] | None
    shot: int = 0
    identity: int = -1
    recovered: bool = False

    @property
    def face_found(self) -> bool:
        return self.landmarks is not None

    def landmarks_px(self) -> npt.NDArray[np.float32]:
        """Return the (478, 2) landmark positions in pixels; raises when there is no face."""
        if self.landmarks is None:
            raise TrackingError(f"frame {self.index} has no face")
        width, height = self.image_size
        return self.landmarks[:, :2] * np.array([width, height], dtype=np.float32)


class FaceTracker:
    """One face, tracked frame by frame; `restart()` forgets the past (call it at a shot cut)."""

    def __init__(self, config: TrackerConfig | None = None, model_path: str | Path | None = None) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.config = config or TrackerConfig()
        self._model = assets.resolve("face_landmarker", model_path)
        self._vision = vision
        self._base = BaseOptions(model_asset_path=str(self._model))
        self._video: Any = None
        self._image: Any = None
        self._last_timestamp_ms = -1
        self._video_frames = 0
        self.restart()

    def _options(self, mode: Any) -> Any:
        return self._vision.FaceLandmarkerOptions(
            base_options=self._base,
            running_mode=mode,
            num_faces=1,
            min_face_detection_confidence=self.config.min_face_detection_confidence,
            min_face_presence_confidence=self.config.min_face_presence_confidence,
            min_tracking_confidence=self.config.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )

    def restart(self) -> None:
        """Start a fresh VIDEO-mode graph: no temporal state carries over."""
        if self._video is not None:
            self._video.close()
        with quiet_native_stderr():
            self._video = self._vision.FaceLandmarker.create_from_options(self._options(self._vision.RunningMode.VIDEO))
        self._last_timestamp_ms = -1
        self._video_frames = 0

    def track(self, rgb: npt.NDArray[np.uint8], timestamp_ms: int, index: int = 0, shot: int = 0) -> TrackedFrame:
        """Return the TrackedFrame for one RGB image (H, W, 3) uint8; timestamps must increase."""
        import mediapipe as mp

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise TrackingError(f"frame {index}: expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        if timestamp_ms <= self._last_timestamp_ms:
            raise TrackingError(
                f"frame {index}: timestamp {timestamp_ms} ms does not increase (previous {self._last_timestamp_ms} ms)"
            )
        self._last_timestamp_ms = timestamp_ms
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self._video_frames == 0:
            with quiet_native_stderr():  # the first frame of a graph logs its delegate set-up
                result = self._video.detect_for_video(image, timestamp_ms)
        else:
            result = self._video.detect_for_video(image, timestamp_ms)
        self._video_frames += 1
        recovered = False
        if not result.face_landmarks and self.config.retry_lost_face:
            with quiet_native_stderr():
                if self._image is None:
                    self._image = self._vision.FaceLandmarker.create_from_options(
                        self._options(self._vision.RunningMode.IMAGE)
                    )
                result = self._image.detect(image)
            recovered = bool(result.face_landmarks)
        size = (rgb.shape[1], rgb.shape[0])
        if not result.face_landmarks:
            return TrackedFrame(index, timestamp_ms, size, None, None, None, shot=shot)
        landmarks = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float32)
        scores = np.array([c.score for c in result.face_blendshapes[0]], dtype=np.float32)
        if len(landmarks) != NUM_LANDMARKS or len(scores) != NUM_BLENDSHAPES:
            raise TrackingError(
                f"the face landmarker returned {len(landmarks)} landmarks and {len(scores)} blendshapes, "
                f"expected {NUM_LANDMARKS} and {NUM_BLENDSHAPES}: is {self._model} the right model?"
            )
        matrix = np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4)
        return TrackedFrame(
            index, timestamp_ms, size, landmarks, np.clip(scores, 0, 1), matrix, shot=shot, recovered=recovered
        )

    def close(self) -> None:
        for landmarker in (self._video, self._image):
            if landmarker is not None:
                landmarker.close()
        self._video = self._image = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
