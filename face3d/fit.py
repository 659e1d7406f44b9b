"""Fitting a `PersonModel` to a tracked video: the paper's eq. 2 on MediaPipe's mesh and blendshapes.

Per frame t a scaled-orthographic camera (R_t, s_t, τ_t) maps the person's shape
S(w_t) = N + B·w_t onto the 468 landmarks ℓ_t. In canonical centimetres (the landmarks brought
into the model's frame by the camera, A_t = R_tᵀ(ℓ_t − τ_t)/s_t) the energy is

    E = Σ_t ‖A_t − N − B·w_t‖²                     E_land  (cm², all 468 vertices, x y z)
      + c_id  · ‖N − N̄‖²                           E_id    (N̄: the prior's mean neutral)
      + c_exp · ‖B − B₀‖²                          E_exp   (B₀: the generic prior, 0 when none)
      + c_score · Σ_t ‖w_t − m_t‖²                 the tracker's scores m_t as measurements of w_t
      + c_temp · Σ_t ‖w_{t−1} − 2·w_t + w_{t+1}‖²  E_temp  (within runs of consecutive frames)

subject to w_t ∈ [0, 1]^52. The c_score term is headcast's stand-in for the paper's per-frame
expression prior: it keeps w semantic (jawOpen stays jawOpen), which retargeting relies on, since a
source sends MediaPipe's scores and a target's B must answer to them. Every weight has a MAP
reading — the ratio of the landmark noise variance to the variance of what it regularises — which
is how the defaults were chosen (see `FitConfig`).

Minimisation alternates three exact sub-steps, each lowering E:
  cameras given (N, B, w)   weighted Procrustes of each frame's landmarks onto S(w_t);
  (N, B) given w, cameras   linear ridge least squares, one 53×53 system shared by all 1,404
                            vertex coordinates (closed form);
  w given (N, B), cameras   one sparse bounded least-squares problem over all frames
                            (`scipy.optimize.lsq_linear`, trust-region reflective), each frame's
                            1,404 landmark rows compressed to 52 by a Cholesky factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import linalg, optimize, sparse

from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.camera import Camera, fit_camera, landmarks_to_width_units
from face3d.errors import FitError
from face3d.person import PersonModel
from face3d.topology import NUM_VERTICES, CanonicalMesh, load_canonical_mesh

FloatArray = npt.NDArray[np.float64]


class FaceObservation(Protocol):
    """What fitting reads from a tracked frame (edge.TrackedFrame has all of it)."""

    @property
    def index(self) -> int: ...

    @property
    def image_size(self) -> tuple[int, int]: ...

    @property
    def landmarks(self) -> npt.NDArray[np.float32] | None: ...

    @property
    def blendshapes(self) -> npt.NDArray[np.float32] | None: ...

    @property
    def shot(self) -> int: ...


@dataclass(frozen=True)
class FitConfig:
    """The weights of the energy (see the module docstring) and how the solver runs.

    Defaults measured on the sample clip: the woman's first 114 face frames fitted, her last 29 held
    out (mean per-vertex error in cm; `rigid` = N alone 0.264). Read as MAP weights each is
    σ_land² / σ_x², σ_land ≈ 0.08 cm being the landmarks' frame-to-frame jitter (docs/notes.md).

    c_exp = 0.1 — B toward B₀ per vertex coordinate, a tenth of a frame's worth (σ_B ≈ 0.25 cm, a
        blendshape's displacement). Held-out error with the tracker's scores / refitted weights:
        c_exp 0.03 → 0.173 / 0.068, 0.1 → 0.157 / 0.065, 0.3 → 0.160 / 0.082, 1 → 0.166 / 0.080,
        3 → 0.182 / 0.078. Blendshapes never seen keep B = B₀ (0 without a prior).
    c_score = 2 — the scores as measurements of w (σ_m ≈ 0.06: (0.08/0.06)² ≈ 2). It trades the
        two held-out numbers: 0.5 → 0.169 / 0.069 (w drifts 0.18 from the scores, losing their
        meaning), 2 → 0.157 / 0.065 (drift 0.09), 8 → 0.164 / 0.075, 32 → 0.167 / 0.093.
    c_id = 1 — one frame's worth of pull toward N̄: the data fix N; the prior pins the similarity
        gauge (position, rotation, size of N, which the cameras could otherwise absorb). 0.005 to 1
        change held-out errors by < 0.003 cm.
    c_temp = 0.5 — second differences of real weights at 24 fps are ≈ 0.1 ((0.08/0.1)² ≈ 0.6);
        0.1 / 0.5 / 2 give 0.157 / 0.157 / 0.158 (scores) and 0.065 / 0.065 / 0.066 (refit): the
        term costs nothing in accuracy and removes frame-to-frame flicker from the fitted weights.
    rounds = 4 — alternation lowers E by 22 %, 9 %, 6 % per round; held-out error changes
        < 0.001 cm after the third.
    min_frames = 20 — held-out error when fitting on the last k training frames (rigid / scores /
        refit): k = 10 → 0.295 / 0.308 / 0.223, 20 → 0.263 / 0.209 / 0.121, 40 → 0.260 / 0.194 /
        0.099: from 20 frames the person model beats rigid-only by 2× (53 unknowns per vertex
        coordinate need a few dozen varied frames; the paper enrols from 50–500).
    lsq_tol = 1e-4 — lsq_linear's relative cost tolerance (inner LSMR tolerance "auto"); 1e-6 with
        exact inner solves costs 20–40× the time for a cost change of 1e-4, far below the noise.
    """

    c_id: float = 1.0
    c_exp: float = 0.1
    c_score: float = 2.0
    c_temp: float = 0.5
    rounds: int = 4
    min_frames: int = 20
    lsq_tol: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("c_id", "c_exp", "c_score"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise FitError(f"FitConfig.{name} must be a positive number (it keeps the problem well posed)")
        if not (math.isfinite(self.c_temp) and self.c_temp >= 0):
            raise FitError("FitConfig.c_temp must be ≥ 0")
        if self.rounds < 1 or self.min_frames < 2:
            raise FitError("FitConfig.rounds must be ≥ 1 and min_frames ≥ 2")
        if not (0 < self.lsq_tol < 1):
            raise FitError("FitConfig.lsq_tol must lie in (0, 1)")


@dataclass(frozen=True)
class FitData:
    """Frames ready for fitting.

    landmarks: (T, 468, 3) float64 width units (see face3d.camera); scores: (T, 52) float64 in [0, 1];
    frame_indices: (T,) int64; runs: (T,) int64, frames of one run are consecutive in time (the
    temporal term couples only those); image_sizes: (T, 2) int64 (width, height);
    skipped: (frame index, reason) for every frame left out.
    """

    landmarks: FloatArray
    scores: FloatArray
    frame_indices: npt.NDArray[np.int64]
    runs: npt.NDArray[np.int64]
    image_sizes: npt.NDArray[np.int64]
    skipped: tuple[tuple[int, str], ...] = ()

    def __len__(self) -> int:
        return len(self.landmarks)

    def subset(self, selection: slice | npt.NDArray[np.int64]) -> FitData:
        """Return the frames at `selection` (runs stay split where the frames are not consecutive)."""
        return FitData(
            self.landmarks[selection],
            self.scores[selection],
            self.frame_indices[selection],
            self.runs[selection],
            self.image_sizes[selection],
            self.skipped,
        )


@dataclass(frozen=True)
class FrameFit:
    """Per-frame fit of a fixed model: weights (T, 52), cameras, residual_cm (T,) mean per-vertex distance."""

    weights: FloatArray
    cameras: tuple[Camera, ...]
    residual_cm: FloatArray


@dataclass(frozen=True)
class FitReport:
    """How a fit went.

    frame_indices: (T,) the frames used; residual_cm: (T,) mean per-vertex distance (cm) between each
    frame's aligned landmarks and S(w_t); weights: (T, 52) refined w_t; cameras: one per frame;
    skipped: (frame index, reason) for frames without a face or with a degenerate pose;
    energy: E after each round (non-increasing).
    """

    frame_indices: npt.NDArray[np.int64]
    residual_cm: FloatArray
    weights: FloatArray
    cameras: tuple[Camera, ...]
    skipped: tuple[tuple[int, str], ...]
    energy: tuple[float, ...]


@dataclass(frozen=True)
class FitResult:
    """A fitted person model and the report of its fit."""

    model: PersonModel
    report: FitReport


# --- input ---------------------------------------------------------------------------------------


def prepare_frames(frames: Sequence[FaceObservation], mesh: CanonicalMesh | None = None) -> FitData:
    """Return the usable frames as FitData; frames without a face or with a degenerate pose are skipped.

    Raises FitError when a frame holds NaN or infinity (corrupt input, not a tracking miss).
    """
    canonical = mesh or load_canonical_mesh()
    ids = canonical.procrustes_ids
    ref = canonical.vertices.astype(np.float64)[ids]
    weights = canonical.procrustes_weights.astype(np.float64)
    landmarks, scores, indices, runs, sizes = [], [], [], [], []
    skipped: list[tuple[int, str]] = []
    run = -1
    previous: tuple[int, int] | None = None
    for frame in frames:
        if frame.landmarks is None or frame.blendshapes is None:
            skipped.append((int(frame.index), "no face"))
            continue
        points = np.asarray(frame.landmarks, dtype=np.float64)
        score = np.asarray(frame.blendshapes, dtype=np.float64)
        if score.shape != (NUM_BLENDSHAPES,):
            raise FitError(f"frame {frame.index}: expected 52 blendshape scores, got shape {score.shape}")
        if not (np.all(np.isfinite(points)) and np.all(np.isfinite(score))):
            raise FitError(f"frame {frame.index}: landmarks or blendshapes hold NaN or infinity; track the video again")
        width_units = landmarks_to_width_units(points, frame.image_size)
        try:
            fit_camera(width_units[ids], ref, weights)
        except FitError as error:
            skipped.append((int(frame.index), str(error)))
            continue
        if previous is None or previous != (frame.shot, frame.index - 1):
            run += 1
        previous = (frame.shot, frame.index)
        landmarks.append(width_units)
        scores.append(np.clip(score, 0.0, 1.0))
        indices.append(frame.index)
        runs.append(run)
        sizes.append(frame.image_size)
    if not landmarks:
        return FitData(
            np.zeros((0, NUM_VERTICES, 3)),
            np.zeros((0, NUM_BLENDSHAPES)),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 2), np.int64),
            tuple(skipped),
        )
    return FitData(
        np.stack(landmarks),
        np.stack(scores),
        np.asarray(indices, np.int64),
        np.asarray(runs, np.int64),
        np.asarray(sizes, np.int64).reshape(-1, 2),
        tuple(skipped),
    )


# --- the three sub-steps ---------------------------------------------------------------------------


def _cameras(landmarks: FloatArray, shapes: FloatArray) -> tuple[Camera, ...]:
    """Return one camera per frame: all 468 landmarks aligned onto that frame's current shape."""
    return tuple(fit_camera(points, shape) for points, shape in zip(landmarks, shapes, strict=True))


