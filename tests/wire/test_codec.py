"""The coefficient wire codec: round trips within the quantisation step, golden bytes, total decoding,
lost-packet healing, and the sizes on the sample clip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.coefficients import Coefficients
from wire import WireError

FIXTURES = Path(__file__).parent / "fixtures"

# Float32 storage adds at most half an ulp of the largest magnitude involved (1 for blendshapes,
# 4 image widths for translation, π for rotation) to each quantisation bound.
F32 = float(np.finfo(np.float32).eps)
BLENDSHAPE_HALF_STEP = 0.5 * wire.BLENDSHAPE_STEP + F32
TRANSLATION_HALF_STEP = 0.5 * wire.TRANSLATION_STEP_WIDTHS + 4 * F32
# Scale is coded as log2: half a step there is a relative error of 2^(step/2) − 1.
SCALE_HALF_STEP_RELATIVE = 2 ** (0.5 * wire.LOG2_SCALE_STEP) - 1 + F32
# Each rotation-vector component is off by at most half a step, so the vector by √3/2 steps; the angle
# between the two rotations is at most that distance, and ‖R₁ − R₂‖_F = 2√2·sin(angle/2) ≤ √2·angle.
ROTATION_HALF_STEP_FROBENIUS = math.sqrt(2) * (math.sqrt(3) / 2 * wire.ROTATION_STEP_RAD + 4 * F32)


def rotation_matrix(rotation: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return the 3×3 matrix of a rotation vector (Rodrigues)."""
    r = np.asarray(rotation, dtype=np.float64)
    angle = float(np.linalg.norm(r))
    if angle < 1e-12:
        return np.eye(3)
    k = r / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def assert_close(decoded: Coefficients, original: Coefficients, steps: float) -> None:
    """Assert that every field of `decoded` is within `steps` half-steps of `original` (1: plain, 2: compact)."""
    assert decoded.seq == original.seq
    assert decoded.timestamp_ms == original.timestamp_ms
    assert np.abs(decoded.blendshapes - original.blendshapes).max() <= steps * BLENDSHAPE_HALF_STEP
    assert np.abs(decoded.translation - original.translation).max() <= steps * TRANSLATION_HALF_STEP
    assert abs(decoded.scale / original.scale - 1) <= steps * SCALE_HALF_STEP_RELATIVE
    rotation_error = np.linalg.norm(rotation_matrix(decoded.rotation) - rotation_matrix(original.rotation))
    assert rotation_error <= steps * ROTATION_HALF_STEP_FROBENIUS


def assert_valid(c: Coefficients) -> None:
    """Assert the invariants any decoder output must hold (the dataclass checks most on construction)."""
    for array in (c.blendshapes, c.rotation, c.translation):
        assert array.dtype == np.float32
        assert np.all(np.isfinite(array))
    assert np.all((c.blendshapes >= 0) & (c.blendshapes <= 1))
    assert np.linalg.norm(c.rotation) <= math.pi + 1e-5
    assert math.isfinite(c.scale) and c.scale > 0


# ------------------------------------------------------------------------------------------- strategies

unit = st.floats(0.0, 1.0, width=32)
uint32 = st.integers(0, 2**32 - 1)


@st.composite
def coefficients(draw: st.DrawFn, seq: int | None = None) -> Coefficients:
    """Return arbitrary Coefficients inside the wire's ranges."""
    axis = np.array(draw(st.lists(st.floats(-1, 1), min_size=3, max_size=3)))
    norm = float(np.linalg.norm(axis))
    angle = draw(st.floats(0.0, math.pi))
    rotation = axis / norm * angle if norm > 1e-3 else np.zeros(3)
    return Coefficients(
        seq=draw(uint32) if seq is None else seq,
        timestamp_ms=draw(uint32),
        blendshapes=np.array(draw(st.lists(unit, min_size=NUM_BLENDSHAPES, max_size=NUM_BLENDSHAPES)), np.float32),
        # A vector of norm π can grow past π in float32; the dataclass accepts 1e-5 of slack.
        rotation=np.clip(rotation, -math.pi, math.pi).astype(np.float32),
        translation=np.array(draw(st.lists(st.floats(-4, 4), min_size=2, max_size=2)), np.float32),
        scale=draw(st.floats(2.0**wire.LOG2_SCALE_MIN, 2.0**wire.LOG2_SCALE_MAX)),
    )


