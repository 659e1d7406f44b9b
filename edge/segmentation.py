"""Foreground masks from MediaPipe's selfie segmentation model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from base import assets
from edge.errors import TrackingError
from edge.native import quiet_native_stderr


class ForegroundSegmenter:
    """Person-versus-background probability per pixel."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        path = assets.resolve("selfie_segmentation", model_path)
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            output_confidence_masks=True,
            output_category_mask=False,
        )
        with quiet_native_stderr():
            self._segmenter: Any = vision.ImageSegmenter.create_from_options(options)
        self._segmented = 0

    def mask(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Return the (H, W) float32 foreground probability in [0, 1] of an (H, W, 3) uint8 RGB image."""
        import mediapipe as mp

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise TrackingError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self._segmented == 0:
            with quiet_native_stderr():  # the first image logs the delegate's set-up
                result = self._segmenter.segment(image)
        else:
            result = self._segmenter.segment(image)
        self._segmented += 1
        confidence = result.confidence_masks[0].numpy_view()
        return np.clip(confidence.reshape(rgb.shape[:2]), 0.0, 1.0).astype(np.float32)

    def close(self) -> None:
        self._segmenter.close()

    def __enter__(self) -> ForegroundSegmenter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
