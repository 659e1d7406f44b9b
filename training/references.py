"""Choosing the target's reference frames at enrolment: a few recorded frames that cover the face.

Rendering warps the target's own frames ("references") along the 3D mesh correspondence to the
driven pose and a generator refines them, so the references must show what the driven face will
need: the face from the front with a neutral expression, the inside of the mouth, and both sides
of the head. `choose_references` keeps K (default 4) frames, one of each kind in this order:

- frontal: the smallest |yaw| + |pitch| among frames with the mouth closed (jaw_open below
  `max_neutral_jaw_open`) and the eyes open (eyes_closed below `max_eyes_closed`); failing those,
  the most frontal frame with the eyes open, then any (with a note);
- mouth open: the largest jaw_open, which must reach `min_jaw_open`;
- left turn / right turn: the eyes-open frames turned furthest to the subject's left / right of the
  frontal frame, at least `min_turn_deg` beyond the frontal's yaw.

Yaw is `face3d.pose.yaw_pitch_roll_deg`'s: positive when the face turns toward the image's right.
A subject facing the camera who turns toward the image's right turns to *their own left* (their
left is the viewer's right; the frames are not mirrored), so the left turn is the largest yaw and
the right turn the smallest. On the sample clip the nose tip lies right of the cheeks' midpoint in
the image exactly when yaw > 0.

K < 4 keeps the first K kinds; K > 4 adds "extra" frames, each the one farthest (in yaw, pitch and
jaw_open × `jaw_open_deg`) from those already chosen. Frames not `usable` (their fit failed) are
never chosen. When a required kind is missing, one ReferenceError names every missing kind and
what to do at the next recording.

The defaults were measured on the sample clip's woman (person 0; 97 frames in her first shot, 143
in all):

| measure | first shot | all her frames |
|---|---|---|
| yaw (°) | 15.6 … 29.6 | −4.7 … 29.6 |
| pitch (°) | −29.1 … −4.3 | −29.1 … −4.3 |
| jawOpen | 0.000 … 0.232 (median 0.001) | 0.000 … 0.232 |
| max(eyeBlinkLeft, eyeBlinkRight) | 0.001 … 0.712 (median 0.005) | 0.001 … 0.712 |

Her first shot never turns to her right: every frame is turned 15.6–29.6° to her left, and the
most frontal closed-mouth frame is already at 16.8°, so its right turn lies only 1.0° beyond the
frontal. `min_turn_deg` is therefore low (it refuses a head that never moved that way, beyond the
tracker's jitter) and `weak_turn_deg` adds a note when a turn is shallow; with all her frames both
turns are 12–22° deep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import Field

import configs
from base.errors import HeadcastError
from face3d.warp import mesh_coverage

KINDS: tuple[str, ...] = ("frontal", "mouth open", "left turn", "right turn")
"""The reference kinds, in the order they are chosen and returned."""
EXTRA = "extra"
"""The kind of references beyond the first four: the frames most different from those chosen."""
DEFAULT_K = 4

# What to do when a kind is missing, shown to the person who recorded.
_ADVICE = {
    "frontal": "no usable frame at all (every fit failed): record again with your face lit and in view",
    "mouth open": "no frame with the mouth open: say a few words while recording",
    "left turn": "no frame turned to your left: turn your head slowly left and right while recording",
    "right turn": "no frame turned to your right: turn your head slowly left and right while recording",
}


class ReferenceError(HeadcastError):  # the enrolment's name for it; it shadows the builtin (weakref) here only
    """The recording lacks a kind of reference frame; the message names every missing kind and what to do."""


class ReferenceCoverage(configs.StrictConfig):
    """What the reference frames must cover (numbers measured on the sample clip: see the module docstring)."""

    max_neutral_jaw_open: float = Field(
        0.05, ge=0, le=1, description="a frontal frame's jawOpen stays below this (mouth closed). The sample's "
        "closed-mouth frames score ≤ 0.015, its speaking frames 0.04–0.23",
    )  # fmt: skip
    max_eyes_closed: float = Field(
        0.2, ge=0, le=1, description="max(eyeBlinkLeft, eyeBlinkRight) below this counts as eyes open. The "
        "sample's open eyes score ≤ 0.07; blinks pass 0.1–0.3 on the way to peaks of 0.4–0.7",
    )  # fmt: skip
    min_jaw_open: float = Field(
        0.1, ge=0, le=1, description="the mouth-open frame's jawOpen reaches at least this: 7× the closed mouths' "
        "0.015 and half the woman's widest (0.232); a recording whose mouth never opens scores under 0.02",
    )  # fmt: skip
    min_turn_deg: float = Field(
        0.5, ge=0, le=90, description="a turn lies at least this far (yaw, degrees) beyond the frontal's: above the "
        "tracker's jitter on a still head (the sample's stillest stretch, frames 192–199: standard deviation 0.06°, "
        "0.19° peak to peak), so only a head that never turned that way is refused. Her first shot's right turn "
        "is 1.0° deep",
    )  # fmt: skip
    weak_turn_deg: float = Field(
        10.0, ge=0, le=90, description="a turn shallower than this (yaw, degrees beyond the frontal's) is kept "
        "with a note: it shows little of that side that the frontal does not",
    )  # fmt: skip
    frontal_note_deg: float = Field(
        20.0, ge=0, le=180, description="a note when the frontal frame's |yaw| + |pitch| exceeds this (the woman's "
        "first shot: 27.8°, all her frames: 14.1°)",
    )  # fmt: skip
    required: tuple[str, ...] = Field(
        ("frontal", "mouth open"), description="kinds whose absence refuses the recording; a missing turn is "
        "replaced by the frame most different from those chosen, and a note says what to record next time "
        "(the sample clip's woman never turns to her right in her first shot)",
    )  # fmt: skip
    jaw_open_deg: float = Field(
        100.0, gt=0, description="for extra references, a jawOpen difference of 1 weighs like this many degrees "
        "of head rotation (0.1, a slightly open mouth, like 10°)",
    )  # fmt: skip


@dataclass(frozen=True)
class ReferenceChoice:
    """The chosen reference frames: indices into the frames given (distinct), their kinds, notes on weak choices."""

    indices: tuple[int, ...]
    kinds: tuple[str, ...]
    notes: tuple[str, ...] = ()


def _column(values: npt.ArrayLike, name: str, length: int | None) -> npt.NDArray[np.float64]:
    """Return a per-frame array (T,) as float64, checked to have `length` entries when given."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (length is not None and len(array) != length):
        expected = "(T,)" if length is None else f"({length},)"
        raise ReferenceError(f"{name} must be one value per frame {expected}, got shape {array.shape}")
    return array


