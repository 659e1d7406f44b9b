"""Small videos the edge tests write themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge.annotate import VideoWriter

WriteVideo = Callable[[str, list[npt.NDArray[np.uint8]]], Path]


@pytest.fixture
def write_video(tmp_path: Path) -> WriteVideo:
    """Return a function that writes RGB frames to an MP4 in tmp_path and returns its path."""

    def write(name: str, frames: list[npt.NDArray[np.uint8]]) -> Path:
        path = tmp_path / name
        height, width = frames[0].shape[:2]
        with VideoWriter(path, width, height, fps=25.0, crf=12) as writer:
            for frame in frames:
                writer.write(frame)
        return path

    return write
