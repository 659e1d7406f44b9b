// The coefficient wire codec of wire/codec.py, sender side: Coefficients → bytes, bit for bit the same.
//
// Plain packet (74 bytes, decodable on its own) and compact stream (a plain key packet, then delta
// packets of ~25–35 bytes range-coded against the previous frame). The layout, the ranges and the
// coder are documented in wire/codec.py; this file follows it line by line so that both encoders
// produce identical bytes for identical Coefficients (tests/browser/test_js_parity.py checks the
// golden fixtures of tests/face3d/fixtures/wire and the Python decoder on live values).
//
// Numbers: every value here is an IEEE double, as in Python; float32 fields are rounded with
// Math.fround where Coefficients are built (coefficients.js), never here. Rounding is half-to-even
// (numpy's rint, Python's round). 32-bit quantities stay below 2^53 and are wrapped explicitly.

/** @typedef {{seq: number, timestampMs: number, blendshapes: ArrayLike<number>, rotation: ArrayLike<number>, translation: ArrayLike<number>, scale: number}} Coefficients */

export const WIRE_VERSION = 1;
export const KIND_PLAIN = 0;
export const KIND_DELTA = 1;
export const NUM_BLENDSHAPES = 52;
export const PLAIN_SIZE = 74;
export const DELTA_HEADER_SIZE = 6;
export const MAX_REFERENCE_DISTANCE = 63;
export const DEFAULT_KEY_INTERVAL = 30;

const FLAG_ARGUMENT_SHIFT = 2;
const BLENDSHAPE_STEPS = 255;
const INT16_STEPS = 32767;
const UINT16_STEPS = 65535;
const LOG2_SCALE_MIN = -12.0;
const LOG2_SCALE_MAX = 0.0;
export const ROTATION_STEP_RAD = Math.PI / INT16_STEPS;
export const TRANSLATION_STEP_WIDTHS = 4.0 / INT16_STEPS;
export const LOG2_SCALE_STEP = (LOG2_SCALE_MAX - LOG2_SCALE_MIN) / UINT16_STEPS;

const POSE_FIELDS = 6;
const POSE_LOW = [-INT16_STEPS, -INT16_STEPS, -INT16_STEPS, -INT16_STEPS, -INT16_STEPS, 0];
const POSE_HIGH = [INT16_STEPS, INT16_STEPS, INT16_STEPS, INT16_STEPS, INT16_STEPS, UINT16_STEPS];
const TWO_32 = 2 ** 32;

/**
 * Return `x` rounded to the nearest integer, ties to even (numpy.rint, Python's round).
 * @param {number} x
 * @returns {number}
 */