def _argbest(score: npt.NDArray[np.float64], allowed: npt.NDArray[np.bool_]) -> int | None:
    """Return the index of the largest score among allowed frames (the first one on ties), None when none is allowed."""
    if not allowed.any():
        return None
    return int(np.argmax(np.where(allowed, score, -np.inf)))


def choose_references(
    yaw_deg: npt.ArrayLike,
    pitch_deg: npt.ArrayLike,
    jaw_open: npt.ArrayLike,
    eyes_closed: npt.ArrayLike,
    usable: npt.ArrayLike,
    k: int = DEFAULT_K,
    config: ReferenceCoverage | None = None,
) -> ReferenceChoice:
    """Return K reference frames (indices into the per-frame arrays, all (T,)) covering the kinds in KINDS order.

    yaw_deg / pitch_deg: head pose (yaw > 0: turned to the subject's left); jaw_open, eyes_closed:
    blendshape scores in [0, 1]; usable: frames whose fit succeeded (others are never chosen).
    Raises ReferenceError naming every missing kind among the first min(K, 4), or when fewer than K
    frames are usable.
    """
    config = config or ReferenceCoverage()
    if k < 1:
        raise ReferenceError(f"k must be at least 1 reference frame, got {k}")
    yaw = _column(yaw_deg, "yaw_deg", None)
    count = len(yaw)
    pitch = _column(pitch_deg, "pitch_deg", count)
    jaw = _column(jaw_open, "jaw_open", count)
    closed = _column(eyes_closed, "eyes_closed", count)
    fitted = np.asarray(usable, dtype=bool)
    if fitted.shape != (count,):
        raise ReferenceError(f"usable must be one flag per frame ({count},), got shape {fitted.shape}")
    # A frame with a non-finite measure cannot be compared with the others: treat it as unusable.
    candidate = fitted & np.isfinite(yaw) & np.isfinite(pitch) & np.isfinite(jaw) & np.isfinite(closed)
    if int(candidate.sum()) < k:
        if not candidate.any():
            raise ReferenceError(_ADVICE["frontal"])
        raise ReferenceError(
            f"{int(candidate.sum())} usable frame(s) for {k} references: choose fewer references or record longer"
        )
    wanted = KINDS[: min(k, len(KINDS))]
    eyes_open = candidate & (closed < config.max_eyes_closed)
    chosen: list[int] = []
    notes: list[str] = []
    missing: list[str] = []
    stand_ins: list[str] = []

    def free(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        taken = np.zeros(count, dtype=bool)
        taken[chosen] = True
        return mask & ~taken

    # Frontal: there always is one (some frame is usable); weaker fallbacks are noted.
    frontality = -(np.abs(yaw) + np.abs(pitch))
    frontal = _argbest(frontality, eyes_open & (jaw < config.max_neutral_jaw_open))
    if frontal is None:
        fallback = "the most frontal frame with the eyes open" if eyes_open.any() else "the most frontal frame"
        frontal = _argbest(frontality, eyes_open if eyes_open.any() else candidate)
        assert frontal is not None  # candidate.any() was checked above
        notes.append(
            f"frontal: no frame with the mouth closed and the eyes open; {fallback} stands in "
            f"(jawOpen {jaw[frontal]:.2f}, eyes closed {closed[frontal]:.2f}): look at the camera with a relaxed "
            "face for a moment while recording"
        )
    chosen.append(frontal)
    if -frontality[frontal] > config.frontal_note_deg:
        notes.append(
            f"frontal: the most frontal frame is still turned {yaw[frontal]:.1f}° in yaw and "
            f"{pitch[frontal]:.1f}° in pitch: face the camera for a moment while recording"
        )

    if "mouth open" in wanted:
        mouth = _argbest(jaw, free(candidate & (jaw >= config.min_jaw_open)))
        if mouth is None and "mouth open" not in config.required:
            stand_ins.append("mouth open")
            notes.append(f"mouth open: {_ADVICE['mouth open']}; the frame most different from the others stands in")
        elif mouth is None:
            missing.append("mouth open")
        else:
            chosen.append(mouth)

    for kind, side, name in (("left turn", 1.0, "left"), ("right turn", -1.0, "right")):
        if kind not in wanted:
            continue
        depth = side * (yaw - yaw[frontal])  # degrees beyond the frontal's yaw toward that side
        turn = _argbest(depth, free(eyes_open & (depth >= config.min_turn_deg)))
        if turn is None:
            if kind in config.required:
                missing.append(kind)
            else:
                stand_ins.append(kind)
                notes.append(f"{kind}: {_ADVICE[kind]}; the frame most different from the others stands in")
            continue
        chosen.append(turn)
        if depth[turn] < config.weak_turn_deg:
            notes.append(
                f"{kind}: the deepest turn to your {name} with open eyes is only {depth[turn]:.1f}° "
                f"beyond the frontal: turn your head further to your {name} for a better {kind} reference"
            )

    if missing:
        raise ReferenceError(
            f"the recording lacks reference frames ({', '.join(missing)}): " + "; ".join(_ADVICE[m] for m in missing)
        )

    # Extras: farthest-point sampling in (yaw, pitch, jaw_open · jaw_open_deg), eyes-open frames first.
    points = np.stack([yaw, pitch, jaw * config.jaw_open_deg], axis=1)
    while len(chosen) < k:
        pool = free(eyes_open) if free(eyes_open).any() else free(candidate)
        nearest = np.min(np.linalg.norm(points[:, None, :] - points[None, chosen, :], axis=2), axis=1)
        extra = _argbest(nearest, pool)
        assert extra is not None  # at least k frames are candidates
        chosen.append(extra)
    kinds = (*(kind for kind in wanted if kind not in stand_ins), *([EXTRA] * (k - len(wanted) + len(stand_ins))))
    return ReferenceChoice(tuple(chosen), kinds, tuple(notes))


# Reference coverage from the fitted meshes (face3d.warp.mesh_coverage) rather than the tracker's
# blendshape scores, which the clips do not keep. Openings are taken relative to the recording's
# own: people differ (the synthetic people's mouths never close to the sample clip's, their eyes are
# narrower), so the mouth's opening counts from the recording's most closed mouth, and the eyes'
# closure is 1 − lid gap ÷ the recording's median lid gap. On the sample clip's tracked meshes the
# closed mouths lie within 0.02 of the face's height of the most closed one and speaking reaches
# 0.04–0.11; open eyes score ≤ 0.34 and blinks (eyeBlink scores ≥ 0.4) ≥ 0.55: the cut lies between.
MESH_COVERAGE = ReferenceCoverage(max_neutral_jaw_open=0.02, min_jaw_open=0.05, max_eyes_closed=0.45)


def choose_references_from_meshes(
    vertices_px: npt.ArrayLike, k: int = DEFAULT_K, config: ReferenceCoverage = MESH_COVERAGE
) -> ReferenceChoice:
    """Return K reference frames of T fitted meshes (T, 468, 3) in pixels (indices into them), by
    `choose_references` on their pose and openings (`face3d.warp.mesh_coverage`, relative to the
    recording's own: see MESH_COVERAGE)."""
    coverage = mesh_coverage(vertices_px)
    usable = np.isfinite(coverage.yaw_deg)
    if not usable.any():
        raise ReferenceError(_ADVICE["frontal"])
    mouth = coverage.mouth_open - np.nanmin(coverage.mouth_open)
    closed = np.clip(1.0 - coverage.eyes_open / np.nanmedian(coverage.eyes_open), 0.0, 1.0)
    return choose_references(coverage.yaw_deg, coverage.pitch_deg, mouth, closed, usable, k, config)
