"""Reference frames at enrolment: the sample clip's woman covers every kind; what is missing is named.

Real recordings are the sample clip's tracks: the woman (person 0), all her frames (what the demo
enrols) and her first shot alone (what the benchmark trains on). Recordings that lack a kind are
per-frame arrays made here: a head turning one way, a mouth that never opens, a still head.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from edge import Tracks
from edge.tracking import TrackedFrame
from face3d import BLENDSHAPE_INDEX
from face3d.pose import yaw_pitch_roll_deg
from training.references import (
    DEFAULT_K,
    EXTRA,
    KINDS,
    ReferenceChoice,
    ReferenceCoverage,
    ReferenceError,
    choose_references,
)

COVERAGE = ReferenceCoverage()
NOSE_TIP, RIGHT_CHEEK, LEFT_CHEEK = 1, 234, 454  # MediaPipe mesh vertices (the cheeks of the image's left, right)


def eyes_closed_score(blendshapes: npt.NDArray[np.floating]) -> float:
    """Return how closed the eyes are in one frame: the larger of eyeBlinkLeft and eyeBlinkRight (0 open, 1 shut)."""
    return float(max(blendshapes[BLENDSHAPE_INDEX["eyeBlinkLeft"]], blendshapes[BLENDSHAPE_INDEX["eyeBlinkRight"]]))


def choose_from_tracks(
    frames: Sequence[TrackedFrame],
    usable: set[int] | None = None,
    k: int = DEFAULT_K,
    config: ReferenceCoverage | None = None,
) -> ReferenceChoice:
    """Return K reference frames of tracked `frames` (indices into `frames`), by `choose_references` on the
    tracker's own pose and blendshapes (enrolment measures the same from the fitted meshes).

    usable: the TrackedFrame.index values whose fit succeeded (e.g. the keys of
    `training.geometry.fitted_frames`); None: every frame with a face. Frames without a face,
    blendshapes or pose are never chosen.
    """
    count = len(frames)
    yaw, pitch = np.zeros(count), np.zeros(count)
    jaw, closed = np.zeros(count), np.ones(count)
    ok = np.zeros(count, dtype=bool)
    for i, frame in enumerate(frames):
        if frame.blendshapes is None or frame.matrix is None or (usable is not None and frame.index not in usable):
            continue
        yaw[i], pitch[i], _ = yaw_pitch_roll_deg(frame.matrix)
        jaw[i] = float(frame.blendshapes[BLENDSHAPE_INDEX["jawOpen"]])
        closed[i] = eyes_closed_score(frame.blendshapes)
        ok[i] = frame.face_found
    return choose_references(yaw, pitch, jaw, closed, ok, k, config)


def pose(frame: TrackedFrame) -> tuple[float, float, float]:
    """Return (yaw, pitch, roll) in degrees of a frame with a face."""
    assert frame.matrix is not None
    return yaw_pitch_roll_deg(frame.matrix)


def measures(frames: list[TrackedFrame]) -> dict[str, npt.NDArray[np.float64]]:
    """Return the per-frame yaw, pitch, jawOpen and eyes-closed of tracked frames with a face."""
    scores = [f.blendshapes for f in frames if f.blendshapes is not None]
    assert len(scores) == len(frames)
    poses = np.array([pose(f) for f in frames])
    return {
        "yaw": poses[:, 0],
        "pitch": poses[:, 1],
        "jaw": np.array([s[BLENDSHAPE_INDEX["jawOpen"]] for s in scores], np.float64),
        "closed": np.array([eyes_closed_score(s) for s in scores]),
    }


@pytest.fixture(scope="module")
def woman(sample_tracks: Tracks) -> list[TrackedFrame]:
    return sample_tracks.frames_of(0)


@pytest.fixture(scope="module")
def first_shot(woman: list[TrackedFrame]) -> list[TrackedFrame]:
    return [f for f in woman if f.shot == woman[0].shot]


def check_kinds(choice: ReferenceChoice, frames: list[TrackedFrame], usable: set[int] | None = None) -> dict[str, int]:
    """Assert what every kind promises on real frames (among the usable frame numbers); return kind → index."""
    assert choice.kinds == KINDS
    assert len(set(choice.indices)) == len(choice.indices) == 4
    picked = dict(zip(choice.kinds, choice.indices, strict=True))
    kept = [f for f in frames if usable is None or f.index in usable]
    position = {f.index: i for i, f in enumerate(kept)}
    picked = {kind: position[frames[i].index] for kind, i in picked.items()}
    m = measures(kept)
    eyes_open = m["closed"] < COVERAGE.max_eyes_closed
    neutral = eyes_open & (m["jaw"] < COVERAGE.max_neutral_jaw_open)
    frontality = np.abs(m["yaw"]) + np.abs(m["pitch"])
    assert frontality[picked["frontal"]] == frontality[neutral].min()
    # The mouth-open frame opens the jaw at least as far as any frame of the recording, frontal candidates included.
    assert m["jaw"][picked["mouth open"]] == m["jaw"].max() >= COVERAGE.min_jaw_open
    assert m["jaw"][picked["mouth open"]] >= m["jaw"][neutral].max()
    # Yaw > 0 is the subject's left: the left turn lies beyond the frontal toward positive yaw, the right negative.
    frontal_yaw = m["yaw"][picked["frontal"]]
    assert m["yaw"][picked["left turn"]] >= frontal_yaw + COVERAGE.min_turn_deg
    assert m["yaw"][picked["right turn"]] <= frontal_yaw - COVERAGE.min_turn_deg
    assert eyes_open[picked["left turn"]] and eyes_open[picked["right turn"]]
    return picked


def test_all_the_womans_frames_cover_every_kind(woman: list[TrackedFrame]) -> None:
    choice = choose_from_tracks(woman)
    picked = check_kinds(choice, woman)
    assert choice.notes == ()
    # She turns both ways of the camera: the sign convention checked on the image itself. Turned to her left, she
    # shows the viewer her right cheek, and her nose tip moves to the image's right of the cheeks' midpoint.
    for kind, sign in (("left turn", 1), ("right turn", -1)):
        frame = woman[picked[kind]]
        assert np.sign(pose(frame)[0]) == sign
        points = frame.landmarks_px()
        assert np.sign(points[NOSE_TIP, 0] - (points[RIGHT_CHEEK, 0] + points[LEFT_CHEEK, 0]) / 2) == sign


def test_her_first_shot_alone_passes_with_notes_on_what_is_weak(first_shot: list[TrackedFrame]) -> None:
    choice = choose_from_tracks(first_shot)
    check_kinds(choice, first_shot)
    # Every frame of that shot is turned to her left: her right turn is shallow and her frontal not frontal.
    assert any(note.startswith("right turn") for note in choice.notes)
    assert any(note.startswith("frontal") for note in choice.notes)


def test_her_closed_mouth_frames_alone_lack_a_mouth_open_frame(woman: list[TrackedFrame]) -> None:
    closed = [f for f in woman if measures([f])["jaw"][0] < COVERAGE.max_neutral_jaw_open]
    with pytest.raises(ReferenceError, match=r"\(mouth open\): no frame with the mouth open: say a few words"):
        choose_from_tracks(closed)
    assert choose_from_tracks(closed, k=1).kinds == ("frontal",)


def test_unusable_frames_are_never_chosen(woman: list[TrackedFrame]) -> None:
    best = choose_from_tracks(woman)
    refused = {woman[i].index for i in best.indices}
    usable = {f.index for f in woman} - refused
    choice = choose_from_tracks(woman, usable=usable)
    assert not {woman[i].index for i in choice.indices} & refused
    check_kinds(choice, woman, usable)
    every_other = {f.index for f in woman[::2]}
    for k in (4, 6):
        assert {woman[i].index for i in choose_from_tracks(woman, usable=every_other, k=k).indices} <= (every_other)


# --- recordings made here -----------------------------------------------------------------------------------------

T = 60
SWEEP = np.abs(20 * np.sin(np.linspace(0, 4 * np.pi, T)))
"""A head turning 0–20° one way only (its most frontal frame is then the least turned: nothing lies beyond it)."""
LEVEL = np.zeros(T)


def recording(
    yaw: npt.NDArray[np.float64] | None = None,
    jaw: npt.NDArray[np.float64] | None = None,
    pitch: npt.NDArray[np.float64] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Return per-frame arrays of a head sweeping ±20° yaw twice, speaking in between, eyes open, pitch small."""
    t = np.linspace(0, 1, T)
    return {
        "yaw_deg": 20 * np.sin(4 * np.pi * t) if yaw is None else yaw,
        "pitch_deg": 3 * np.cos(2 * np.pi * t) if pitch is None else pitch,
        "jaw_open": 0.3 * np.clip(np.sin(10 * np.pi * t), 0, None) if jaw is None else jaw,
        "eyes_closed": np.full(T, 0.01),
    }


