"""DIS optical flow of real frames: a known translation is recovered."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from training.flow import DISFlow, sequence_flow

MARGIN = 12  # DIS patches near the border see the texture leave the frame


def texture(size: int = 96, seed: int = 0) -> NDArray[np.uint8]:
    """Return a smooth random grey texture (size, size) uint8 with full contrast."""
    noise = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def shifted_pair(dx: int, dy: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Return (previous, current) 64x64 crops where current[y, x] = previous[y − dy, x − dx]."""
    big = texture()
    previous = big[16:80, 16:80]
    current = big[16 - dy : 80 - dy, 16 - dx : 80 - dx]
    return previous, current


@pytest.mark.parametrize("preset", ["fast", "medium"])
@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (-2, 3)])
def test_a_translation_is_recovered_within_half_a_pixel(preset: str, dx: int, dy: int) -> None:
    previous, current = shifted_pair(dx, dy)
    flow = DISFlow(preset)(previous, current)  # type: ignore[arg-type]
    assert flow.shape == (2, 64, 64) and flow.dtype == np.float32
    interior = flow[:, MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert np.abs(interior[0] - dx).max() < 0.5
    assert np.abs(interior[1] - dy).max() < 0.5


def test_rgb_and_float_frames_give_the_grey_result() -> None:
    previous, current = shifted_pair(2, 1)
    estimator = DISFlow("fast")
    grey = estimator(previous, current)
    rgb = estimator(np.repeat(previous[..., None], 3, axis=2), np.repeat(current[..., None], 3, axis=2))
    floats = estimator(previous / 255.0, current / 255.0)
    np.testing.assert_allclose(rgb, grey, atol=1e-4)
    np.testing.assert_allclose(floats, grey, atol=1e-4)


def test_frames_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        DISFlow("fast")(texture(32), texture(48))


def test_sequence_flow_of_a_batch_of_clips() -> None:
    big = texture()
    clip = np.stack([big[16:48, 16 - t : 48 - t] for t in range(3)])  # moving right one pixel a frame
    frames = torch.from_numpy(clip).float().div(127.5).sub(1)[None, :, None].expand(2, 3, 3, 32, 32)
    flows = sequence_flow(frames, DISFlow("fast"))
    assert flows.shape == (2, 2, 2, 32, 32) and flows.dtype == torch.float32
    interior = flows[..., 8:-8, 8:-8]
    assert (interior[:, :, 0] - 1).abs().max() < 0.5 and interior[:, :, 1].abs().max() < 0.5