def _aligned(landmarks: FloatArray, cameras: Sequence[Camera]) -> FloatArray:
    """Return (T, 468, 3) landmarks in canonical cm: each frame brought through its camera's inverse."""
    return np.stack([camera.to_model(points) for points, camera in zip(landmarks, cameras, strict=True)])


def solve_shape(
    aligned: FloatArray, weights: FloatArray, prior: PersonModel, c_id: float, c_exp: float
) -> tuple[FloatArray, FloatArray]:
    """Return (N, B) minimising Σ‖A_t − N − B·w_t‖² + c_id‖N − N̄‖² + c_exp‖B − B₀‖² (closed form).

    Every vertex coordinate has the same design [1, w_t], so one 53×53 Cholesky serves all 1,404.
    """
    frames = len(aligned)
    design = np.concatenate([np.ones((frames, 1)), weights], axis=1)
    ridge = np.full(NUM_BLENDSHAPES + 1, c_exp)
    ridge[0] = c_id
    gram = design.T @ design + np.diag(ridge)
    theta_prior = np.concatenate([prior.neutral.reshape(1, -1), prior.basis.reshape(-1, NUM_BLENDSHAPES).T], axis=0)
    rhs = design.T @ aligned.reshape(frames, -1) + ridge[:, None] * theta_prior
    theta = linalg.cho_solve(linalg.cho_factor(gram), rhs)
    neutral = theta[0].reshape(NUM_VERTICES, 3)
    basis = theta[1:].T.reshape(NUM_VERTICES, 3, NUM_BLENDSHAPES)
    return neutral, basis


