"""The coefficient wire codec: `Coefficients` ↔ bytes, in a plain form and a compact (delta-coded) form.

Every packet starts with two bytes: the format version (`WIRE_VERSION`; any other value is a
`WireError`, so a later format can change everything behind it) and flags (bits 0–1: the packet kind,
2 and 3 being unknown; bits 2–7: the reference distance of a delta packet, zero in a plain one).
Multi-byte integers are big-endian (network order).

Plain packet (kind 0), 74 bytes, decodable on its own::

    0   u8      version = 1
    1   u8      flags = 0
    2   u32     seq
    6   u32     timestamp_ms
    10  u8[52]  blendshapes          q = round(w · 255)                    step 1/255
    62  i16[3]  rotation vector      q = round(r / π · 32767)              step π/32767 rad ≈ 0.0055°
    68  i16[2]  translation          q = round(t / 4 · 32767)              step 4/32767 image widths
    72  u16     scale, log-coded     q = round((log2 s + 12) / 12 · 65535) step 12/65535 octave ≈ 0.013 %

Ranges: rotation components ±π, translation ±4 image widths from the centre, scale 2⁻¹² … 1 image
widths per cm (a face 15 cm wide spans 1/16 of a 4K frame at 2⁻¹², or fifteen frames at 1); values
outside saturate to the range's ends. Decoding gives every value within half a step of what was sent;
a decoded rotation vector longer than π (which rounding or arbitrary bytes can produce) is replaced by
the equivalent one of angle 2π − θ about the opposite axis, the same rotation.

Delta packet (kind 1), 6 bytes plus a range-coded payload (about 25 bytes on the sample clip),
decodable only by a `CompactDecoder` holding the frame it references::

    0   u8      version = 1
    1   u8      flags = 1 | distance << 2: the reference is frame seq − distance (1 … 63)
    2   u32     seq
    6   …       range-coded payload (adaptive binary contexts, LZMA-style coder): the timestamp's step
                minus the reference's step, 52 blendshape deltas and 6 pose deltas, each as an is-zero
                flag, a sign and an Exp-Golomb magnitude whose order follows the field's previous delta

The full 32-bit sequence number in every delta makes the reference check exact: a decoder that missed
the reference, or any frame between the last key frame and it, cannot mistake another frame for it.

Delta values are in units of *two* quantisation steps and are added to the reference's quantised
value, so the decoded value stays on the plain form's grid and within one step of the original
(a dead zone: a value that drifted by at most one step from the reference costs one cheap "unchanged"
symbol). Guarantee of the compact form: every decoded field is within one quantisation step of the
original (blendshapes within 1/255, plus float32 rounding below 1e-7), twice the plain form's half
step. The contexts' probabilities adapt from frame to frame along the chain that starts at a key
frame (a plain packet), so the decoder's state is the reference frame's quantised values plus those
probabilities; a delta whose reference the decoder does not hold is rejected with `WireError`, never
decoded against the wrong frame.

A decoder serves one stream: make a new `CompactDecoder` for every connection.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from base.errors import HeadcastError
from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.coefficients import Coefficients
from face3d.errors import Face3dError


class WireError(HeadcastError):
    """A coefficient packet could not be decoded (corrupt, from another wire version, or its reference was lost)."""


class MissingReferenceError(WireError):
    """A well-formed delta packet whose reference frame this decoder does not hold: the chain resumes at the
    next key frame (which the receiver may ask the sender for)."""


WIRE_VERSION = 1
KIND_PLAIN = 0
KIND_DELTA = 1
_KIND_MASK = 0b11
_FLAG_ARGUMENT_SHIFT = 2  # flags bits 2–7: the delta packet's reference distance; zero in plain packets

BLENDSHAPE_STEPS = 255
ROTATION_RANGE_RAD = math.pi
TRANSLATION_RANGE_WIDTHS = 4.0
LOG2_SCALE_MIN = -12.0
LOG2_SCALE_MAX = 0.0
_INT16_STEPS = 32767
_UINT16_STEPS = 65535

_PLAIN = struct.Struct(f">BBII{NUM_BLENDSHAPES}B3h2hH")
PLAIN_SIZE = _PLAIN.size
_DELTA_HEADER = struct.Struct(">BBI")
DELTA_HEADER_SIZE = _DELTA_HEADER.size
MAX_REFERENCE_DISTANCE = 63
DEFAULT_KEY_INTERVAL = 30

# Pose fields in packet order: three rotation components, two translation components, scale. The
# quantised pose is kept as one list of six ints; the bounds are what the fixed-point fields can hold.
_POSE_FIELDS = 6
_POSE_LOW = (-_INT16_STEPS,) * 5 + (0,)
_POSE_HIGH = (_INT16_STEPS,) * 5 + (_UINT16_STEPS,)

BLENDSHAPE_STEP = 1.0 / BLENDSHAPE_STEPS
ROTATION_STEP_RAD = ROTATION_RANGE_RAD / _INT16_STEPS
TRANSLATION_STEP_WIDTHS = TRANSLATION_RANGE_WIDTHS / _INT16_STEPS
LOG2_SCALE_STEP = (LOG2_SCALE_MAX - LOG2_SCALE_MIN) / _UINT16_STEPS


# --------------------------------------------------------------------------------------------- quantisation


@dataclass(frozen=True)
class _Quantised:
    """One frame on the wire's grid: what both ends of a compact stream hold as the reference."""

    seq: int
    timestamp_ms: int
    blendshapes: tuple[int, ...]  # 52 values in 0 … 255
    pose: tuple[int, ...]  # rotation ×3, translation ×2 (int16 range), scale (uint16 range)


