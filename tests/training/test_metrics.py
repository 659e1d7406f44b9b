"""The evaluation's measures on real face crops of the sample clip: sharpness, identity, contact sheets.

Crops are cut as preprocessing cuts them (128², the run's landmark extent × 1.8) from the sample
clip's tracks: the woman (person 0) in her first shot (1–97) and her second (154–199), the man
(person 1) in both of his. Every third frame is kept so dlib's network runs on ~90 faces only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edge import Tracks, VideoFile
from training.metrics import (
    HEADER_PX,
    SAME_PERSON_THRESHOLD,
    IdentityFeatures,
    MetricsError,
    PixelDistances,
    contact_sheet,
    cross_identity,
    identity_distances,
    sharpness,
    sharpness_ratio,
    temporal_difference_error,
    write_png,
)
from training.preprocess import PreprocessConfig, consecutive_runs, crop_boxes, crop_square

SIZE_PX = 128
STRIDE = 3

Crops = dict[str, npt.NDArray[np.uint8]]
Described = dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]


@pytest.fixture(scope="module")
def crops(sample_clip: Path, sample_tracks: Tracks) -> Crops:
    """Face crops (N, 128, 128, 3) of the woman's first shot ("woman 1"), her second ("woman 2") and the man."""
    images = {frame.index: frame.rgb for frame in VideoFile(sample_clip)}
    margin, smooth = PreprocessConfig.load().crop_margin, PreprocessConfig.load().smooth_frames
    woman = sample_tracks.frames_of(0)
    shots = sorted({f.shot for f in woman})
    groups = {
        "woman 1": [f for f in woman if f.shot == shots[0]],
        "woman 2": [f for f in woman if f.shot == shots[1]],
        "man": sample_tracks.frames_of(1),
    }
    result: Crops = {}
    for name, frames in groups.items():
        cut: list[npt.NDArray[np.uint8]] = []
        for run in consecutive_runs(frames):
            boxes = crop_boxes(np.stack([f.landmarks_px() for f in run]), margin, smooth)
            cut += [crop_square(images[f.index], box, SIZE_PX) for f, box in zip(run, boxes, strict=True)]
        result[name] = np.stack(cut[::STRIDE])
    return result


@pytest.fixture(scope="module")
def features() -> IdentityFeatures:
    return IdentityFeatures()


@pytest.fixture(scope="module")
def descriptors(crops: Crops, features: IdentityFeatures) -> Described:
    """Each group's (descriptors, detected), aligned on dlib's detected face."""
    return {name: features.describe(frames, detect=True) for name, frames in crops.items()}


# --- sharpness -----------------------------------------------------------------------------------------------------


def test_a_blurred_frame_is_less_sharp_and_identical_frames_score_exactly_one(crops: Crops) -> None:
    real = crops["woman 1"][:8]
    blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), 1.5) for frame in real])
    # A Gaussian removes high frequencies and the Laplacian measures them: every frame must lose sharpness.
    assert np.all(sharpness(blurred) < sharpness(real))
    assert sharpness_ratio(blurred, real) < 1
    assert sharpness_ratio(real, real) == 1.0


def test_sharpness_counts_only_the_masked_face() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[:, 20:44, 20:44] = 255
    # Blur everything but a band 1 px wider than the mask: the 3×3 Laplacian inside the mask sees the same pixels.
    generated = np.stack([cv2.GaussianBlur(frame, (0, 0), 2.0) for frame in sharp])
    generated[:, 19:45, 19:45] = sharp[:, 19:45, 19:45]
    assert sharpness_ratio(generated, sharp, masks) == 1.0
    assert sharpness_ratio(generated, sharp) < 1
    assert np.isnan(sharpness(sharp, np.zeros((2, 64, 64), np.uint8))).all()


