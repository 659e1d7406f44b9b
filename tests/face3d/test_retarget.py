"""Retargeting: the target's shape at the source's weights; pose relative to the source's mean."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from face3d.camera import project_to_image
from face3d.coefficients import Coefficients
from face3d.errors import FitError
from face3d.person import PersonModel
from face3d.retarget import PoseAdapter, PoseAdapterConfig, SourcePoseTracker, TargetPoseMap, retarget
from face3d.synthetic_tracks import random_person


def _target() -> PersonModel:
    person, _ = random_person(np.random.default_rng(7), active=5)
    return PersonModel(
        person.neutral, person.basis, pose_mean=np.array([0.05, -0.02, 0.02]), pose_std=np.array([0.03, 0.02, 0.001])
    )


def _coeffs(i: int, translation: tuple[float, float], scale: float, w: float = 0.0) -> Coefficients:
    blend = np.zeros(52, np.float32)
    blend[9] = w
    return Coefficients(
        i, i * 40, blend, np.array([0.1, 0.0, 0.0], np.float32), np.array(translation, np.float32), scale
    )


def test_the_mesh_is_the_target_shape_at_the_source_weights() -> None:
    target = _target()
    frame = retarget(target, _coeffs(0, (0.0, 0.0), 0.03, w=0.7))
    w = np.zeros(52)
    w[9] = 0.7
    np.testing.assert_allclose(frame.vertices, target.shape(w), atol=1e-6)
    np.testing.assert_allclose(frame.rotation, [0.1, 0, 0], atol=1e-7)
    assert frame.scale == pytest.approx(0.03)


def test_a_steady_source_lands_on_the_target_mean() -> None:
    target = _target()
    adapter = PoseAdapter(target)
    for i in range(50):
        translation, scale = adapter.update(_coeffs(i, (-0.2, 0.1), 0.05))
    np.testing.assert_allclose(translation, target.pose_mean[:2], atol=1e-9)
    assert scale == pytest.approx(target.pose_mean[2])


def test_offsets_follow_the_source_in_face_sizes_and_are_clamped_to_two_sigma() -> None:
    target = _target()
    adapter = PoseAdapter(target, PoseAdapterConfig(window_s=1000.0))
    for i in range(200):
        adapter.update(_coeffs(i, (0.0, 0.0), 0.04))
    # A small step right: 0.01 source widths at twice the target's face size → 0.005 target widths,
    # less the 1/201 of the step the running mean itself moves (a 1000 s window weighs 201 frames ≈ equally).
    translation, _ = adapter.update(_coeffs(200, (0.01, 0.0), 0.04))
    assert translation[0] - target.pose_mean[0] == pytest.approx(0.005 * (1 - 1 / 201), rel=1e-3)
    # A big step leaves the frame in the source; the target stops at mean + 2σ.
    translation, scale = adapter.update(_coeffs(201, (0.5, -0.5), 0.08))
    assert translation[0] == pytest.approx(target.pose_mean[0] + 2 * 0.03)
    assert translation[1] == pytest.approx(target.pose_mean[1] - 2 * 0.02)
    # Log-scale σ is floored at 0.05 (the target's own 0.001/0.02 = 0.05): scale ≤ mean·e^0.1.
    assert scale == pytest.approx(target.pose_mean[2] * np.exp(0.1))


def test_a_target_without_pose_statistics_is_refused() -> None:
    person, _ = random_person(np.random.default_rng(1), active=2)
    with pytest.raises(FitError, match="pose statistics"):
        PoseAdapter(person)


def test_projection_puts_the_face_where_the_pose_says() -> None:
    target = _target()
    frame = retarget(target, _coeffs(0, (0.1, -0.05), 0.02))
    pixels = project_to_image(frame.vertices, frame.rotation, frame.translation, frame.scale, (640, 480))
    # The canonical origin projects to centre + translation·width (y down).
    origin = project_to_image(np.zeros((1, 3)), frame.rotation, frame.translation, frame.scale, (640, 480))
    np.testing.assert_allclose(origin[0, :2], [320 + 0.1 * 640, 240 - 0.05 * 640], atol=1e-9)
    assert pixels.shape == (468, 3) and np.all(np.isfinite(pixels))


def test_the_source_and_target_sides_split_across_processes_give_the_adapters_pose() -> None:
    """The gateway keeps the SourcePoseTracker, a replica applies the TargetPoseMap to a pickled offset."""
    target = _target()
    adapter, tracker, target_map = PoseAdapter(target), SourcePoseTracker(), TargetPoseMap(target)
    rng = np.random.default_rng(3)
    for i in range(60):
        c = _coeffs(i, tuple(rng.normal(0.1, 0.02, 2)), float(rng.uniform(0.03, 0.05)))
        expected = adapter.update(c)
        offset = pickle.loads(pickle.dumps(tracker.update(c)))
        translation, scale = target_map.apply(offset)
        np.testing.assert_allclose(translation, expected[0], atol=1e-12)
        assert scale == pytest.approx(expected[1], rel=1e-12)
        frame = retarget(target, c, pose=(translation, scale))
        np.testing.assert_allclose(frame.translation, expected[0], atol=1e-12)