def _fixed_point(c: Coefficients) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return the unrounded (blendshapes, pose) in quantisation steps, saturated to the fields' ranges."""
    blendshapes = np.clip(c.blendshapes.astype(np.float64) * BLENDSHAPE_STEPS, 0, BLENDSHAPE_STEPS)
    rotation = c.rotation.astype(np.float64) / ROTATION_STEP_RAD
    translation = c.translation.astype(np.float64) / TRANSLATION_STEP_WIDTHS
    log2_scale = (math.log2(c.scale) - LOG2_SCALE_MIN) / LOG2_SCALE_STEP
    pose = np.concatenate([rotation, translation, [log2_scale]])
    return blendshapes, np.clip(pose, _POSE_LOW, _POSE_HIGH)


def _quantise(c: Coefficients) -> _Quantised:
    """Return `c` rounded to the nearest point of the plain form's grid."""
    blendshapes, pose = _fixed_point(c)
    return _Quantised(
        c.seq,
        c.timestamp_ms,
        tuple(int(v) for v in np.rint(blendshapes)),
        tuple(int(v) for v in np.rint(pose)),
    )


def _rotation_vector(rotation: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return `rotation` itself, or when its angle θ exceeds π the same rotation as angle 2π − θ."""
    angle = float(np.linalg.norm(rotation))
    if angle <= math.pi:
        return rotation
    return rotation * ((angle - 2 * math.pi) / angle)


def _dequantise(q: _Quantised) -> Coefficients:
    """Return the Coefficients at grid point `q`; any in-range `q` gives valid Coefficients."""
    blendshapes = np.asarray(q.blendshapes, dtype=np.float64) / BLENDSHAPE_STEPS
    pose = np.asarray(q.pose, dtype=np.float64)
    rotation = _rotation_vector(pose[:3] * ROTATION_STEP_RAD)
    translation = pose[3:5] * TRANSLATION_STEP_WIDTHS
    scale = 2.0 ** (LOG2_SCALE_MIN + pose[5] * LOG2_SCALE_STEP)
    try:
        return Coefficients(
            seq=q.seq,
            timestamp_ms=q.timestamp_ms,
            blendshapes=blendshapes.astype(np.float32),
            rotation=rotation.astype(np.float32),
            translation=translation.astype(np.float32),
            scale=scale,
        )
    except Face3dError as error:  # unreachable for in-range grid points; kept so decoding stays total
        raise WireError(f"packet decodes to invalid coefficients ({error}); the sender is broken") from error


# ------------------------------------------------------------------------------------------------ plain form


def _header(packet: bytes) -> tuple[int, int]:
    """Return the packet's (kind, flag argument) after checking its version byte."""
    if len(packet) < 2:
        raise WireError(f"a coefficient packet has at least 2 bytes, got {len(packet)}")
    version, flags = packet[0], packet[1]
    if version != WIRE_VERSION:
        raise WireError(
            f"coefficient packet of wire version {version}; this decoder reads version {WIRE_VERSION} — "
            "update the receiving side"
        )
    return flags & _KIND_MASK, flags >> _FLAG_ARGUMENT_SHIFT


def _pack_plain(q: _Quantised) -> bytes:
    return _PLAIN.pack(WIRE_VERSION, KIND_PLAIN, q.seq, q.timestamp_ms, *q.blendshapes, *q.pose)


def _unpack_plain(packet: bytes) -> _Quantised:
    kind, argument = _header(packet)
    if kind != KIND_PLAIN:
        raise WireError("not a plain coefficient packet (a delta packet needs a CompactDecoder)")
    if argument:
        raise WireError(f"plain coefficient packet with reserved flag bits set (flags {packet[1]:#04x})")
    if len(packet) != PLAIN_SIZE:
        raise WireError(f"a plain coefficient packet has {PLAIN_SIZE} bytes, got {len(packet)}")
    fields = _PLAIN.unpack(packet)
    blendshapes = tuple(fields[4 : 4 + NUM_BLENDSHAPES])
    pose = tuple(fields[4 + NUM_BLENDSHAPES :])
    if pose[0] < -_INT16_STEPS or pose[1] < -_INT16_STEPS or pose[2] < -_INT16_STEPS:
        raise WireError("rotation field holds -32768, outside the encoded range ±32767")
    if pose[3] < -_INT16_STEPS or pose[4] < -_INT16_STEPS:
        raise WireError("translation field holds -32768, outside the encoded range ±32767")
    return _Quantised(fields[2], fields[3], blendshapes, pose)


def encode_plain(c: Coefficients) -> bytes:
    """Return the 74-byte plain packet of `c` (values outside the wire's ranges saturate)."""
    return _pack_plain(_quantise(c))


def decode_plain(packet: bytes) -> Coefficients:
    """Return the Coefficients in a plain packet; raises WireError for anything else."""
    return _dequantise(_unpack_plain(bytes(packet)))


# ------------------------------------------------------------------------------------------- range coding
# An LZMA-style binary range coder: 11-bit probabilities that move 1/16 of the way toward each coded
# bit. Short packets (a few dozen bytes) gain more from fast adaptation than from precise estimates.

_PROB_BITS = 11
_PROB_ONE = 1 << _PROB_BITS
_PROB_INIT = _PROB_ONE // 2
_ADAPT_SHIFT = 3
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF


class _RangeEncoder:
    def __init__(self) -> None:
        self.low = 0
        self.range = _MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > _MASK32:
            carry = self.low >> 32
            byte = self.cache
            while True:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def bit(self, probs: list[int], index: int, bit: int) -> None:
        p = probs[index]
        bound = (self.range >> _PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[index] = p - (p >> _ADAPT_SHIFT)
        else:
            self.range = bound
            probs[index] = p + ((_PROB_ONE - p) >> _ADAPT_SHIFT)
        while self.range < _TOP:
            self.range <<= 8
            self._shift_low()

    def direct(self, value: int, count: int) -> None:
        for shift in range(count - 1, -1, -1):
            self.range >>= 1
            if (value >> shift) & 1:
                self.low += self.range
            while self.range < _TOP:
                self.range <<= 8
                self._shift_low()

    def finish(self) -> bytes:
        """Return the coded bytes, cut as short as the decoder's zero padding allows."""
        # Any value in [low, low + range) decodes the same; the one with the most trailing zero bits
        # lets the flush end in zero bytes, which are dropped because the decoder reads zeros past the end.
        for shift in range(32, -1, -1):
            value = ((self.low + (1 << shift) - 1) >> shift) << shift
            if value < self.low + self.range:
                self.low = value
                break
        for _ in range(5):
            self._shift_low()
        # The first byte is the coder's integer part, always zero: the decoder starts past it.
        return bytes(self.out[1:]).rstrip(b"\x00")


class _RangeDecoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.range = _MASK32
        self.code = 0
        for _ in range(4):
            self.code = (self.code << 8) | self._byte()
        if self.code == _MASK32:
            raise WireError("corrupt delta payload (range coder start value out of range)")

    def _byte(self) -> int:
        pos = self.pos
        self.pos += 1
        return self.data[pos] if pos < len(self.data) else 0

    def bit(self, probs: list[int], index: int) -> int:
        p = probs[index]
        bound = (self.range >> _PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[index] = p + ((_PROB_ONE - p) >> _ADAPT_SHIFT)
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[index] = p - (p >> _ADAPT_SHIFT)
            bit = 1
        while self.range < _TOP:
            self.range <<= 8
            self.code = ((self.code << 8) | self._byte()) & _MASK32
        return bit

    def direct(self, count: int) -> int:
        value = 0
        for _ in range(count):
            self.range >>= 1
            bit = 1 if self.code >= self.range else 0
            if bit:
                self.code -= self.range
            value = (value << 1) | bit
            while self.range < _TOP:
                self.range <<= 8
                self.code = ((self.code << 8) | self._byte()) & _MASK32
        return value


# Signed integers are binarised as: is-zero flag, sign, then Exp-Golomb of |v| − 1 (a unary length
# prefix with one adaptive context per position, then that many raw suffix bits). Each coded quantity
# ("field") owns its contexts; a blendshape's is-zero flag has two, chosen by whether the same blendshape
# changed in the reference frame, because expressions move in bursts.
_MAX_PREFIX = 32
_ZERO_CHANGED, _ZERO_STILL, _SIGN, _PREFIX = 0, 1, 2, 3
_CONTEXTS_PER_FIELD = _PREFIX + _MAX_PREFIX + 1
_FIELD_TIMESTAMP = 0
_FIELD_VALUES = 1  # then one field per blendshape and per pose value, in packet order
_FIELDS = _FIELD_VALUES + NUM_BLENDSHAPES + _POSE_FIELDS
_LOW = (0,) * NUM_BLENDSHAPES + _POSE_LOW
_HIGH = (BLENDSHAPE_STEPS,) * NUM_BLENDSHAPES + _POSE_HIGH
_ORDER_LAG = 2


def _context(last_length: int) -> tuple[bool, int]:
    """Return (moved, Exp-Golomb order) for a value whose previous delta had bit length `last_length`."""
    return last_length > 0, max(last_length - _ORDER_LAG, 0)


def _initial_contexts() -> list[int]:
    return [_PROB_INIT] * (_FIELDS * _CONTEXTS_PER_FIELD)


def _encode_signed(coder: _RangeEncoder, probs: list[int], field: int, value: int, moved: bool, order: int = 0) -> None:
    base = field * _CONTEXTS_PER_FIELD
    coder.bit(probs, base + (_ZERO_CHANGED if moved else _ZERO_STILL), value != 0)
    if value == 0:
        return
    coder.bit(probs, base + _SIGN, value < 0)
    shifted = abs(value) - 1 + (1 << order)  # Exp-Golomb of order `order` codes |value| − 1
    length = shifted.bit_length() - 1 - order
    for i in range(length):
        coder.bit(probs, base + _PREFIX + i, 1)
    coder.bit(probs, base + _PREFIX + length, 0)
    coder.direct(shifted - (1 << (length + order)), length + order)


def _decode_signed(coder: _RangeDecoder, probs: list[int], field: int, moved: bool, order: int = 0) -> int:
    base = field * _CONTEXTS_PER_FIELD
    if not coder.bit(probs, base + (_ZERO_CHANGED if moved else _ZERO_STILL)):
        return 0
    negative = coder.bit(probs, base + _SIGN)
    length = 0
    while coder.bit(probs, base + _PREFIX + length):
        length += 1
        if length > _MAX_PREFIX:
            raise WireError("corrupt delta payload (a value longer than 32 bits)")
    magnitude = (1 << (length + order)) + coder.direct(length + order) - (1 << order) + 1
    return -magnitude if negative else magnitude


def _wrap_int32(value: int) -> int:
    """Return `value` mod 2³² as a signed 32-bit integer: a timestamp step that may cross the wrap."""
    value &= _MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


# ---------------------------------------------------------------------------------------- compact form


@dataclass(frozen=True)
class _ChainState:
    """What encoder and decoder share after a frame: its grid values and the adapted contexts."""

    frame: _Quantised
    step_ms: int  # timestamp step from the frame before (0 after a key frame): the next step's prediction
    lengths: tuple[int, ...]  # bit length of each blendshape's and pose field's last delta (0: unchanged)
    contexts: tuple[int, ...]


def _key_state(frame: _Quantised) -> _ChainState:
    return _ChainState(frame, 0, (0,) * (NUM_BLENDSHAPES + _POSE_FIELDS), tuple(_initial_contexts()))


def _dead_zone_delta(target: float, reference: int, low: int, high: int) -> int:
    """Return d such that reference + 2d lies on [low, high] within one step of `target`."""
    delta = round((target - reference) / 2)
    # Saturated targets can sit on an odd distance from the reference; stepping back keeps the value
    # inside the field (it is still within one step of the saturated target).
    while reference + 2 * delta > high:
        delta -= 1
    while reference + 2 * delta < low:
        delta += 1
    return delta


class CompactEncoder:
    """Encodes a stream of Coefficients as key (plain) packets and delta packets; one per stream.

    key_interval: a key frame at least every `key_interval` frames, so a receiver that lost a packet
    recovers within that many frames. A key frame is also sent for the first frame, when the sequence
    number jumps by more than 63 or backwards, and whenever a delta would not be smaller.
    """

    def __init__(self, key_interval: int = DEFAULT_KEY_INTERVAL) -> None:
        if key_interval < 1:
            raise WireError(f"key_interval must be at least 1, got {key_interval}")
        self.key_interval = key_interval
        self._state: _ChainState | None = None
        self._since_key = 0

    def reset(self) -> None:
        """Forget the reference, so the next packet is a key frame (e.g. after the receiver asked for one)."""
        self._state = None

    def encode(self, c: Coefficients) -> bytes:
        """Return the packet for `c`: a plain key packet or a delta against the previous frame."""
        key = _quantise(c)
        state = self._state
        distance = (c.seq - state.frame.seq) & _MASK32 if state is not None else 0
        if state is None or self._since_key + 1 >= self.key_interval or not 1 <= distance <= MAX_REFERENCE_DISTANCE:
            return self._send_key(key)
        packet, next_state = self._delta(c, state, distance)
        if len(packet) >= PLAIN_SIZE:
            return self._send_key(key)
        self._state = next_state
        self._since_key += 1
        return packet

    def _send_key(self, key: _Quantised) -> bytes:
        self._state = _key_state(key)
        self._since_key = 0
        return _pack_plain(key)

    def _delta(self, c: Coefficients, state: _ChainState, distance: int) -> tuple[bytes, _ChainState]:
        reference = state.frame
        probs = list(state.contexts)
        coder = _RangeEncoder()
        step_ms = _wrap_int32(c.timestamp_ms - reference.timestamp_ms)
        _encode_signed(coder, probs, _FIELD_TIMESTAMP, step_ms - state.step_ms, moved=False)
        target_blendshapes, target_pose = _fixed_point(c)
        values: list[int] = []
        lengths: list[int] = []
        targets = [*target_blendshapes, *target_pose]
        for i, (target, ref) in enumerate(zip(targets, reference.blendshapes + reference.pose, strict=True)):
            delta = _dead_zone_delta(float(target), ref, _LOW[i], _HIGH[i])
            moved, order = _context(state.lengths[i])
            _encode_signed(coder, probs, _FIELD_VALUES + i, delta, moved, order)
            values.append(ref + 2 * delta)
            lengths.append(abs(delta).bit_length())
        blendshapes, pose = values[:NUM_BLENDSHAPES], values[NUM_BLENDSHAPES:]
        flags = KIND_DELTA | distance << _FLAG_ARGUMENT_SHIFT
        packet = _DELTA_HEADER.pack(WIRE_VERSION, flags, c.seq) + coder.finish()
        frame = _Quantised(c.seq, c.timestamp_ms, tuple(blendshapes), tuple(pose))
        return packet, _ChainState(frame, step_ms, tuple(lengths), tuple(probs))


class CompactDecoder:
    """Decodes one stream of plain and delta packets; holds the last frame it decoded as the reference.

    A delta packet whose reference is not the held frame (a packet was lost or reordered) raises
    WireError and leaves the held frame as it was; decoding resumes at the next key frame.
    """

    def __init__(self) -> None:
        self._state: _ChainState | None = None

    @property
    def reference_seq(self) -> int | None:
        """Return the sequence number of the held reference frame (None before the first key frame)."""
        return self._state.frame.seq if self._state is not None else None

    def decode(self, packet: bytes) -> Coefficients:
        """Return the Coefficients in `packet` (plain or delta); raises WireError when it cannot."""
        packet = bytes(packet)
        kind, _ = _header(packet)
        if kind == KIND_PLAIN:
            frame = _unpack_plain(packet)
            coefficients = _dequantise(frame)
            self._state = _key_state(frame)
            return coefficients
        if kind == KIND_DELTA:
            frame, state = self._decode_delta(packet)
            coefficients = _dequantise(frame)
            self._state = state
            return coefficients
        raise WireError(f"unknown coefficient packet kind {kind}")

    def _decode_delta(self, packet: bytes) -> tuple[_Quantised, _ChainState]:
        if len(packet) < DELTA_HEADER_SIZE:
            raise WireError(f"a delta coefficient packet has at least {DELTA_HEADER_SIZE} bytes, got {len(packet)}")
        _, flags, seq = _DELTA_HEADER.unpack_from(packet)
        distance = flags >> _FLAG_ARGUMENT_SHIFT
        if distance == 0:
            raise WireError("corrupt delta packet (reference distance 0)")
        reference_seq = (seq - distance) & _MASK32
        state = self._state
        if state is None or state.frame.seq != reference_seq:
            held = "no frame" if state is None else f"frame {state.frame.seq}"
            raise MissingReferenceError(
                f"delta packet {seq} references frame {reference_seq} but this decoder holds {held}; "
                "waiting for the next key frame"
            )
        reference = state.frame
        probs = list(state.contexts)
        coder = _RangeDecoder(packet[DELTA_HEADER_SIZE:])
        step_ms = _wrap_int32(state.step_ms + _decode_signed(coder, probs, _FIELD_TIMESTAMP, moved=False))
        values: list[int] = []
        lengths: list[int] = []
        for i, ref in enumerate(reference.blendshapes + reference.pose):
            moved, order = _context(state.lengths[i])
            delta = _decode_signed(coder, probs, _FIELD_VALUES + i, moved, order)
            value = ref + 2 * delta
            if not _LOW[i] <= value <= _HIGH[i]:
                raise WireError("corrupt delta payload (a value outside its field's range)")
            values.append(value)
            lengths.append(abs(delta).bit_length())
        blendshapes, pose = values[:NUM_BLENDSHAPES], values[NUM_BLENDSHAPES:]
        frame = _Quantised(seq, (reference.timestamp_ms + step_ms) & _MASK32, tuple(blendshapes), tuple(pose))
        return frame, _ChainState(frame, step_ms, tuple(lengths), tuple(probs))


def decode(packet: bytes, decoder: CompactDecoder | None = None) -> Coefficients:
    """Return the Coefficients in any packet: plain ones alone, delta ones through `decoder`."""
    if decoder is not None:
        return decoder.decode(packet)
    return decode_plain(packet)


def encode_stream(frames: Sequence[Coefficients], key_interval: int = DEFAULT_KEY_INTERVAL) -> list[bytes]:
    """Return the compact packets of `frames`, encoded in order by one fresh CompactEncoder."""
    encoder = CompactEncoder(key_interval)
    return [encoder.encode(c) for c in frames]
