"""The browser computes and encodes exactly what the Python edge does: web/src/wire.js against wire on
the golden fixtures and on a seeded stream, and web/src/coefficients.js against face3d.online on the sample
clip's recorded landmarks. The modules run in Chromium, imported by the page from the gateway's /static/.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import wire
from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.coefficients import Coefficients
from face3d.errors import FitError
from face3d.online import OnlineEstimator

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "wire" / "fixtures"
GOLDEN = ("plain-neutral", "plain-extremes", "compact-stream")

# In-page: import wire.js and encode a list of frames (JSON Coefficients) with one CompactEncoder, or plainly.
ENCODE_JS = """async ([frames, keyInterval, plain]) => {
  const wire = await import('/static/wire.js');
  const encoder = new wire.CompactEncoder(keyInterval);
  return frames.map((f) => {
    const c = {seq: f.seq, timestampMs: f.timestamp_ms, blendshapes: f.blendshapes, rotation: f.rotation,
               translation: f.translation, scale: f.scale};
    return Array.from(plain ? wire.encodePlain(c) : encoder.encode(c));
  });
}"""


def as_json(c: Coefficients) -> dict[str, Any]:
    """Return `c` as the page receives it (float32 values as the doubles they equal)."""
    return {
        "seq": c.seq,
        "timestamp_ms": c.timestamp_ms,
        "blendshapes": [float(v) for v in c.blendshapes],
        "rotation": [float(v) for v in c.rotation],
        "translation": [float(v) for v in c.translation],
        "scale": c.scale,
    }


def from_json(record: dict[str, Any]) -> Coefficients:
    """Return the Coefficients of a fixture's JSON frame."""
    return Coefficients(
        seq=record["seq"],
        timestamp_ms=record["timestamp_ms"],
        blendshapes=np.array(record["blendshapes"], np.float32),
        rotation=np.array(record["rotation"], np.float32),
        translation=np.array(record["translation"], np.float32),
        scale=record["scale"],
    )


@pytest.fixture(scope="module")
def page(browser: Any, pages_url: str) -> Any:
    """A page of the pages-only server (its origin serves /static/ and /api/face-model.json)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{pages_url}/view")
    yield page
    context.close()


def js_encode(page: Any, frames: list[Coefficients], key_interval: int = 1, plain: bool = False) -> list[bytes]:
    """Return the packets wire.js makes of `frames` (one CompactEncoder, or plain packets)."""
    packets = page.evaluate(ENCODE_JS, [[as_json(c) for c in frames], key_interval, plain])
    return [bytes(p) for p in packets]


@pytest.mark.parametrize("case", GOLDEN)
def test_the_js_encoder_writes_the_golden_bytes(page: Any, case: str) -> None:
    record = json.loads((FIXTURES / f"{case}.json").read_text())
    frames = [from_json(f) for f in record["frames"]]
    golden = [(FIXTURES / name).read_bytes() for name in record["packets"]]
    assert js_encode(page, frames, record["key_interval"]) == golden
    assert js_encode(page, frames, plain=True) == [wire.encode_plain(c) for c in frames]


def seeded_stream(count: int, seed: int) -> list[Coefficients]:
    """Return a stream like a face's (small steps, blinks, a head turn), with gaps, wraps and saturation."""
    rng = np.random.default_rng(seed)
    blendshapes = rng.uniform(0, 0.3, NUM_BLENDSHAPES)
    rotation = np.array([0.1, -0.2, 0.05])
    frames = []
    seq, timestamp = 2**32 - 20, 2**32 - 700
    for i in range(count):
        blendshapes = np.clip(blendshapes + rng.normal(0, 0.01, NUM_BLENDSHAPES), 0, 1)
        if i % 37 == 5:
            # A jump to an end of the range: its dead-zone delta can be a tie that must round half to even.
            blendshapes[rng.integers(NUM_BLENDSHAPES)] = rng.choice([0.0, 1.0])
        rotation = rotation + rng.normal(0, 0.01, 3)
        translation = rng.normal(0, 0.05, 2) if i % 50 else np.array([-4.5, 4.5])  # beyond ±4: saturates
        scale = float(np.exp(rng.normal(math.log(0.014), 0.05))) if i % 61 else 2.0  # above 1: saturates
        frames.append(
            Coefficients(
                seq % 2**32,
                timestamp % 2**32,
                blendshapes.astype(np.float32),
                rotation.astype(np.float32),
                translation.astype(np.float32),
                scale,
            )
        )
        seq += 1 if i % 41 else 2 if i % 82 else 90  # a lost packet; a jump past the reference window
        timestamp += int(rng.integers(30, 50))
    return frames


def test_the_python_decoder_reads_what_the_js_encoder_writes(page: Any) -> None:
    frames = seeded_stream(400, seed=7)
    plain = js_encode(page, frames, plain=True)
    compact = js_encode(page, frames, key_interval=wire.DEFAULT_KEY_INTERVAL)
    # Byte for byte what the Python encoders write …
    assert plain == [wire.encode_plain(c) for c in frames]
    assert compact == wire.encode_stream(frames, wire.DEFAULT_KEY_INTERVAL)
    # … so Python decodes every packet to within the format's guarantee: half a step plain, one step compact.
    decoder = wire.CompactDecoder()
    for c, packet, short in zip(frames, plain, compact, strict=True):
        for decoded, steps in ((wire.decode_plain(packet), 0.5), (decoder.decode(short), 1.0)):
            assert decoded.seq == c.seq and decoded.timestamp_ms == c.timestamp_ms
            assert np.abs(decoded.blendshapes - c.blendshapes).max() <= steps * wire.BLENDSHAPE_STEP + 1e-6
    sizes = [len(p) for p in compact]
    keys = sum(p[1] == wire.KIND_PLAIN for p in compact)
    print(f"compact: {np.mean(sizes):.1f} B/packet over {len(sizes)} ({keys} key packets of {wire.PLAIN_SIZE} B)")


