"""The edge's causal path: pose from landmarks, One-Euro smoothing with its stated lag, ≤ 1 ms a frame."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from face3d.errors import FitError
from face3d.online import OneEuroFilter, OnlineConfig, OnlineEstimator, pose_from_landmarks
from face3d.synthetic_tracks import synthetic_sequence
from face3d.topology import load_canonical_mesh


def test_pose_matches_the_synthetic_camera() -> None:
    sequence = synthetic_sequence(frames=10, landmark_noise_cm=0.0, score_noise=0.0, seed=4)
    mesh = load_canonical_mesh()
    for frame, camera in zip(sequence.frames, sequence.cameras, strict=True):
        assert frame.landmarks is not None
        pose = pose_from_landmarks(frame.landmarks, frame.image_size, mesh)
        # The person's identity offset (≈ 0.3 cm on a ≈ 5 cm face) tilts and scales the 33-point fit a little.
        angle = Rotation.from_matrix(pose.rotation @ camera.rotation.T).magnitude()
        assert angle < math.radians(3)
        assert pose.scale == pytest.approx(camera.scale, rel=0.05)
        np.testing.assert_allclose(pose.image_translation(), camera.image_translation(), atol=0.01)


def test_one_euro_lag_on_a_slow_ramp_is_the_stated_one() -> None:
    # An EMA with cutoff f_c tracks a ramp at a constant lag τ = 1/(2π f_c); with beta = 0 the One-Euro
    # filter is that EMA. Discretised at dt the lag is τ exactly (α = 1/(1 + τ/dt) ⇒ lag = dt(1−α)/α).
    dt, cutoff = 0.01, 2.0
    filt = OneEuroFilter(cutoff, 0.0, 1.0)
    out = 0.0
    for i in range(2000):
        out = float(filt(np.array([i * dt]), dt)[0])
    lag = (1999 * dt) - out
    assert lag == pytest.approx(1 / (2 * math.pi * cutoff), rel=1e-6)
    assert OnlineConfig().max_lag_ms()["expression"] == pytest.approx(1000 / (2 * math.pi * 3.0))


def test_the_estimator_is_fast_and_smooths(sample_tracks: Any) -> None:
    estimator = OnlineEstimator()
    frames = [f for f in sample_tracks.frames_of(0) if f.shot == 1]
    out, times = [], []
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        out.append(estimator.update(frame.landmarks, frame.blendshapes, frame.image_size, frame.timestamp_ms, i))
        times.append(time.perf_counter() - start)
    print(f"online: median {1000 * np.median(times):.3f} ms/frame")
    assert np.median(times) < 5e-3  # a small part of a 40 ms frame, with room for a loaded machine (0.3 ms idle)
    raw = np.array([f.blendshapes for f in frames])
    smooth = np.array([c.blendshapes for c in out])
    # Smoothing lowers the frame-to-frame roughness (second differences) of the scores.
    assert np.sum(np.diff(smooth, 2, axis=0) ** 2) < 0.7 * np.sum(np.diff(raw, 2, axis=0) ** 2)
    # The pose agrees with MediaPipe's own matrix (the notes: 2.3° median).
    angles = [
        Rotation.from_matrix(
            f.matrix[:3, :3].astype(np.float64) @ Rotation.from_rotvec(c.rotation).as_matrix().T
        ).magnitude()
        for f, c in zip(frames, out, strict=True)
    ]
    assert math.degrees(float(np.median(angles))) < 5


def test_bad_frames_raise_and_gaps_reset() -> None:
    sequence = synthetic_sequence(frames=3, seed=2)
    estimator = OnlineEstimator()
    frame = sequence.frames[0]
    assert frame.landmarks is not None and frame.blendshapes is not None
    bad = frame.landmarks.copy()
    bad[0, 0] = np.inf
    with pytest.raises(FitError, match="NaN or infinity"):
        estimator.update(bad, frame.blendshapes, frame.image_size, 0, 0)
    with pytest.raises(FitError, match="degenerate pose"):
        estimator.update(np.full((478, 3), 0.5), frame.blendshapes, frame.image_size, 0, 0)
    first = estimator.update(frame.landmarks, frame.blendshapes, frame.image_size, 0, 0)
    # After a gap longer than reset_after_ms the next frame passes unfiltered.
    other = sequence.frames[2]
    assert other.landmarks is not None and other.blendshapes is not None
    late = estimator.update(other.landmarks, other.blendshapes, other.image_size, 10_000, 1)
    np.testing.assert_allclose(late.blendshapes, np.clip(other.blendshapes, 0, 1), atol=1e-6)
    assert first.seq == 0 and late.seq == 1
