"""Foreground masks on a real photograph."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from base import assets
from edge import TrackingError
from edge.segmentation import ForegroundSegmenter


def test_person_is_foreground_and_the_background_is_not() -> None:
    assets.ensure("selfie_segmentation")
    image = np.ascontiguousarray(data.astronaut())  # 512×512: the astronaut fills the left two thirds
    with ForegroundSegmenter() as segmenter:
        mask = segmenter.mask(image)
        with pytest.raises(TrackingError):
            segmenter.mask(image.astype(np.float32))
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    face, suit = mask[80:200, 160:260], mask[350:500, 100:300]
    flag_background = mask[20:120, 420:500]  # the flag and the sky behind her, right of the head
    assert face.mean() > 0.9 and suit.mean() > 0.9
    assert flag_background.mean() < 0.1