def random_walk(frames: int, seed: int, start_seq: int = 0) -> list[Coefficients]:
    """Return a plausible stream: expression and pose drifting by small random steps, 30 fps."""
    rng = np.random.default_rng(seed)
    blendshapes = rng.uniform(0, 0.5, NUM_BLENDSHAPES)
    rotation, translation, log_scale = rng.normal(0, 0.2, 3), rng.normal(0, 0.1, 2), math.log(0.05)
    out = []
    for i in range(frames):
        blendshapes = np.clip(blendshapes + rng.normal(0, 0.02, NUM_BLENDSHAPES), 0, 1)
        rotation = rotation + rng.normal(0, 0.005, 3)
        translation = translation + rng.normal(0, 0.002, 2)
        log_scale += rng.normal(0, 0.003)
        out.append(
            Coefficients(
                seq=(start_seq + i) % 2**32,
                timestamp_ms=(1000 + 33 * i) % 2**32,
                blendshapes=blendshapes.astype(np.float32),
                rotation=rotation.astype(np.float32),
                translation=translation.astype(np.float32),
                scale=math.exp(log_scale),
            )
        )
    return out


# ------------------------------------------------------------------------------------------- plain form


@settings(max_examples=200, deadline=None)
@given(coefficients())
def test_plain_round_trip_is_within_half_a_step(c: Coefficients) -> None:
    packet = wire.encode_plain(c)
    assert len(packet) == wire.PLAIN_SIZE <= 80
    assert packet[0] == wire.WIRE_VERSION and packet[1] == wire.KIND_PLAIN
    decoded = wire.decode_plain(packet)
    assert_close(decoded, c, steps=1)
    if np.linalg.norm(c.rotation) < math.pi - 1e-3:  # nearer π, rounding may flip to the equivalent vector
        assert wire.encode_plain(decoded) == packet, "a decoded frame must re-encode to the same bytes"


def test_plain_values_outside_the_ranges_saturate() -> None:
    c = Coefficients(
        seq=1,
        timestamp_ms=2,
        blendshapes=np.ones(NUM_BLENDSHAPES, np.float32),
        rotation=np.zeros(3, np.float32),
        translation=np.array([-9.0, 9.0], np.float32),
        scale=5.0,
    )
    decoded = wire.decode_plain(wire.encode_plain(c))
    np.testing.assert_allclose(decoded.translation, [-4.0, 4.0], atol=TRANSLATION_HALF_STEP)
    assert decoded.scale == pytest.approx(2.0**wire.LOG2_SCALE_MAX)
    tiny = wire.decode_plain(wire.encode_plain(Coefficients(1, 2, c.blendshapes, c.rotation, c.rotation[:2], 1e-9)))
    assert tiny.scale == pytest.approx(2.0**wire.LOG2_SCALE_MIN)


def test_rotation_fields_longer_than_pi_decode_to_the_same_rotation() -> None:
    packet = bytearray(wire.encode_plain(random_walk(1, seed=0)[0]))
    packet[62:68] = bytes.fromhex("7fff7fff7fff")  # every component at +π: a vector of length π√3
    decoded = wire.decode_plain(bytes(packet))
    assert np.linalg.norm(decoded.rotation) <= math.pi
    np.testing.assert_allclose(rotation_matrix(decoded.rotation), rotation_matrix([math.pi] * 3), atol=1e-5)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "at least 2 bytes"),
        (b"\x02\x00" + bytes(72), "wire version 2"),
        (b"\x00\x00" + bytes(72), "wire version 0"),
        (b"\x01\x02" + bytes(72), "unknown coefficient packet kind"),
        (b"\x01\x03" + bytes(72), "unknown coefficient packet kind"),
        (b"\x01\x04" + bytes(72), "reserved flag bits"),
        (b"\x01\x00" + bytes(71), "74 bytes"),
        (b"\x01\x00" + bytes(73), "74 bytes"),
        (b"\x01\x00" + bytes(60) + b"\x80\x00" + bytes(10), "outside the encoded range"),
    ],
)
def test_malformed_packets_are_wire_errors_that_say_why(packet: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.CompactDecoder().decode(packet)
    with pytest.raises(WireError):
        wire.decode_plain(packet)


def test_plain_decoder_refuses_delta_packets() -> None:
    packets = wire.encode_stream(random_walk(2, seed=1))
    assert packets[1][1] & 0b11 == wire.KIND_DELTA
    with pytest.raises(WireError, match="CompactDecoder"):
        wire.decode_plain(packets[1])
    with pytest.raises(WireError, match="CompactDecoder"):
        wire.decode(packets[1])
    assert wire.decode(packets[0]).seq == 0


# -------------------------------------------------------------------------------------------- fixtures


def fixture_cases() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def coefficients_from_json(record: dict[str, Any]) -> Coefficients:
    return Coefficients(
        seq=record["seq"],
        timestamp_ms=record["timestamp_ms"],
        blendshapes=np.array(record["blendshapes"], np.float32),
        rotation=np.array(record["rotation"], np.float32),
        translation=np.array(record["translation"], np.float32),
        scale=record["scale"],
    )


def test_every_golden_fixture_is_found() -> None:
    assert fixture_cases() == ["compact-stream", "plain-extremes", "plain-neutral"]


@pytest.mark.parametrize("case", fixture_cases())
def test_golden_fixtures_encode_byte_for_byte_and_decode_back(case: str) -> None:
    record = json.loads((FIXTURES / f"{case}.json").read_text(encoding="utf-8"))
    frames = [coefficients_from_json(r) for r in record["frames"]]
    golden = [(FIXTURES / name).read_bytes() for name in record["packets"]]
    assert wire.encode_stream(frames, record["key_interval"]) == golden
    decoder = wire.CompactDecoder()
    for packet, frame in zip(golden, frames, strict=True):
        assert_close(decoder.decode(packet), frame, steps=2)


def test_golden_stream_holds_both_kinds_across_the_32_bit_wrap() -> None:
    record = json.loads((FIXTURES / "compact-stream.json").read_text(encoding="utf-8"))
    kinds = [(FIXTURES / name).read_bytes()[1] & 0b11 for name in record["packets"]]
    assert kinds == [0, 1, 1, 1, 0, 1]
    assert [f["seq"] for f in record["frames"]][1:3] == [2**32 - 2, 0]


# ---------------------------------------------------------------------------------------- compact form


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(0, 2**16))
def test_compact_round_trip_is_within_one_step(start_seq: int, key_interval: int, seed: int) -> None:
    frames = random_walk(25, seed, start_seq)
    decoder = wire.CompactDecoder()
    for c, packet in zip(frames, wire.encode_stream(frames, key_interval), strict=True):
        assert_close(decoder.decode(packet), c, steps=2)
        assert decoder.reference_seq == c.seq


