"""Reading frames from files and cameras, and every way that can go wrong."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from edge import TrackingError, VideoFile, open_source


def test_sample_clip_frames_and_timestamps(sample_clip: Path) -> None:
    with VideoFile(sample_clip) as video:
        assert (video.info.width, video.info.height, video.info.frame_count) == (720, 528, 270)
        assert video.info.fps == pytest.approx(23.976, abs=1e-3)
        frames = list(video)
    assert len(frames) == 270 and video.error is None
    assert frames[10].rgb.shape == (528, 720, 3) and frames[10].rgb.dtype == np.uint8
    stamps = [f.timestamp_ms for f in frames]
    assert stamps == [round(i * 1000 / video.info.fps) for i in range(270)]
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match="no such file"):
        VideoFile(tmp_path / "absent.mp4")


def test_file_that_is_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not frames\n" * 50)
    with pytest.raises(TrackingError, match="not a video FFmpeg can read"):
        VideoFile(text)


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(8000) / 5) * 3000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(TrackingError, match="no video stream"):
        VideoFile(path)


def test_truncated_file_keeps_the_frames_before_the_damage(sample_clip: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes(sample_clip.read_bytes()[:400_000])
    with VideoFile(cut) as video:
        frames = list(video)
    assert 0 < len(frames) < 270
    assert video.error is not None and "truncated" in video.error


def test_header_only_file_is_refused(sample_clip: Path, tmp_path: Path) -> None:
    stub = tmp_path / "stub.avi"
    stub.write_bytes(sample_clip.read_bytes()[:3000])
    with pytest.raises(TrackingError):
        VideoFile(stub)


@pytest.mark.parametrize("spec", ["camera:99", "camera:63"])
def test_camera_that_cannot_be_opened(spec: str) -> None:
    with pytest.raises(TrackingError, match="could not be opened"):
        open_source(spec)


def test_camera_spec_must_name_a_number() -> None:
    with pytest.raises(TrackingError, match="camera:N"):
        open_source("camera:front")