export function rint(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** @param {number} value @param {number} low @param {number} high */
function clip(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

/** Return `value` mod 2^32 as an unsigned integer. @param {number} value */
function u32(value) {
  return ((value % TWO_32) + TWO_32) % TWO_32;
}

/** Return `value` mod 2^32 as a signed 32-bit integer (a step that may cross the wrap). @param {number} value */
function wrapInt32(value) {
  const v = u32(value);
  return v >= 2 ** 31 ? v - TWO_32 : v;
}

/** Return the number of bits of a non-negative integer (Python's int.bit_length). @param {number} n */
function bitLength(n) {
  let length = 0;
  while (n >= 1) {
    n = Math.floor(n / 2);
    length += 1;
  }
  return length;
}

/**
 * One frame on the wire's grid: what both ends of a compact stream hold as the reference.
 * @typedef {{seq: number, timestampMs: number, blendshapes: number[], pose: number[]}} Quantised
 */

/**
 * Return the unrounded [blendshapes, pose] of `c` in quantisation steps, saturated to the fields' ranges.
 * @param {Coefficients} c
 * @returns {[number[], number[]]}
 */
function fixedPoint(c) {
  if (c.blendshapes.length !== NUM_BLENDSHAPES || c.rotation.length !== 3 || c.translation.length !== 2) {
    throw new RangeError("Coefficients need 52 blendshapes, 3 rotation and 2 translation values");
  }
  const blendshapes = Array.from(c.blendshapes, (w) => clip(w * BLENDSHAPE_STEPS, 0, BLENDSHAPE_STEPS));
  const pose = [
    c.rotation[0] / ROTATION_STEP_RAD,
    c.rotation[1] / ROTATION_STEP_RAD,
    c.rotation[2] / ROTATION_STEP_RAD,
    c.translation[0] / TRANSLATION_STEP_WIDTHS,
    c.translation[1] / TRANSLATION_STEP_WIDTHS,
    (Math.log2(c.scale) - LOG2_SCALE_MIN) / LOG2_SCALE_STEP,
  ].map((v, i) => clip(v, POSE_LOW[i], POSE_HIGH[i]));
  return [blendshapes, pose];
}

/** @param {Coefficients} c @returns {Quantised} */
function quantise(c) {
  const [blendshapes, pose] = fixedPoint(c);
  return { seq: c.seq, timestampMs: c.timestampMs, blendshapes: blendshapes.map(rint), pose: pose.map(rint) };
}

/** @param {Quantised} q @returns {Uint8Array} */
function packPlain(q) {
  const bytes = new Uint8Array(PLAIN_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, WIRE_VERSION);
  view.setUint8(1, KIND_PLAIN);
  view.setUint32(2, q.seq);
  view.setUint32(6, q.timestampMs);
  q.blendshapes.forEach((v, i) => view.setUint8(10 + i, v));
  for (let i = 0; i < 5; i += 1) view.setInt16(62 + 2 * i, q.pose[i]);
  view.setUint16(72, q.pose[5]);
  return bytes;
}

/**
 * Return the 74-byte plain packet of `c` (values outside the wire's ranges saturate).
 * @param {Coefficients} c
 * @returns {Uint8Array}
 */
export function encodePlain(c) {
  return packPlain(quantise(c));
}

/**
 * Return the Coefficients in a plain packet (for the page's own checks; the gateway decodes in Python).
 * Throws RangeError for anything that is not a valid plain packet.
 * @param {Uint8Array} packet
 * @returns {Coefficients}
 */
export function decodePlain(packet) {
  if (packet.length !== PLAIN_SIZE || packet[0] !== WIRE_VERSION || packet[1] !== KIND_PLAIN) {
    throw new RangeError(`not a plain coefficient packet of wire version ${WIRE_VERSION}`);
  }
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const pose = [0, 1, 2, 3, 4].map((i) => view.getInt16(62 + 2 * i));
  if (pose.some((v) => v < -INT16_STEPS)) throw new RangeError("a pose field holds -32768, outside ±32767");
  let rotation = pose.slice(0, 3).map((v) => v * ROTATION_STEP_RAD);
  const angle = Math.hypot(...rotation);
  if (angle > Math.PI) rotation = rotation.map((v) => v * ((angle - 2 * Math.PI) / angle));
  return {
    seq: view.getUint32(2),
    timestampMs: view.getUint32(6),
    blendshapes: Float32Array.from({ length: NUM_BLENDSHAPES }, (_, i) => packet[10 + i] / BLENDSHAPE_STEPS),
    rotation: Float32Array.from(rotation),
    translation: Float32Array.from(pose.slice(3, 5).map((v) => v * TRANSLATION_STEP_WIDTHS)),
    scale: 2 ** (LOG2_SCALE_MIN + view.getUint16(72) * LOG2_SCALE_STEP),
  };
}

// ------------------------------------------------------------------------------------------ range coding
// wire/codec.py's LZMA-style binary range coder: 11-bit probabilities adapting by 1/16 per bit.

const PROB_BITS = 11;
const PROB_ONE = 1 << PROB_BITS;
const PROB_INIT = PROB_ONE / 2;
const ADAPT_SHIFT = 3;
const TOP = 2 ** 24;
const MASK32 = 0xffffffff;

class RangeEncoder {
  constructor() {
    this.low = 0; // < 2^33: a carry above bit 32 is possible, as in the Python coder
    this.range = MASK32;
    this.cache = 0;
    this.cacheSize = 1;
    /** @type {number[]} */
    this.out = [];
  }

  shiftLow() {
    if (this.low < 0xff000000 || this.low > MASK32) {
      const carry = Math.floor(this.low / TWO_32);
      let byte = this.cache;
      for (;;) {
        this.out.push((byte + carry) & 0xff);
        byte = 0xff;
        this.cacheSize -= 1;
        if (this.cacheSize === 0) break;
      }
      this.cache = Math.floor(this.low / TOP) & 0xff;
    }
    this.cacheSize += 1;
    this.low = (this.low % TOP) * 256;
  }

  /** @param {number[]} probs @param {number} index @param {number} bit */
  bit(probs, index, bit) {
    const p = probs[index];
    const bound = Math.floor(this.range / PROB_ONE) * p;
    if (bit) {
      this.low += bound;
      this.range -= bound;
      probs[index] = p - (p >> ADAPT_SHIFT);
    } else {
      this.range = bound;
      probs[index] = p + ((PROB_ONE - p) >> ADAPT_SHIFT);
    }
    while (this.range < TOP) {
      this.range *= 256;
      this.shiftLow();
    }
  }

  /** @param {number} value @param {number} count */
  direct(value, count) {
    for (let shift = count - 1; shift >= 0; shift -= 1) {
      this.range = Math.floor(this.range / 2);
      if (Math.floor(value / 2 ** shift) % 2) this.low += this.range;
      while (this.range < TOP) {
        this.range *= 256;
        this.shiftLow();
      }
    }
  }

  /** Return the coded bytes, cut as short as the decoder's zero padding allows. @returns {number[]} */
  finish() {
    for (let shift = 32; shift >= 0; shift -= 1) {
      const unit = 2 ** shift;
      const value = Math.floor((this.low + unit - 1) / unit) * unit;
      if (value < this.low + this.range) {
        this.low = value;
        break;
      }
    }
    for (let i = 0; i < 5; i += 1) this.shiftLow();
    const out = this.out.slice(1);
    while (out.length && out[out.length - 1] === 0) out.pop();
    return out;
  }
}

const MAX_PREFIX = 32;
const ZERO_CHANGED = 0;
const ZERO_STILL = 1;
const SIGN = 2;
const PREFIX = 3;
const CONTEXTS_PER_FIELD = PREFIX + MAX_PREFIX + 1;
const FIELD_TIMESTAMP = 0;
const FIELD_VALUES = 1;
const FIELDS = FIELD_VALUES + NUM_BLENDSHAPES + POSE_FIELDS;
const LOW = [...new Array(NUM_BLENDSHAPES).fill(0), ...POSE_LOW];
const HIGH = [...new Array(NUM_BLENDSHAPES).fill(BLENDSHAPE_STEPS), ...POSE_HIGH];
const ORDER_LAG = 2;

/**
 * @param {RangeEncoder} coder @param {number[]} probs @param {number} field @param {number} value
 * @param {boolean} moved @param {number} order
 */
function encodeSigned(coder, probs, field, value, moved, order = 0) {
  const base = field * CONTEXTS_PER_FIELD;
  coder.bit(probs, base + (moved ? ZERO_CHANGED : ZERO_STILL), value !== 0 ? 1 : 0);
  if (value === 0) return;
  coder.bit(probs, base + SIGN, value < 0 ? 1 : 0);
  const shifted = Math.abs(value) - 1 + 2 ** order;
  const length = bitLength(shifted) - 1 - order;
  for (let i = 0; i < length; i += 1) coder.bit(probs, base + PREFIX + i, 1);
  coder.bit(probs, base + PREFIX + length, 0);
  coder.direct(shifted - 2 ** (length + order), length + order);
}

/** Return d such that reference + 2d lies on [low, high] within one step of `target`. */
function deadZoneDelta(/** @type {number} */ target, /** @type {number} */ reference, /** @type {number} */ low,
  /** @type {number} */ high) {
  let delta = rint((target - reference) / 2);
  while (reference + 2 * delta > high) delta -= 1;
  while (reference + 2 * delta < low) delta += 1;
  return delta;
}

/**
 * What encoder and decoder share after a frame.
 * @typedef {{frame: Quantised, stepMs: number, lengths: number[], contexts: number[]}} ChainState
 */

/** @param {Quantised} frame @returns {ChainState} */
function keyState(frame) {
  return {
    frame,
    stepMs: 0,
    lengths: new Array(NUM_BLENDSHAPES + POSE_FIELDS).fill(0),
    contexts: new Array(FIELDS * CONTEXTS_PER_FIELD).fill(PROB_INIT),
  };
}

/**
 * Encodes a stream of Coefficients as key (plain) packets and delta packets, as wire.CompactEncoder.
 * One encoder per connection: call `reset()` after reconnecting so the next packet is a key frame.
 */
export class CompactEncoder {
  /** @param {number} keyInterval a key frame at least every `keyInterval` packets (1 … 63) */
  constructor(keyInterval = DEFAULT_KEY_INTERVAL) {
    if (!(keyInterval >= 1)) throw new RangeError(`keyInterval must be at least 1, got ${keyInterval}`);
    this.keyInterval = keyInterval;
    /** @type {ChainState | null} */
    this.state = null;
    this.sinceKey = 0;
  }

  /** Forget the reference: the next packet is a key frame. */
  reset() {
    this.state = null;
  }

  /**
   * Return the packet for `c`: a plain key packet or a delta against the previous frame.
   * @param {Coefficients} c
   * @returns {Uint8Array}
   */
  encode(c) {
    const key = quantise(c);
    const state = this.state;
    const distance = state !== null ? u32(c.seq - state.frame.seq) : 0;
    if (state === null || this.sinceKey + 1 >= this.keyInterval || !(distance >= 1 && distance <= MAX_REFERENCE_DISTANCE)) {
      return this.sendKey(key);
    }
    const [packet, next] = this.delta(c, state, distance);
    if (packet.length >= PLAIN_SIZE) return this.sendKey(key);
    this.state = next;
    this.sinceKey += 1;
    return packet;
  }

  /** @param {Quantised} key */
  sendKey(key) {
    this.state = keyState(key);
    this.sinceKey = 0;
    return packPlain(key);
  }

  /**
   * @param {Coefficients} c @param {ChainState} state @param {number} distance
   * @returns {[Uint8Array, ChainState]}
   */
  delta(c, state, distance) {
    const reference = state.frame;
    const probs = state.contexts.slice();
    const coder = new RangeEncoder();
    const stepMs = wrapInt32(c.timestampMs - reference.timestampMs);
    encodeSigned(coder, probs, FIELD_TIMESTAMP, stepMs - state.stepMs, false);
    const [targetBlendshapes, targetPose] = fixedPoint(c);
    const targets = [...targetBlendshapes, ...targetPose];
    const references = [...reference.blendshapes, ...reference.pose];
    const values = [];
    const lengths = [];
    for (let i = 0; i < targets.length; i += 1) {
      const delta = deadZoneDelta(targets[i], references[i], LOW[i], HIGH[i]);
      const last = state.lengths[i];
      encodeSigned(coder, probs, FIELD_VALUES + i, delta, last > 0, Math.max(last - ORDER_LAG, 0));
      values.push(references[i] + 2 * delta);
      lengths.push(bitLength(Math.abs(delta)));
    }
    const payload = coder.finish();
    const packet = new Uint8Array(DELTA_HEADER_SIZE + payload.length);
    const view = new DataView(packet.buffer);
    view.setUint8(0, WIRE_VERSION);
    view.setUint8(1, KIND_DELTA | (distance << FLAG_ARGUMENT_SHIFT));
    view.setUint32(2, c.seq);
    packet.set(payload, DELTA_HEADER_SIZE);
    const frame = {
      seq: c.seq,
      timestampMs: c.timestampMs,
      blendshapes: values.slice(0, NUM_BLENDSHAPES),
      pose: values.slice(NUM_BLENDSHAPES),
    };
    return [packet, { frame, stepMs, lengths, contexts: probs }];
  }
}

/**
 * Return whether a packet is a key (plain) packet: its flags byte is 0, a delta's never is.
 * @param {Uint8Array} packet
 */
export function isKeyPacket(packet) {
  return packet[1] === KIND_PLAIN;
}