def _second_differences(runs: npt.NDArray[np.int64]) -> sparse.csr_matrix:
    """Return the (K, T) second-difference operator within runs of consecutive frames."""
    rows, cols, vals = [], [], []
    k = 0
    for t in range(1, len(runs) - 1):
        if runs[t - 1] == runs[t] == runs[t + 1]:
            rows += [k, k, k]
            cols += [t - 1, t, t + 1]
            vals += [1.0, -2.0, 1.0]
            k += 1
    return sparse.csr_matrix((vals, (rows, cols)), shape=(k, len(runs)))


def solve_weights(
    aligned: FloatArray,
    neutral: FloatArray,
    basis: FloatArray,
    scores: FloatArray,
    runs: npt.NDArray[np.int64],
    config: FitConfig,
) -> FloatArray:
    """Return (T, 52) weights in [0, 1] minimising E_land + c_score‖w − m‖² + c_temp‖Δ²w‖² for fixed N, B.

    ‖B·w − r‖² + c‖w − m‖² = ‖Lᵀw − L⁻¹(Bᵀr + c·m)‖² + const with L·Lᵀ = BᵀB + c·I, so each frame's
    1,404 landmark rows shrink to 52 triangular rows and the whole video is one sparse problem.
    """
    frames = len(aligned)
    flat_basis = basis.reshape(-1, NUM_BLENDSHAPES)
    gram = flat_basis.T @ flat_basis + config.c_score * np.eye(NUM_BLENDSHAPES)
    lower = linalg.cholesky(gram, lower=True)
    residual = aligned.reshape(frames, -1) - neutral.reshape(1, -1)
    rhs = flat_basis.T @ residual.T + config.c_score * scores.T
    targets = linalg.solve_triangular(lower, rhs, lower=True)  # (52, T)
    blocks = sparse.kron(sparse.eye(frames, format="csr"), sparse.csr_matrix(lower.T), format="csr")
    second = _second_differences(runs)
    if config.c_temp > 0 and second.shape[0] > 0:
        temporal = math.sqrt(config.c_temp) * sparse.kron(second, sparse.eye(NUM_BLENDSHAPES), format="csr")
        matrix = sparse.vstack([blocks, temporal], format="csr")
        target = np.concatenate([targets.T.ravel(), np.zeros(temporal.shape[0])])
    else:
        matrix, target = blocks, targets.T.ravel()
    solution = optimize.lsq_linear(
        matrix, target, bounds=(0.0, 1.0), method="trf", lsq_solver="lsmr", tol=config.lsq_tol, lsmr_tol="auto"
    )
    weights = np.clip(np.asarray(solution.x).reshape(frames, NUM_BLENDSHAPES), 0.0, 1.0)
    if not np.all(np.isfinite(weights)):
        raise FitError("the expression solve diverged (NaN weights); check the input frames")
    return weights


