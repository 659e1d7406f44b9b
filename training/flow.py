"""Optical flow of real frames with OpenCV's DIS (the paper used FlowNet2; DIS runs offline on a CPU).

Convention: `flow[:, y, x] = (dx, dy)` in pixels such that `current[y + dy, x + dx] ≈ previous[y, x]`
(OpenCV's `calc(previous, current)`), float32 of shape (2, H, W): channel 0 is x, channel 1 is y.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

_PRESETS = {
    "ultrafast": cv2.DISOpticalFlow_PRESET_ULTRAFAST,
    "fast": cv2.DISOpticalFlow_PRESET_FAST,
    "medium": cv2.DISOpticalFlow_PRESET_MEDIUM,
}


def _grey(image: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Return an 8-bit grey (H, W) image from uint8 RGB (H, W, 3), uint8 grey (H, W), or float in [0, 1]."""
    if image.dtype == np.uint8:
        grey = np.asarray(image, dtype=np.uint8)
    else:
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if grey.ndim == 3 and grey.shape[-1] == 3:
        grey = np.asarray(cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    if grey.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return np.ascontiguousarray(grey)


class DISFlow:
    """A DIS optical-flow estimator. One instance per thread: OpenCV's DIS object keeps state between calls."""

    def __init__(self, preset: Literal["ultrafast", "fast", "medium"] = "medium") -> None:
        if preset not in _PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}: choose one of {', '.join(_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow.create(_PRESETS[preset])

    def __call__(self, previous: NDArray[np.generic], current: NDArray[np.generic]) -> NDArray[np.float32]:
        """Return the flow (2, H, W) float32 in pixels from `previous` to `current` (uint8 RGB/grey, float 0-1)."""
        before, after = _grey(previous), _grey(current)
        if before.shape != after.shape:
            raise ValueError(f"frames differ in size: {before.shape} and {after.shape}")
        flow = self._dis.calc(before, after, np.zeros((*before.shape, 2), dtype=np.float32))
        return np.ascontiguousarray(np.moveaxis(flow, -1, 0), dtype=np.float32)

    def sequence(self, frames: NDArray[np.generic]) -> NDArray[np.float32]:
        """Return the flows (T−1, 2, H, W) float32 between consecutive frames (T, H, W, 3) or (T, H, W)."""
        if len(frames) < 2:
            raise ValueError(f"need at least two frames for a flow, got {len(frames)}")
        return np.stack([self(frames[t], frames[t + 1]) for t in range(len(frames) - 1)])


def sequence_flow(frames: Tensor, estimator: DISFlow | None = None) -> Tensor:
    """Return flows (B, T−1, 2, H, W) float32 (pixels) between consecutive real frames (B, T, 3, H, W) in [−1, 1].

    The result is on the frames' device; DIS itself runs on the CPU, so this is meant for the real
    frames that D_D is conditioned on (no gradient flows through it).
    """
    estimator = estimator or DISFlow()
    images = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    images_np = images.permute(0, 1, 3, 4, 2).cpu().numpy()
    flows = np.stack([estimator.sequence(clip) for clip in images_np])
    return torch.from_numpy(flows).to(frames.device)
