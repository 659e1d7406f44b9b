"""Fitting a person (paper eq. 2): synthetic recovery with tolerances from the noise, the sample clip, bad input."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from face3d.camera import fit_camera
from face3d.errors import FitError
from face3d.fit import FitConfig, FitResult, fit_person, fit_person_data, fit_rigid, prepare_frames, refit_frames
from face3d.synthetic_tracks import SyntheticSequence, synthetic_sequence
from face3d.topology import load_canonical_mesh

FRAMES = 120
SIGMA_CM = 0.05  # landmark noise per coordinate, canonical cm
SIGMA_SCORE = 0.05
LANDMARK_COORDS = 468 * 3


@pytest.fixture(scope="module")
def sequence() -> SyntheticSequence:
    return synthetic_sequence(frames=FRAMES, landmark_noise_cm=SIGMA_CM, score_noise=SIGMA_SCORE, seed=1)


@pytest.fixture(scope="module")
def fitted(sequence: SyntheticSequence) -> FitResult:
    # The MAP weights for this noise: c_score = σ²/σ_m²; no temporal prior, so nothing biases w.
    config = FitConfig(c_score=(SIGMA_CM / SIGMA_SCORE) ** 2, c_temp=0.0)
    return fit_person(sequence.frames, config)


def _image_plane_error_cm(sequence: SyntheticSequence, fitted: FitResult) -> np.ndarray:
    """Return (T, 468, 2): fitted minus true landmark positions in the image plane, in cm.

    Comparing what the camera sees removes the similarity gauge (N, B and the cameras are unique only
    up to one) and the landmarks' depth origin, which no camera can observe.
    """
    shapes = fitted.model.shape(fitted.report.weights)
    truth = sequence.model.shape(sequence.weights)
    errors = [
        (camera.project(shape) - true_camera.project(true_shape))[:, :2] / true_camera.scale
        for camera, shape, true_camera, true_shape in zip(
            fitted.report.cameras, shapes, sequence.cameras, truth, strict=True
        )
    ]
    return np.array(errors)


def test_recovered_shapes_are_as_close_to_the_truth_as_the_degrees_of_freedom_allow(
    sequence: SyntheticSequence, fitted: FitResult
) -> None:
    # Least squares projects the noise onto the model's span: per landmark coordinate the fit keeps
    # the share p/n of the noise variance, with 53 shared unknowns (N, B) over T frames and 59 per
    # frame (52 weights, 7 camera) over 1,404 coordinates. The priors and bounds only shrink that.
    # Expected RMS error σ·√(53/T + 59/1404) ≈ 0.69σ; 15 % margin for the cameras' non-linearity.
    rms = math.sqrt(np.mean(_image_plane_error_cm(sequence, fitted) ** 2))
    expected = SIGMA_CM * math.sqrt(53 / FRAMES + 59 / LANDMARK_COORDS)
    assert rms < 1.15 * expected
    # And the landmark residual keeps the rest, σ·√(1 − p/n) ≈ 0.72σ, never more than σ.
    # Mean per-vertex distance of 3-D Gaussian noise is σ·√(8/π) per unit RMS.
    residual_rms = float(np.mean(fitted.report.residual_cm)) / math.sqrt(8 / math.pi)
    assert 0.9 * SIGMA_CM * math.sqrt(1 - 53 / FRAMES - 59 / LANDMARK_COORDS) < residual_rms < SIGMA_CM


def test_weights_refitted_on_the_true_model_beat_the_tracker_scores(sequence: SyntheticSequence) -> None:
    # With N and B known, MAP with c_score = σ²/σ_m² has posterior covariance (BᵀB/σ² + I/σ_m²)⁻¹:
    # the landmarks (‖B_j‖ of several cm against σ = 0.05 cm) pin each active weight far below σ_m.
    # Allowed: twice that posterior RMS (bounds, cameras and the clipped scores' bias).
    config = FitConfig(c_score=(SIGMA_CM / SIGMA_SCORE) ** 2, c_temp=0.0)
    data = prepare_frames(sequence.frames)
    refit = refit_frames(sequence.model, data, config)
    active = sequence.active
    flat = sequence.model.basis.reshape(-1, 52)
    posterior = np.linalg.inv(flat.T @ flat / SIGMA_CM**2 + np.eye(52) / SIGMA_SCORE**2)
    expected = math.sqrt(np.mean(np.diag(posterior)[active]))
    error = math.sqrt(np.mean((refit.weights[:, active] - sequence.weights[:, active]) ** 2))
    assert error < 2 * expected < SIGMA_SCORE


def test_jointly_fitted_weights_stay_within_the_score_noise(sequence: SyntheticSequence, fitted: FitResult) -> None:
    # Fitting B too, w is known only as well as the scores anchor its meaning (B·w is what the
    # landmarks see): the error must stay at the scores' own level σ_m, not drift beyond it.
    active = sequence.active
    error = math.sqrt(np.mean((fitted.report.weights[:, active] - sequence.weights[:, active]) ** 2))
    assert error < SIGMA_SCORE
    assert np.all((fitted.report.weights >= 0) & (fitted.report.weights <= 1))


def test_relative_camera_motion_is_recovered(sequence: SyntheticSequence, fitted: FitResult) -> None:
    # A frame's camera error comes from the error of its shape, not from the landmark noise (which
    # averages away over 468 points). In the image plane that error is ε ≤ 1.15·σ·√(53/T + 59/1404)
    # (the test above), which bounds relative scale by √2·ε/r (face RMS radius r ≈ 4.6 cm; relative
    # motion against frame 0 cancels the gauge and doubles the variance). Rotation out of the image
    # plane also sees the depth error, which that test does not bound: measured 0.9° RMS; held to 2°,
    # under the 2.3° by which MediaPipe's own matrix and a Procrustes fit disagree (docs/notes.md).
    r = 4.6
    scale_bound = math.sqrt(2) * 1.15 * SIGMA_CM * math.sqrt(53 / FRAMES + 59 / LANDMARK_COORDS) / r
    true_cams, cams = sequence.cameras, fitted.report.cameras
    angles, scales = [], []
    for t in range(1, FRAMES):
        true_rel = true_cams[t].rotation @ true_cams[0].rotation.T
        rel = cams[t].rotation @ cams[0].rotation.T
        angles.append(Rotation.from_matrix(rel @ true_rel.T).magnitude())
        scales.append((cams[t].scale / cams[0].scale) / (true_cams[t].scale / true_cams[0].scale) - 1)
    assert math.sqrt(np.mean(np.square(angles))) < math.radians(2.0)
    assert math.sqrt(np.mean(np.square(scales))) < scale_bound


def test_energy_never_increases_and_residuals_are_reported(fitted: FitResult) -> None:
    energy = fitted.report.energy
    assert all(b <= a * (1 + 1e-3) for a, b in itertools.pairwise(energy))
    assert fitted.report.residual_cm.shape == (FRAMES,)
    assert fitted.model.has_pose_statistics and fitted.model.frames == FRAMES


def test_the_temporal_term_smooths_the_weights(sequence: SyntheticSequence) -> None:
    subset = sequence.frames[:40]
    rough = fit_person(subset, FitConfig(c_temp=0.0, rounds=1)).report.weights
    smooth = fit_person(subset, FitConfig(c_temp=50.0, rounds=1)).report.weights
    assert np.sum(np.diff(smooth, 2, axis=0) ** 2) < 0.5 * np.sum(np.diff(rough, 2, axis=0) ** 2)


# --- bad input ---------------------------------------------------------------------------------------


def test_too_few_frames_says_how_many_are_needed(sequence: SyntheticSequence) -> None:
    with pytest.raises(FitError, match="at least 20"):
        fit_person(sequence.frames[:10])


def test_frames_without_a_face_or_with_a_degenerate_pose_are_skipped_and_reported(
    sequence: SyntheticSequence,
) -> None:
    frames: list[Any] = list(sequence.frames[:30])
    frames[3] = replace(frames[3], landmarks=None, blendshapes=None)
    collapsed = np.zeros((478, 3), np.float32) + 0.5
    frames[5] = replace(frames[5], landmarks=collapsed)
    mirrored = frames[7].landmarks.copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    frames[7] = replace(frames[7], landmarks=mirrored)
    data = prepare_frames(frames)
    assert [index for index, _ in data.skipped] == [3, 5, 7]
    assert "no face" in data.skipped[0][1] and "degenerate" in data.skipped[1][1]
    assert len(data) == 27
    # The runs break around the skipped frames: the temporal term never bridges a gap.
    assert len(np.unique(data.runs)) == 4
    result = fit_person(frames)
    assert [index for index, _ in result.report.skipped] == [3, 5, 7]
    assert np.all(np.isfinite(result.model.basis))


def test_nan_input_is_a_clear_error(sequence: SyntheticSequence) -> None:
    frames: list[Any] = list(sequence.frames[:30])
    bad = frames[4].landmarks.copy()
    bad[10, 0] = np.nan
    frames[4] = replace(frames[4], landmarks=bad)
    with pytest.raises(FitError, match=r"frame 4.*NaN"):
        fit_person(frames)
    with pytest.raises(FitError, match="positive"):
        FitConfig(c_exp=float("nan"))


def test_a_mirrored_face_is_not_a_pose() -> None:
    mesh = load_canonical_mesh()
    points = mesh.vertices.astype(np.float64) * 0.02
    mirror = points * np.array([-1.0, 1.0, 1.0])
    fit_camera(points, mesh.vertices)
    with pytest.raises(FitError, match="degenerate"):
        fit_camera(mirror, mesh.vertices)


# --- the sample clip -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_person_model_predicts_held_out_frames_of_the_woman(sample_tracks: Any) -> None:
    # The woman: fit her first 80 % of face frames, evaluate her last 20 % (docs/notes.md, the 80/20 split).
    data = prepare_frames(sample_tracks.frames_of(0))
    split = round(0.8 * len(data))
    train, test = data.subset(slice(0, split)), data.subset(slice(split, len(data)))
    rigid = refit_frames(fit_rigid(train), test, refine_weights=False).residual_cm.mean()
    model = fit_person_data(train).model
    with_scores = refit_frames(model, test, refine_weights=False).residual_cm.mean()
    refitted = refit_frames(model, test).residual_cm.mean()
    print(f"held-out cm: rigid {rigid:.3f}, model with scores {with_scores:.3f}, model refitted {refitted:.3f}")
    # docs/notes.md: a rigid mean shape misses by ~0.28 cm; the landmarks jitter by ~0.08 cm, a floor no
    # model gets far below. The person model must explain most of what lies between: at least half
    # of the rigid error with refitted weights, and a clear gain with the tracker's raw scores.
    assert 0.2 < rigid < 0.35
    assert refitted < 0.5 * rigid
    assert with_scores < 0.8 * rigid