def _residual_cm(aligned: FloatArray, shapes: FloatArray) -> FloatArray:
    """Return (T,) mean per-vertex Euclidean distance between aligned landmarks and shapes."""
    return np.asarray(np.linalg.norm(aligned - shapes, axis=2).mean(axis=1))


def _energy(
    aligned: FloatArray,
    neutral: FloatArray,
    basis: FloatArray,
    weights: FloatArray,
    data: FitData,
    prior: PersonModel,
    config: FitConfig,
) -> float:
    shapes = neutral + np.einsum("vcj,tj->tvc", basis, weights)
    second = _second_differences(data.runs) @ weights
    return float(
        np.sum((aligned - shapes) ** 2)
        + config.c_id * np.sum((neutral - prior.neutral) ** 2)
        + config.c_exp * np.sum((basis - prior.basis) ** 2)
        + config.c_score * np.sum((weights - data.scores) ** 2)
        + config.c_temp * np.sum(second**2)
    )


def _pose_statistics(cameras: Sequence[Camera]) -> tuple[FloatArray, FloatArray]:
    """Return mean and std of (translation x, translation y down, scale) over the cameras."""
    poses = np.array([[*camera.image_translation(), camera.scale] for camera in cameras])
    return poses.mean(axis=0), poses.std(axis=0)


def canonical_prior(mesh: CanonicalMesh | None = None) -> PersonModel:
    """Return the prior used when none is given: the canonical mean face and B₀ = 0."""
    canonical = mesh or load_canonical_mesh()
    return PersonModel(
        neutral=canonical.vertices.astype(np.float64), basis=np.zeros((NUM_VERTICES, 3, NUM_BLENDSHAPES))
    )


def _initial_cameras(data: FitData, reference: FloatArray, mesh: CanonicalMesh) -> tuple[Camera, ...]:
    """Return cameras from the 33 weighted Procrustes landmarks onto a reference shape (MediaPipe's own)."""
    ids = mesh.procrustes_ids
    weights = mesh.procrustes_weights.astype(np.float64)
    return tuple(fit_camera(points[ids], reference[ids], weights) for points in data.landmarks)


# --- public fitting ------------------------------------------------------------------------------