def test_sharpness_refuses_frames_of_different_sizes() -> None:
    with pytest.raises(MetricsError, match="differ"):
        sharpness_ratio(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(MetricsError, match="uint8"):
        sharpness(np.zeros((2, 32, 32, 3), np.float32))


# --- identity ------------------------------------------------------------------------------------------------------


def test_the_same_person_is_within_the_threshold_and_the_other_person_farther(
    descriptors: Described,
) -> None:
    reference = descriptors["woman 1"][0]
    same = identity_distances(descriptors["woman 2"][0], reference)
    other = identity_distances(descriptors["man"][0], reference)
    assert same.shape == (len(descriptors["woman 2"][0]),)
    # Her other shot (other pose, other light) is still her: "most" frames within dlib's same-person distance.
    assert np.mean(same < SAME_PERSON_THRESHOLD) > 0.5
    assert np.median(other) > np.median(same)


def test_cross_identity_says_whose_face_frames_show(descriptors: Described) -> None:
    woman_1, woman_2, man = (descriptors[name][0] for name in ("woman 1", "woman 2", "man"))
    # Her second shot stands in for frames of a perfect generator of her, driven by the man.
    result = cross_identity(woman_2, woman_1, man)
    assert result["nearer_target_fraction"] > 0.5
    assert result["same_person_fraction"] > 0.5
    assert result["median_to_target"] < result["median_to_driver"]
    assert len(result["to_target"]) == len(result["to_driver"]) == len(woman_2)
    # Exchanging target and driver exchanges the distances: the fractions nearer each side add up to 1.
    swapped = cross_identity(woman_2, man, woman_1)
    assert swapped["to_target"] == result["to_driver"]
    assert swapped["nearer_target_fraction"] == pytest.approx(1 - result["nearer_target_fraction"])


def test_the_detector_finds_the_faces_of_128_px_crops(descriptors: Described) -> None:
    for name, (values, detected) in descriptors.items():
        assert values.shape == (len(detected), 128)
        assert detected.dtype == bool
        assert detected.mean() > 0.5, f"{name}: the detector found a face in {detected.mean():.0%} of the crops"


def test_a_faceless_frame_falls_back_to_the_whole_crop(crops: Crops, features: IdentityFeatures) -> None:
    frames = np.concatenate([np.full((1, SIZE_PX, SIZE_PX, 3), 90, np.uint8), crops["woman 1"][:1]])
    detected_values, detected = features.describe(frames, detect=True)
    whole = features.describe(frames, detect=False)
    assert detected.tolist() == [False, True]
    assert not whole[1].any()
    np.testing.assert_array_equal(detected_values[0], whole[0][0])
    np.testing.assert_array_equal(features(frames), whole[0])


def test_identity_measures_refuse_wrong_shapes() -> None:
    with pytest.raises(MetricsError, match="128"):
        identity_distances(np.zeros((3, 64)), np.zeros((2, 128)))
    with pytest.raises(MetricsError, match="N ≥ 1"):
        identity_distances(np.zeros((3, 128)), np.zeros((0, 128)))


# --- contact sheets ------------------------------------------------------------------------------------------------


def test_contact_sheet_has_a_header_and_evenly_spaced_rows(crops: Crops, tmp_path: Path) -> None:
    real = crops["man"][:10]
    small = np.stack([cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA) for frame in real])
    greys = real[..., 0]
    sheet = contact_sheet([("real", real), ("small", small), ("grey", greys)], rows=4, panel_px=SIZE_PX)
    assert sheet.shape == (HEADER_PX + 4 * SIZE_PX, 3 * SIZE_PX, 3)
    assert sheet.dtype == np.uint8
    for column in range(3):
        header = sheet[:HEADER_PX, column * SIZE_PX : (column + 1) * SIZE_PX]
        assert (header > 128).any(), f"column {column}: no title drawn"
    # Rows show frames 0, 3, 6, 9 of 10; a panel at the crop's own size is the frame itself.
    for row, index in enumerate((0, 3, 6, 9)):
        panel = sheet[HEADER_PX + row * SIZE_PX : HEADER_PX + (row + 1) * SIZE_PX, :SIZE_PX]
        np.testing.assert_array_equal(panel, real[index])
    path = write_png(tmp_path / "sheet.png", sheet)
    stored = cv2.imread(str(path))
    assert stored is not None
    read = cv2.cvtColor(stored, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read, sheet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png"]


def test_contact_sheet_with_fewer_frames_than_rows_and_mismatched_columns() -> None:
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    assert contact_sheet([("two", frames)], rows=4, panel_px=32).shape == (HEADER_PX + 2 * 32, 32, 3)
    with pytest.raises(MetricsError, match="same number"):
        contact_sheet([("two", frames), ("three", np.zeros((3, 32, 32, 3), np.uint8))])


def test_pixel_distances_are_frame_weighted_over_clips_and_masked_over_foreground_pixels() -> None:
    real = np.zeros((2, 4, 4, 3), np.uint8)
    generated = np.zeros((2, 4, 4, 3), np.float32)
    generated[..., 0], generated[..., 1] = 3.0, 4.0  # 5 everywhere: a 3-4-5 triangle per pixel
    generated[1, :2] = 0.0  # frame 1: the top half exact, so its mean is 2.5
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, :2] = 255  # the real foreground is the top half of both frames
    predicted = np.zeros((2, 4, 4), bool)
    predicted[:, :1] = True  # half the foreground predicted, nothing else
    pixels = PixelDistances()
    pixels.add(generated, real, masks, predicted)
    later = np.full((1, 4, 4, 3), 0.0, np.float32)  # a second clip: one exact frame
    pixels.add(later, np.zeros((1, 4, 4, 3), np.uint8), np.full((1, 4, 4), 255, np.uint8), np.ones((1, 4, 4), bool))
    assert pixels.frames == 3
    assert pixels.pixel_distance == pytest.approx((5.0 + 2.5 + 0.0) / 3)
    # Foreground: 8 px of frame 0 at 5, 8 px of frame 1 at 0, 16 px of the second clip at 0.
    assert pixels.masked_pixel_distance == pytest.approx(8 * 5.0 / 32)
    assert pixels.mask_iou == pytest.approx((4 + 4 + 16) / (8 + 8 + 16))
    assert pixels.as_dict()["frames"] == 3.0


def test_temporal_difference_error_is_zero_when_the_fake_moves_as_the_real_one() -> None:
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 255, size=(5, 8, 8, 3))
    error, real_motion, fake_motion, pairs = temporal_difference_error(real, real + 17.0)  # a constant offset
    assert pairs == 4 and error == pytest.approx(0.0, abs=1e-9) and real_motion == pytest.approx(fake_motion)
    still = np.repeat(real[:1], 5, axis=0)
    error, _, fake_motion, _ = temporal_difference_error(real, still)
    assert fake_motion == 0.0 and error == pytest.approx(real_motion)
    assert temporal_difference_error(real[:1], real[:1]) == (0.0, 0.0, 0.0, 0)