STRICT = ReferenceCoverage(required=KINDS)
"""Every kind required: a missing turn refuses the recording instead of being stood in for."""


def choose(
    arrays: dict[str, npt.NDArray[np.float64]],
    usable: npt.NDArray[np.bool_] | None = None,
    k: int = 4,
    config: ReferenceCoverage = STRICT,
) -> ReferenceChoice:
    return choose_references(
        arrays["yaw_deg"],
        arrays["pitch_deg"],
        arrays["jaw_open"],
        arrays["eyes_closed"],
        np.ones(T, bool) if usable is None else usable,
        k,
        config,
    )


def test_a_full_recording_covers_every_kind() -> None:
    arrays = recording()
    choice = choose(arrays)
    assert choice.kinds == KINDS and len(set(choice.indices)) == 4
    _, mouth, left, right = choice.indices
    assert arrays["jaw_open"][mouth] == arrays["jaw_open"].max()
    assert arrays["yaw_deg"][left] > 19 and arrays["yaw_deg"][right] < -19
    assert choice.notes == ()


@pytest.mark.parametrize(
    ("arrays", "missing"),
    [
        (recording(jaw=np.full(T, 0.01)), "no frame with the mouth open: say a few words while recording"),
        (recording(yaw=-SWEEP, pitch=LEVEL), "no frame turned to your left: turn your head slowly"),
        (recording(yaw=SWEEP, pitch=LEVEL), "no frame turned to your right: turn your head slowly"),
    ],
    ids=["mouth", "left", "right"],
)
def test_each_missing_kind_is_named_with_what_to_do(arrays: dict[str, npt.NDArray[np.float64]], missing: str) -> None:
    with pytest.raises(ReferenceError, match=missing) as caught:
        choose(arrays)
    assert str(caught.value).count("no frame") == 1


