"""The coefficient wire protocol between a sender and the gateway: `Coefficients` ↔ bytes.

Its own package because two sides speak it and neither owns it: the edge (and the browser's
web/src/wire.js, byte for byte) encodes, the gateway decodes. It needs numpy and face3d's
`Coefficients`, never torch. The format is documented in `wire/codec.py` and docs/live-protocol.md.
"""

from wire.codec import (
    BLENDSHAPE_STEP,
    BLENDSHAPE_STEPS,
    DEFAULT_KEY_INTERVAL,
    DELTA_HEADER_SIZE,
    KIND_DELTA,
    KIND_PLAIN,
    LOG2_SCALE_MAX,
    LOG2_SCALE_MIN,
    LOG2_SCALE_STEP,
    MAX_REFERENCE_DISTANCE,
    PLAIN_SIZE,
    ROTATION_RANGE_RAD,
    ROTATION_STEP_RAD,
    TRANSLATION_RANGE_WIDTHS,
    TRANSLATION_STEP_WIDTHS,
    WIRE_VERSION,
    CompactDecoder,
    CompactEncoder,
    MissingReferenceError,
    WireError,
    decode,
    decode_plain,
    encode_plain,
    encode_stream,
)

__all__ = [
    "BLENDSHAPE_STEP",
    "BLENDSHAPE_STEPS",
    "DEFAULT_KEY_INTERVAL",
    "DELTA_HEADER_SIZE",
    "KIND_DELTA",
    "KIND_PLAIN",
    "LOG2_SCALE_MAX",
    "LOG2_SCALE_MIN",
    "LOG2_SCALE_STEP",
    "MAX_REFERENCE_DISTANCE",
    "PLAIN_SIZE",
    "ROTATION_RANGE_RAD",
    "ROTATION_STEP_RAD",
    "TRANSLATION_RANGE_WIDTHS",
    "TRANSLATION_STEP_WIDTHS",
    "WIRE_VERSION",
    "CompactDecoder",
    "CompactEncoder",
    "MissingReferenceError",
    "WireError",
    "decode",
    "decode_plain",
    "encode_plain",
    "encode_stream",
]
