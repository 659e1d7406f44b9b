"""The generic prior: learnt from several recordings, one vote per person."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from face3d.errors import FitError
from face3d.fit import FitConfig, fit_person
from face3d.prior import build_prior
from face3d.synthetic_tracks import synthetic_sequence


@dataclass
class _Recording:
    frames: list[Any]


@dataclass(frozen=True)
class _Frame:
    index: int
    image_size: tuple[int, int]
    landmarks: Any
    blendshapes: Any
    shot: int = 0
    identity: int = -1


def _recording(seed: int, identity: int) -> _Recording:
    seq = synthetic_sequence(frames=30, seed=seed)
    return _Recording([_Frame(f.index, f.image_size, f.landmarks, f.blendshapes, 0, identity) for f in seq.frames])


def test_prior_averages_people_and_a_prior_pulls_unseen_blendshapes() -> None:
    config = FitConfig(rounds=2)
    result = build_prior([_recording(1, 0), _recording(2, -1)], config)
    assert [(r, i) for r, i, _ in result.people] == [(0, 0), (1, -1)]
    prior = result.prior
    assert prior.frames == 60 and prior.has_pose_statistics
    assert np.any(prior.basis != 0)
    # A person whose scores never move keeps B = B₀ exactly after the (N, B) solve: with w = 0 the
    # ridge normal equations for B reduce to c_exp·(B − B₀) = 0.
    frames = _recording(3, 0).frames
    zeroed = [replace(f, blendshapes=np.zeros(52, np.float32)) for f in frames]
    model = fit_person(zeroed, FitConfig(rounds=1), prior=prior).model
    np.testing.assert_allclose(model.basis, prior.basis, atol=1e-9)


def test_no_usable_person_is_a_clear_error() -> None:
    short = _Recording(_recording(1, 0).frames[:5])
    with pytest.raises(FitError, match="no person could be fitted"):
        build_prior([short])