def test_by_default_a_missing_turn_is_stood_in_for_and_noted_but_a_closed_mouth_refuses() -> None:
    arrays = recording(yaw=SWEEP, pitch=LEVEL)  # never turns to the subject's right
    choice = choose(arrays, config=ReferenceCoverage())
    assert choice.kinds == ("frontal", "mouth open", "left turn", EXTRA)
    assert len(set(choice.indices)) == 4
    assert [note.split(":")[0] for note in choice.notes] == ["right turn"]
    assert "no frame turned to your right" in choice.notes[0]
    with pytest.raises(ReferenceError, match="say a few words"):
        choose(recording(jaw=np.full(T, 0.01)), config=ReferenceCoverage())


def test_a_still_head_that_never_speaks_gets_one_error_naming_all_three() -> None:
    rng = np.random.default_rng(0)
    # The tracker's jitter on the sample's stillest stretch (std 0.06°), no turn; the mouth stays closed.
    still = recording(yaw=rng.normal(0, 0.06, T), jaw=np.full(T, 0.01), pitch=LEVEL)
    with pytest.raises(ReferenceError) as caught:
        choose(still)
    message = str(caught.value)
    assert "(mouth open, left turn, right turn)" in message
    for advice in ("mouth open: say", "turned to your left", "turned to your right"):
        assert advice in message


def test_a_turn_with_closed_eyes_or_without_a_fit_is_passed_over() -> None:
    arrays = recording()
    deepest = int(np.argmax(arrays["yaw_deg"]))
    arrays["eyes_closed"][deepest] = 0.9
    assert deepest not in choose(arrays).indices
    arrays["eyes_closed"][deepest] = 0.01
    usable = np.ones(T, bool)
    usable[deepest] = False
    assert deepest not in choose(arrays, usable).indices
    with pytest.raises(ReferenceError, match="every fit failed"):
        choose(arrays, np.zeros(T, bool))


def test_shallow_turns_and_a_missing_neutral_frame_are_noted() -> None:
    shallow = recording(yaw=5 * np.sin(np.linspace(0, 4 * np.pi, T)))
    notes = choose(shallow).notes
    assert [n.split(":")[0] for n in notes] == ["left turn", "right turn"]
    speaking = recording(jaw=np.full(T, 0.2))  # the mouth is never closed
    choice = choose(speaking)
    assert choice.notes[0].startswith("frontal: no frame with the mouth closed")


def test_fewer_kinds_for_k_below_four_and_the_most_different_frames_above() -> None:
    arrays = recording(yaw=-SWEEP, pitch=LEVEL)  # no left turn: only asked for from K = 3 on
    two = choose(arrays, k=2)
    assert two.kinds == KINDS[:2]
    arrays = recording()
    six = choose(arrays, k=6)
    assert six.kinds == (*KINDS, EXTRA, EXTRA)
    assert len(set(six.indices)) == 6
    assert six.indices[:4] == choose(arrays).indices
    # Each extra is the frame farthest from those chosen before it (yaw, pitch and jaw_open in degrees).
    points = np.stack([arrays["yaw_deg"], arrays["pitch_deg"], arrays["jaw_open"] * COVERAGE.jaw_open_deg], axis=1)
    for position in (4, 5):
        before = list(six.indices[:position])
        nearest = np.min(np.linalg.norm(points[:, None] - points[None, before], axis=2), axis=1)
        nearest[before] = -1
        assert nearest[six.indices[position]] == nearest.max()
    with pytest.raises(ReferenceError, match="usable frame"):
        choose(arrays, k=T + 1)
    with pytest.raises(ReferenceError, match="at least 1"):
        choose(arrays, k=0)


def test_per_frame_arrays_must_have_one_value_per_frame() -> None:
    arrays = recording()
    arrays["jaw_open"] = arrays["jaw_open"][:-1]
    with pytest.raises(ReferenceError, match="jaw_open must be one value per frame"):
        choose(arrays)