def fit_person_data(
    data: FitData,
    config: FitConfig | None = None,
    prior: PersonModel | None = None,
    mesh: CanonicalMesh | None = None,
) -> FitResult:
    """Return the PersonModel minimising the energy over `data`, with its report.

    prior: the generic face (mean neutral N̄ and B₀); the canonical mean with B₀ = 0 when None.
    Raises FitError when fewer than `config.min_frames` frames are usable.
    """
    config = config or FitConfig()
    canonical = mesh or load_canonical_mesh()
    prior = prior or canonical_prior(canonical)
    if len(data) < config.min_frames:
        raise FitError(
            f"{len(data)} usable face frames ({len(data.skipped)} skipped); fitting a person needs at least "
            f"{config.min_frames}: record a longer clip with the face in view"
        )
    cameras = _initial_cameras(data, prior.neutral, canonical)
    weights = data.scores.copy()
    neutral, basis = prior.neutral, prior.basis
    energy: list[float] = []
    for round_ in range(config.rounds):
        if round_ > 0:
            cameras = _cameras(data.landmarks, neutral + np.einsum("vcj,tj->tvc", basis, weights))
        aligned = _aligned(data.landmarks, cameras)
        neutral, basis = solve_shape(aligned, weights, prior, config.c_id, config.c_exp)
        weights = solve_weights(aligned, neutral, basis, data.scores, data.runs, config)
        energy.append(_energy(aligned, neutral, basis, weights, data, prior, config))
    shapes = neutral + np.einsum("vcj,tj->tvc", basis, weights)
    pose_mean, pose_std = _pose_statistics(cameras)
    model = PersonModel(neutral, basis, pose_mean, pose_std, frames=len(data))
    report = FitReport(
        frame_indices=data.frame_indices,
        residual_cm=_residual_cm(_aligned(data.landmarks, cameras), shapes),
        weights=weights,
        cameras=cameras,
        skipped=data.skipped,
        energy=tuple(energy),
    )
    return FitResult(model, report)


def fit_person(
    frames: Sequence[FaceObservation],
    config: FitConfig | None = None,
    prior: PersonModel | None = None,
    mesh: CanonicalMesh | None = None,
) -> FitResult:
    """Return the PersonModel fitted to one person's tracked frames (paper eq. 2), with its report.

    Frames without a face or with a degenerate pose are skipped and listed in `report.skipped`.
    """
    canonical = mesh or load_canonical_mesh()
    return fit_person_data(prepare_frames(frames, canonical), config, prior, canonical)


def fit_rigid(
    data: FitData, config: FitConfig | None = None, prior: PersonModel | None = None, mesh: CanonicalMesh | None = None
) -> PersonModel:
    """Return the rigid-only model: N alone (B = 0), the mean of the aligned frames (generalised Procrustes)."""
    config = config or FitConfig()
    canonical = mesh or load_canonical_mesh()
    prior = prior or canonical_prior(canonical)
    if len(data) < config.min_frames:
        raise FitError(f"{len(data)} usable face frames; fitting needs at least {config.min_frames}")
    cameras = _initial_cameras(data, prior.neutral, canonical)
    neutral = prior.neutral
    for round_ in range(config.rounds):
        if round_ > 0:
            cameras = _cameras(data.landmarks, np.broadcast_to(neutral, data.landmarks.shape))
        aligned = _aligned(data.landmarks, cameras)
        neutral = (aligned.sum(axis=0) + config.c_id * prior.neutral) / (len(data) + config.c_id)
    pose_mean, pose_std = _pose_statistics(cameras)
    return PersonModel(neutral, np.zeros_like(prior.basis), pose_mean, pose_std, frames=len(data))


def refit_frames(
    model: PersonModel,
    data: FitData,
    config: FitConfig | None = None,
    refine_weights: bool = True,
) -> FrameFit:
    """Return per-frame cameras and weights for a fixed model (held-out evaluation, tracking a known person).

    refine_weights=False keeps the tracker's scores as w (what the online path sends) and fits only
    the cameras; True minimises the same energy as fitting, over w and cameras only.
    """
    config = config or FitConfig()
    if len(data) == 0:
        raise FitError("no usable face frames to fit")
    weights = data.scores.copy()
    for _ in range(config.rounds):
        cameras = _cameras(data.landmarks, model.shape(weights))
        if refine_weights:
            aligned = _aligned(data.landmarks, cameras)
            weights = solve_weights(aligned, model.neutral, model.basis, data.scores, data.runs, config)
    cameras = _cameras(data.landmarks, model.shape(weights))
    residual = _residual_cm(_aligned(data.landmarks, cameras), model.shape(weights))
    return FrameFit(weights=weights, cameras=cameras, residual_cm=residual)