# --------------------------------------------------------------------------------------- coefficients


ESTIMATE_JS = """async ([model, frames, landmarksB64]) => {
  const {OnlineEstimator, FitError} = await import('/static/coefficients.js');
  const raw = Uint8Array.from(atob(landmarksB64), (c) => c.charCodeAt(0));
  const all = new Float32Array(raw.buffer);
  const estimator = new OnlineEstimator(model);
  let seq = 0;
  return frames.map((f, i) => {
    if (f.reset) estimator.reset();
    const at = (k) => (i * 478 + k) * 3;
    const landmarks = Array.from({length: 478}, (_, k) => Array.from(all.subarray(at(k), at(k) + 3)));
    try {
      const c = estimator.update(landmarks, f.blendshapes, f.image_size, f.timestamp_ms, seq);
      seq += 1;
      return {seq: c.seq, timestamp_ms: c.timestampMs, blendshapes: Array.from(c.blendshapes),
              rotation: Array.from(c.rotation), translation: Array.from(c.translation), scale: c.scale};
    } catch (error) {
      if (!(error instanceof FitError)) throw error;
      return {error: error.message};
    }
  });
}"""

# Both sides compute in doubles from the same float32 inputs; they differ only in how the optimal rotation is
# found (SVD here, Horn's quaternion eigenvector there: the same optimum, agreeing to ~1e-12) before the
# outputs are stored as float32 (relative step 6e-8). 1e-6 is far above both and far below any real
# disagreement (a wrong filter constant or axis moves values by 1e-3 or more).
ABS_TOLERANCE = 1e-6


def test_the_js_estimator_computes_the_python_coefficients(page: Any, sample_tracks: Any, pages_url: str) -> None:
    from face3d.topology import load_canonical_mesh

    model = page.evaluate("async () => (await fetch('/api/face-model.json')).json()")
    frames = [f for f in sample_tracks.frames if f.landmarks is not None and f.blendshapes is not None]
    landmarks = np.stack([f.landmarks for f in frames]).astype("<f4")
    # One scrambled frame: both sides must refuse it (a degenerate pose) and carry on with their state kept.
    scrambled = 20
    landmarks[scrambled] = landmarks[scrambled][np.random.default_rng(0).permutation(478)]
    inputs: list[dict[str, Any]] = []
    for previous, frame in zip([None, *frames], frames, strict=False):
        # As edge.coefficients.coefficient_stream: the filters restart at a cut and after a frame without a face.
        reset = previous is not None and (frame.shot != previous.shot or frame.index != previous.index + 1)
        inputs.append(
            {
                "reset": reset,
                "blendshapes": [float(v) for v in frame.blendshapes],
                "image_size": list(frame.image_size),
                "timestamp_ms": frame.timestamp_ms,
            }
        )
    out = page.evaluate(ESTIMATE_JS, [model, inputs, base64.b64encode(landmarks.tobytes()).decode()])

    estimator, seq, worst = OnlineEstimator(mesh=load_canonical_mesh()), 0, 0.0
    for i, (frame, record, js) in enumerate(zip(frames, inputs, out, strict=True)):
        if record["reset"]:
            estimator.reset()
        try:
            c = estimator.update(landmarks[i], frame.blendshapes, frame.image_size, frame.timestamp_ms, seq)
        except FitError:
            assert i == scrambled and "degenerate pose" in js.get("error", ""), js
            continue
        seq += 1
        assert "error" not in js, f"frame {frame.index}: {js}"
        assert (js["seq"], js["timestamp_ms"]) == (c.seq, c.timestamp_ms)
        for name in ("blendshapes", "rotation", "translation"):
            difference = float(np.abs(np.asarray(js[name]) - getattr(c, name)).max())
            worst = max(worst, difference)
            assert difference <= ABS_TOLERANCE, f"frame {frame.index}: {name} differs by {difference:.2e}"
        assert js["scale"] == pytest.approx(c.scale, rel=ABS_TOLERANCE)
    assert seq == len(frames) - 1
    print(f"coefficients.js vs face3d.online over {seq} frames of the sample clip: max |difference| {worst:.1e}")


def test_the_pages_reconnect_with_the_edges_settings(page: Any) -> None:
    """web/src/session.js's CLIENT_CONFIG is edge/config.py's ClientConfig, in milliseconds: the pages are as
    patient after a drop (and outlast a gateway restart) as the Python edge."""
    from edge.config import EdgeConfig

    python = EdgeConfig.load().client
    pages = page.evaluate("async () => (await import('/static/session.js')).CLIENT_CONFIG")
    assert pages == {
        "pingIntervalMs": python.ping_interval_s * 1000,
        "silenceTimeoutMs": python.silence_timeout_s * 1000,
        "connectTimeoutMs": python.connect_timeout_s * 1000,
        "reconnectAttempts": python.reconnect_attempts,
        "reconnectFirstDelayMs": python.reconnect_first_delay_s * 1000,
        "reconnectMaxDelayMs": python.reconnect_max_delay_s * 1000,
        "busyRetries": python.busy_retries,
        "maxBufferedBytes": python.max_buffered_bytes,
        "latencyWindow": python.latency_window,
    }
