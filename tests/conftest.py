"""Fixtures shared across the suite: the sample clip and its tracks (computed once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from face3d import assets


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """The sample clip (Debian opencv-doc's Megamind.avi), verified against its sha256."""
    return assets.resolve("sample_clip")


@pytest.fixture(scope="session")
def sample_tracks_dir(sample_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the sample clip's tracks.npz and summary.json, tracked once per test session."""
    from edge import save_tracks, track_video

    for name in ("face_landmarker", "face_descriptor", "face_aligner"):
        assets.ensure(name)
    folder = tmp_path_factory.mktemp("sample-tracks")
    save_tracks(track_video(sample_clip), folder)
    return folder


@pytest.fixture(scope="session")
def sample_tracks(sample_tracks_dir: Path):  # type: ignore[no-untyped-def]
    """The sample clip's Tracks (270 frames; person 0 is the woman, person 1 the man)."""
    from edge import load_tracks

    return load_tracks(sample_tracks_dir)
