"""The generic prior: mean neutral N̄ and basis B₀ learnt from people in any set of tracked videos.

Every person with enough face frames is fitted with the canonical prior (B₀ = 0); their models are
brought into one frame by a similarity onto the canonical mean (fits agree on it only up to
the small gauge the c_id term leaves), then averaged with one vote per person — a person with a
long recording is not more typical of faces than one with a short one. The result is a
`PersonModel` (the "average person"), saved and loaded like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from face3d.camera import similarity_align
from face3d.errors import FitError
from face3d.fit import FaceObservation, FitConfig, canonical_prior, fit_person
from face3d.person import PersonModel
from face3d.topology import CanonicalMesh, load_canonical_mesh


class IdentifiedObservation(FaceObservation, Protocol):
    """A tracked frame that also says whose face it is (-1: unknown)."""

    @property
    def identity(self) -> int: ...


class TrackedRecording(Protocol):
    """What `build_prior` reads from a recording's tracks (edge.Tracks has it)."""

    @property
    def frames(self) -> Sequence[IdentifiedObservation]: ...


@dataclass(frozen=True)
class PriorResult:
    """The learnt prior and who went into it.

    people: (recording index, identity, frames used) per person fitted.
    skipped: (recording index, identity, reason) per person left out.
    """

    prior: PersonModel
    people: tuple[tuple[int, int, int], ...]
    skipped: tuple[tuple[int, int, str], ...]


def _people(recording: TrackedRecording) -> dict[int, list[IdentifiedObservation]]:
    """Return face frames grouped by identity; all face frames as one person when none is identified."""
    faces = [f for f in recording.frames if f.landmarks is not None]
    if not any(f.identity >= 0 for f in faces):
        return {-1: faces} if faces else {}
    groups: dict[int, list[IdentifiedObservation]] = {}
    for frame in faces:
        if frame.identity >= 0:
            groups.setdefault(frame.identity, []).append(frame)
    return groups


def build_prior(
    recordings: Sequence[TrackedRecording],
    config: FitConfig | None = None,
    mesh: CanonicalMesh | None = None,
) -> PriorResult:
    """Return the generic prior (mean neutral and B₀) learnt from every person in the recordings.

    Raises FitError when no person has enough usable frames.
    """
    config = config or FitConfig()
    canonical = mesh or load_canonical_mesh()
    base = canonical_prior(canonical)
    neutrals, bases, pose_means, pose_vars = [], [], [], []
    people: list[tuple[int, int, int]] = []
    skipped: list[tuple[int, int, str]] = []
    for r, recording in enumerate(recordings):
        for identity, frames in sorted(_people(recording).items()):
            try:
                result = fit_person(frames, config, base, canonical)
            except FitError as error:
                skipped.append((r, identity, str(error)))
                continue
            model = result.model
            a, rotation, offset = similarity_align(model.neutral, base.neutral)
            neutrals.append(a * model.neutral @ rotation.T + offset)
            bases.append(a * np.einsum("ij,vjk->vik", rotation, model.basis))
            pose_means.append(model.pose_mean)
            pose_vars.append(model.pose_std**2)
            people.append((r, identity, model.frames))
    if not people:
        reasons = "; ".join(f"recording {r} person {i}: {why}" for r, i, why in skipped) or "no face frames"
        raise FitError(f"no person could be fitted, so no prior was built ({reasons})")
    means = np.array(pose_means)
    # Pooled spread: each person's own variance plus the spread of their means around the overall mean.
    pose_std = np.sqrt(np.mean(np.array(pose_vars), axis=0) + means.var(axis=0))
    prior = PersonModel(
        neutral=np.mean(neutrals, axis=0),
        basis=np.mean(bases, axis=0),
        pose_mean=means.mean(axis=0),
        pose_std=pose_std,
        frames=sum(p[2] for p in people),
    )
    return PriorResult(prior=prior, people=tuple(people), skipped=tuple(skipped))
