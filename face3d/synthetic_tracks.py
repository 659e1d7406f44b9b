"""Synthetic tracked sequences with known ground truth, for testing and benchmarking the fitter.

A random person (canonical mean + a smooth identity offset; a few blendshapes with localised
displacements, the rest dead as on real footage), smooth weight and head-pose trajectories, and
the landmarks and scores a tracker would report, with Gaussian noise of known size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.camera import Camera
from face3d.person import PersonModel
from face3d.topology import NUM_VERTICES, CanonicalMesh, load_canonical_mesh

FloatArray = npt.NDArray[np.float64]
IRIS_POINTS = 10


@dataclass(frozen=True)
class SyntheticFrame:
    """A tracked frame with the attributes fitting reads (see face3d.fit.FaceObservation).

    landmarks: (478, 3) float32 MediaPipe-normalised; blendshapes: (52,) float32 in [0, 1].
    """

    index: int
    image_size: tuple[int, int]
    landmarks: npt.NDArray[np.float32] | None
    blendshapes: npt.NDArray[np.float32] | None
    shot: int = 0
    timestamp_ms: int = 0


@dataclass(frozen=True)
class SyntheticSequence:
    """The truth (model, weights (T, 52), cameras) and what a tracker would have reported (frames).

    landmark_noise_cm: σ of the isotropic Gaussian noise on each landmark coordinate, in canonical cm
        (added in image units as σ·s_t, so it is exactly σ after the camera is undone).
    score_noise: σ of the Gaussian noise on each score before clipping to [0, 1].
    active: indices of the blendshapes that move the mesh.
    """

    model: PersonModel
    weights: FloatArray
    cameras: tuple[Camera, ...]
    frames: tuple[SyntheticFrame, ...]
    landmark_noise_cm: float
    score_noise: float
    active: npt.NDArray[np.int64]


def _bumps(vertices: FloatArray, rng: np.random.Generator, count: int, radius_cm: float) -> FloatArray:
    """Return (468, 3) smooth displacements: `count` Gaussian bumps with random unit directions."""
    field = np.zeros_like(vertices)
    for centre in rng.choice(len(vertices), size=count, replace=False):
        weight = np.exp(-np.sum((vertices - vertices[centre]) ** 2, axis=1) / (2 * radius_cm**2))
        direction = rng.normal(size=3)
        field += weight[:, None] * direction / np.linalg.norm(direction)
    return field


def random_person(
    rng: np.random.Generator, active: int = 12, mesh: CanonicalMesh | None = None
) -> tuple[PersonModel, npt.NDArray[np.int64]]:
    """Return (a random PersonModel, the indices of its active blendshapes).

    Identity offset ≈ 0.3 cm (like real people against the canonical mean); each active blendshape
    moves one region by up to ≈ 0.8 cm at full weight; the others are exactly zero.
    """
    canonical = mesh or load_canonical_mesh()
    vertices = canonical.vertices.astype(np.float64)
    neutral = vertices + 0.3 * _bumps(vertices, rng, 6, 3.0)
    basis = np.zeros((NUM_VERTICES, 3, NUM_BLENDSHAPES))
    chosen = np.sort(rng.choice(np.arange(1, NUM_BLENDSHAPES), size=active, replace=False))
    for j in chosen:
        basis[:, :, j] = rng.uniform(0.5, 0.8) * _bumps(vertices, rng, 1, 1.5)
    return PersonModel(neutral=neutral, basis=basis), chosen.astype(np.int64)


def synthetic_sequence(
    frames: int = 120,
    active: int = 12,
    landmark_noise_cm: float = 0.05,
    score_noise: float = 0.05,
    seed: int = 0,
    fps: float = 25.0,
    image_size: tuple[int, int] = (640, 480),
    mesh: CanonicalMesh | None = None,
) -> SyntheticSequence:
    """Return a synthetic sequence: a random person, smooth expressions and head motion, noisy landmarks."""
    rng = np.random.default_rng(seed)
    canonical = mesh or load_canonical_mesh()
    model, chosen = random_person(rng, active, canonical)
    time_s = np.arange(frames) / fps
    weights = np.zeros((frames, NUM_BLENDSHAPES))
    for j in chosen:
        # Slow oscillations between rest (clipped at 0 for part of the time) and full strength.
        freq = rng.uniform(0.2, 0.8)
        phase = rng.uniform(0, 2 * np.pi)
        weights[:, j] = np.clip(0.65 * np.sin(2 * np.pi * freq * time_s + phase) + 0.35, 0.0, 1.0)
    angles = np.stack(
        [
            np.deg2rad(rng.uniform(10, 20)) * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * time_s + rng.uniform(0, 6))
            for _ in range(3)
        ],
        axis=1,
    )
    width, height = image_size
    cameras: list[Camera] = []
    out: list[SyntheticFrame] = []
    shapes = model.shape(weights)
    for t in range(frames):
        scale = 0.02 * (1 + 0.1 * np.sin(2 * np.pi * 0.1 * time_s[t]))
        camera = Camera(
            rotation=Rotation.from_euler("yxz", angles[t]).as_matrix(),
            scale=float(scale),
            translation=np.array([0.05 * np.sin(time_s[t]), 0.03 * np.cos(0.7 * time_s[t]), -0.1]),
        )
        cameras.append(camera)
        points = camera.project(shapes[t]) + rng.normal(scale=landmark_noise_cm * scale, size=(NUM_VERTICES, 3))
        normalised = np.empty_like(points)
        normalised[:, 0] = points[:, 0] + 0.5
        normalised[:, 1] = 0.5 - points[:, 1] * (width / height)
        normalised[:, 2] = -points[:, 2]
        iris = np.repeat(normalised.mean(axis=0, keepdims=True), IRIS_POINTS, axis=0)
        scores = np.clip(weights[t] + rng.normal(scale=score_noise, size=NUM_BLENDSHAPES), 0.0, 1.0)
        out.append(
            SyntheticFrame(
                index=t,
                image_size=image_size,
                landmarks=np.concatenate([normalised, iris]).astype(np.float32),
                blendshapes=scores.astype(np.float32),
                timestamp_ms=round(t * 1000 / fps),
            )
        )
    return SyntheticSequence(
        model=model,
        weights=weights,
        cameras=tuple(cameras),
        frames=tuple(out),
        landmark_noise_cm=landmark_noise_cm,
        score_noise=score_noise,
        active=chosen,
    )
