"""Tracking the sample clip and synthetic videos: faces, lost faces, shots, people, saved tracks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from base import assets
from edge import FaceTracker, TrackingError, Tracks, load_tracks, save_tracks, track_video
from edge.tracks import SUMMARY_FILE, TRACKS_FILE
from face3d import load_canonical_mesh
from face3d.pose import project_points, yaw_pitch_roll_deg

WriteVideo = Callable[[str, list[np.ndarray]], Path]

# The clip's hard cuts and who is in each shot, measured by hand (docs/notes.md, "The sample clip").
CUTS = [1, 98, 154, 200]
WOMAN_SHOTS, MAN_SHOTS = {1, 3}, {2, 4}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    assets.ensure("face_landmarker")
    return np.ascontiguousarray(data.astronaut())


def test_face_found_in_at_least_95_percent_of_the_clip(sample_tracks: Tracks) -> None:
    assert len(sample_tracks.frames) == 270
    assert sample_tracks.face_frames >= 0.95 * 270
    assert not sample_tracks.frames[0].face_found, "frame 0 of the clip is black"


def test_tracked_frames_are_well_formed(sample_tracks: Tracks) -> None:
    frame = next(f for f in sample_tracks.frames if f.face_found)
    assert frame.landmarks is not None and frame.blendshapes is not None and frame.matrix is not None
    assert frame.landmarks.shape == (478, 3) and frame.landmarks.dtype == np.float32
    assert frame.blendshapes.shape == (52,) and 0 <= frame.blendshapes.min() <= frame.blendshapes.max() <= 1
    rotation = frame.matrix[:3, :3].astype(np.float64)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-3)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-3)
    assert frame.image_size == (720, 528)


def test_pose_matrix_projects_the_canonical_mesh_onto_the_landmarks(sample_tracks: Tracks) -> None:
    mesh = load_canonical_mesh()
    errors = []
    for frame in sample_tracks.frames[1::10]:
        if frame.matrix is None:
            continue
        projected = project_points(frame.matrix, mesh.vertices, *frame.image_size)
        errors.append(np.median(np.linalg.norm(projected - frame.landmarks_px()[:468], axis=1)))
    # docs/notes.md: a 6 px median was measured; faces span ~150-250 px here.
    assert np.median(errors) < 10.0


def test_shots_follow_the_hard_cuts(sample_tracks: Tracks) -> None:
    assert [s.first for s in sample_tracks.shots] == [0, *CUTS]
    assert sample_tracks.shots[-1].last == 269


def test_people_are_grouped_by_identity_across_shots(sample_tracks: Tracks) -> None:
    assert len(sample_tracks.people) == 2
    shots = {frozenset(p.shots) for p in sample_tracks.people}
    assert shots == {frozenset(WOMAN_SHOTS), frozenset(MAN_SHOTS)}
    woman = next(p for p in sample_tracks.people if set(p.shots) == WOMAN_SHOTS)
    assert woman.id == 0, "people are numbered in order of appearance"
    assert 135 <= woman.frames <= 143  # shots 1-97 and 154-199 hold 143 frames
    assert all(f.identity == woman.id for f in sample_tracks.frames_of(0))
    assert sample_tracks.main_person() == 0


def test_saved_tracks_load_back_identically(sample_tracks: Tracks, tmp_path: Path) -> None:
    save_tracks(sample_tracks, tmp_path)
    loaded = load_tracks(tmp_path / TRACKS_FILE)
    assert len(loaded.frames) == len(sample_tracks.frames)
    for a, b in zip(loaded.frames, sample_tracks.frames, strict=True):
        assert (a.index, a.timestamp_ms, a.shot, a.identity, a.face_found) == (
            b.index, b.timestamp_ms, b.shot, b.identity, b.face_found)  # fmt: skip
        if a.landmarks is not None and b.landmarks is not None:
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert loaded.shots == sample_tracks.shots and loaded.people == sample_tracks.people
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["face_frames"] == sample_tracks.face_frames
    assert summary["frames_without_face"] == [f.index for f in sample_tracks.frames if not f.face_found]


def test_damaged_tracks_are_refused(sample_tracks_dir: Path, tmp_path: Path) -> None:
    (tmp_path / SUMMARY_FILE).write_text((sample_tracks_dir / SUMMARY_FILE).read_text())
    (tmp_path / TRACKS_FILE).write_bytes((sample_tracks_dir / TRACKS_FILE).read_bytes()[:5000])
    with pytest.raises(TrackingError, match="no readable tracks"):
        load_tracks(tmp_path)
    with pytest.raises(TrackingError, match="no readable tracks"):
        load_tracks(tmp_path / "elsewhere")


def test_video_without_a_face(write_video: WriteVideo) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(12)]
    tracks = track_video(write_video("noise.mp4", frames), identities=False)
    assert len(tracks.frames) == 12 and tracks.face_frames == 0
    assert all(f.landmarks is None and f.blendshapes is None and f.matrix is None for f in tracks.frames)
    assert any("no face was found" in w for w in tracks.warnings)
    assert tracks.summary()["face_fraction"] == 0.0


def test_lost_face_is_flagged_and_tracking_resumes(astronaut: np.ndarray, write_video: WriteVideo) -> None:
    blank = np.zeros_like(astronaut)
    frames = [astronaut] * 4 + [blank] * 3 + [astronaut] * 4
    tracks = track_video(write_video("lost.mp4", frames), identities=False)
    found = [f.face_found for f in tracks.frames]
    assert found == [True] * 4 + [False] * 3 + [True] * 4
    # Cuts to and from black are shots of their own; tracking restarted at each.
    assert [s.first for s in tracks.shots] == [0, 4, 7]


def test_tracker_refuses_bad_frames(astronaut: np.ndarray) -> None:
    with FaceTracker() as tracker:
        first = tracker.track(astronaut, 0)
        assert first.matrix is not None
        yaw, _, _ = yaw_pitch_roll_deg(first.matrix)
        assert abs(yaw) < 30
        with pytest.raises(TrackingError, match="does not increase"):
            tracker.track(astronaut, 0)
        with pytest.raises(TrackingError, match="uint8 RGB"):
            tracker.track(astronaut.astype(np.float32), 40)
        with pytest.raises(TrackingError, match="uint8 RGB"):
            tracker.track(astronaut[:, :, 0], 80)


def test_masks_are_tracked_saved_and_loaded(astronaut: np.ndarray, write_video: WriteVideo, tmp_path: Path) -> None:
    assets.ensure("selfie_segmentation")
    tracks = track_video(write_video("masks.mp4", [astronaut] * 3), identities=False, masks=True)
    assert tracks.masks is not None and tracks.masks.shape == (3, 512, 512) and tracks.masks.dtype == np.uint8
    assert tracks.masks[:, 80:200, 160:260].mean() > 200 and tracks.masks[:, 20:120, 420:500].mean() < 50
    save_tracks(tracks, tmp_path / "saved")
    loaded = load_tracks(tmp_path / "saved")
    assert loaded.masks is not None
    np.testing.assert_array_equal(loaded.masks, tracks.masks)