@settings(max_examples=60, deadline=None)
@given(st.lists(coefficients(), min_size=2, max_size=4))
def test_compact_round_trip_of_unrelated_frames_is_within_one_step(frames: list[Coefficients]) -> None:
    # Arbitrary jumps (seq, timestamp, every value) are the delta coder's worst case; seq is made
    # consecutive so that deltas are tried at all.
    frames = [Coefficients(i, c.timestamp_ms, c.blendshapes, c.rotation, c.translation, c.scale) for i, c in
              enumerate(frames)]  # fmt: skip
    encoder, decoder = wire.CompactEncoder(key_interval=100), wire.CompactDecoder()
    for c in frames:
        packet = encoder.encode(c)
        assert len(packet) <= wire.PLAIN_SIZE
        assert_close(decoder.decode(packet), c, steps=2)


def test_key_frames_come_every_key_interval_frames_and_on_sequence_jumps() -> None:
    frames = random_walk(40, seed=2)
    kinds = [p[1] & 0b11 for p in wire.encode_stream(frames, key_interval=10)]
    assert [i for i, kind in enumerate(kinds) if kind == wire.KIND_PLAIN] == [0, 10, 20, 30]
    jumped = [*frames[:3], *(Coefficients(c.seq + 64, c.timestamp_ms, c.blendshapes, c.rotation, c.translation,
                                          c.scale) for c in frames[3:5])]  # fmt: skip
    kinds = [p[1] & 0b11 for p in wire.encode_stream(jumped, key_interval=10)]
    assert kinds == [0, 1, 1, 0, 1], "a reference 64 frames back cannot be named, so a key frame goes"


def test_compact_encoder_refuses_a_key_interval_below_one() -> None:
    with pytest.raises(WireError, match="key_interval"):
        wire.CompactEncoder(key_interval=0)


def test_delta_against_a_frame_the_decoder_does_not_hold_is_refused_and_changes_nothing() -> None:
    packets = wire.encode_stream(random_walk(6, seed=3), key_interval=100)
    with pytest.raises(WireError, match="holds no frame"):
        wire.CompactDecoder().decode(packets[1])
    decoder = wire.CompactDecoder()
    decoder.decode(packets[0])
    decoder.decode(packets[1])
    with pytest.raises(WireError, match="references frame 2 but this decoder holds frame 1"):
        decoder.decode(packets[3])
    with pytest.raises(WireError, match="references frame 0"):
        decoder.decode(packets[1])  # a duplicate arriving late
    assert decoder.reference_seq == 1
    assert decoder.decode(packets[2]).seq == 2


