"""Cut detection and identity grouping on data with a known answer."""

from __future__ import annotations

import numpy as np

from edge.config import ShotConfig
from edge.identity import group_shots
from edge.shots import Shot, ShotDetector, shots_from_labels


def _scene(seed: int, shift: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    image = np.kron(base, np.ones((20, 20, 1), dtype=np.uint8))
    return np.roll(image, shift, axis=1)


def test_hard_cuts_are_found_and_motion_is_not_a_cut() -> None:
    # Two scenes, each with slow camera motion (a pan of 1 px a frame), cut at frame 10.
    frames = [_scene(1, i) for i in range(10)] + [_scene(2, i) for i in range(10)]
    detector = ShotDetector()
    cuts = [i for i, frame in enumerate(frames) if detector.is_cut(frame)]
    assert cuts == [10]


def test_a_fade_is_not_a_cut() -> None:
    base = _scene(3, 0).astype(np.float32)
    detector = ShotDetector()
    cuts = [i for i in range(30) if detector.is_cut((base * (1 - i / 30)).astype(np.uint8))]
    assert cuts == []


def test_the_threshold_comes_from_the_config() -> None:
    quiet, loud = _scene(4, 0), _scene(4, 0).copy()
    loud[:] = np.clip(loud.astype(int) + 20, 0, 255).astype(np.uint8)  # a uniform jump of ~20 grey levels
    assert ShotDetector(ShotConfig(min_difference=12.0)).is_cut(quiet) is False
    strict, lenient = ShotDetector(ShotConfig(min_difference=40.0)), ShotDetector(ShotConfig(min_difference=10.0))
    for detector in (strict, lenient):
        detector.is_cut(quiet)
    assert strict.is_cut(loud) is False
    assert lenient.is_cut(loud) is True


def test_shots_from_labels() -> None:
    assert shots_from_labels([0, 1, 1, 2, 2, 2]) == [Shot(0, 0, 0), Shot(1, 1, 2), Shot(2, 3, 5)]
    assert shots_from_labels([]) == []


def test_group_shots_merges_close_means_and_numbers_by_appearance() -> None:
    rng = np.random.default_rng(0)
    alice, bob = rng.normal(size=128), rng.normal(size=128)
    alice, bob = 0.5 * alice / np.linalg.norm(alice), 0.5 * bob / np.linalg.norm(bob)  # 0.5 apart-ish scale

    def samples(centre: np.ndarray) -> np.ndarray:
        return (centre + rng.normal(scale=0.01, size=(4, 128))).astype(np.float32)

    groups = group_shots({3: samples(bob), 1: samples(alice), 5: samples(alice), 7: samples(bob)}, 0.3)
    assert groups == {1: 0, 3: 1, 5: 0, 7: 1}
    assert group_shots({2: samples(alice)}, 0.3) == {2: 0}
    assert group_shots({}, 0.3) == {}