@settings(max_examples=25, deadline=None)
@given(st.sets(st.integers(0, 59), max_size=15), st.integers(1, 15), st.integers(0, 2**16))
def test_lost_packets_heal_at_the_next_key_frame_and_nothing_wrong_comes_out(
    lost: set[int], key_interval: int, seed: int
) -> None:
    frames = random_walk(60, seed)
    packets = wire.encode_stream(frames, key_interval)
    lossless = wire.CompactDecoder()
    expected = [lossless.decode(p) for p in packets]
    decoder = wire.CompactDecoder()
    chain_intact = False  # whether every packet since the last received key frame arrived
    for i, packet in enumerate(packets):
        if i in lost:
            chain_intact = False
            continue
        is_key = packet[1] & 0b11 == wire.KIND_PLAIN
        chain_intact = is_key or chain_intact
        if not chain_intact:
            with pytest.raises(WireError, match="waiting for the next key frame"):
                decoder.decode(packet)
            continue
        decoded = decoder.decode(packet)
        # Bit-identical to what a decoder that lost nothing gives: no silent drift after a loss.
        assert decoded.seq == expected[i].seq
        for field in ("blendshapes", "rotation", "translation"):
            np.testing.assert_array_equal(getattr(decoded, field), getattr(expected[i], field))
        assert decoded.scale == expected[i].scale


# ---------------------------------------------------------------------------------------- total decoding


def primed_decoder(packets: list[bytes], upto: int) -> wire.CompactDecoder:
    decoder = wire.CompactDecoder()
    for packet in packets[:upto]:
        decoder.decode(packet)
    return decoder


STREAM = wire.encode_stream(random_walk(12, seed=4), key_interval=8)


def decode_totally(decoder: wire.CompactDecoder, packet: bytes) -> None:
    """Decode `packet`; anything but valid Coefficients or WireError fails the test."""
    try:
        decoded = decoder.decode(packet)
    except WireError:
        return
    assert_valid(decoded)


def decode_plain_totally(packet: bytes) -> None:
    """Decode `packet` as a plain one; anything but valid Coefficients or WireError fails the test."""
    try:
        decoded = wire.decode_plain(packet)
    except WireError:
        return
    assert_valid(decoded)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, len(STREAM)))
def test_any_bytes_decode_to_valid_coefficients_or_a_wire_error(packet: bytes, primed: int) -> None:
    decode_plain_totally(packet)
    decode_totally(primed_decoder(STREAM, primed), packet)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, len(STREAM) - 1),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(-4, 4),
)
def test_mutated_packets_decode_to_valid_coefficients_or_a_wire_error(
    index: int, edits: list[tuple[int, int]], resize: int
) -> None:
    packet = bytearray(STREAM[index])
    for position, value in edits:
        packet[position % len(packet)] = value
    packet = packet[: len(packet) + resize] if resize < 0 else packet + bytes([0xFF] * resize)
    decode_totally(primed_decoder(STREAM, index), bytes(packet))


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x80, 0x55])
def test_delta_payloads_of_constant_bytes_are_total(fill: int) -> None:
    # All-ones payloads drive every Exp-Golomb prefix to its cap; all-zeros every value to "unchanged".
    header = bytes([wire.WIRE_VERSION, wire.KIND_DELTA | 1 << 2]) + (1).to_bytes(4, "big")
    for length in (0, 1, 5, 40, 400):
        decode_totally(primed_decoder(STREAM, 1), header + bytes([fill]) * length)


# ------------------------------------------------------------------------------------------ sample clip


def coefficients_from_tracks(tracks: Any) -> list[Coefficients]:
    """Return the Coefficients the edge would send for the face frames of `tracks` (online path)."""
    from edge.coefficients import coefficient_stream

    return [coefficients for _, coefficients in coefficient_stream(tracks.frames)]


@pytest.mark.slow
def test_sample_clip_fits_the_bandwidth_budget(sample_tracks: Any) -> None:
    frames = coefficients_from_tracks(sample_tracks)
    assert len(frames) >= 250
    plain = [wire.encode_plain(c) for c in frames]
    assert max(len(p) for p in plain) <= 80
    packets = wire.encode_stream(frames, key_interval=wire.DEFAULT_KEY_INTERVAL)
    average = sum(len(p) for p in packets) / len(packets)
    assert average <= 33, f"compact form averages {average:.1f} B/frame"
    decoder = wire.CompactDecoder()
    decoded = [decoder.decode(p) for p in packets]
    error = max(float(np.abs(d.blendshapes - c.blendshapes).max()) for d, c in zip(decoded, frames, strict=True))
    assert error <= wire.BLENDSHAPE_STEP + F32, f"blendshape error {error * 255:.3f} steps"
    for d, c in zip(decoded, frames, strict=True):
        assert_close(d, c, steps=2)
