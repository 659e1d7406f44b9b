"""Fuzz targets: the parsers that read what someone else wrote, each fed arbitrary bytes.

A target returns when its parser accepted the input or refused it with the error it documents (the one
the gateway, the CLI or a job turns into a clear message); anything else it raises is a crash, the bug a
fuzzer is after. `ops/fuzz/run.py NAME` runs one under atheris (coverage-guided, libFuzzer); each
target's seed inputs are in `ops/fuzz/corpus/NAME/` (seeds.py writes them from real encoders).

- wire: coefficient packets as the gateway's data channel delivers them (plain and delta forms, one
  stream through one decoder) and the sequence number the gateway peeks at before decoding.
- token: session tokens: any string, and any payload signed with the server's secret (what a holder of
  the secret could mint), through the gateway's authorisation.
- upload-headers: the enrolment upload's request headers (Upload-Offset, Authorization) and the
  container sniffing of a recording's first bytes.
- manifest: a target registry whose manifest.json and revoked.json hold arbitrary bytes.
- tracks: a tracks folder (summary.json, tracks.npz) as `headcast track` writes and enrolment reads.
- job-progress: an enrolment job's progress file and log lines, which the gateway reads to answer the page.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

TARGETS: dict[str, Callable[[bytes], None]] = {}
SECRET = b"f" * 32


def fuzz_target(function: Callable[[bytes], None]) -> Callable[[bytes], None]:
    TARGETS[function.__name__.replace("_", "-")] = function
    return function


def _split(data: bytes, width: int = 1) -> tuple[bytes, bytes]:
    """Return two inputs from one: its first `width` bytes (big-endian) say how long the first input is."""
    cut = width + int.from_bytes(data[:width], "big")
    return data[width:cut], data[cut:]


def join(first: bytes, second: bytes, width: int = 1) -> bytes:
    """Return the one input `_split(…, width)` splits into `first` and `second` (for seeds)."""
    return len(first).to_bytes(width, "big") + first + second


def _text(data: bytes) -> str:
    """Return bytes as aiohttp and Python hand undecodable text over: UTF-8, invalid bytes kept as escapes."""
    return data.decode("utf-8", "surrogateescape")


@fuzz_target
def wire(data: bytes) -> None:
    from signaling.sessions import peek_seq
    from wire import CompactDecoder, WireError, decode_plain

    decoder = CompactDecoder()
    while data:
        packet, data = _split(data)
        peek_seq(packet)
        for decode in (decoder.decode, decode_plain):
            try:
                face = decode(packet)
            except WireError:
                continue
            values = np.concatenate([face.blendshapes, face.rotation, face.translation, [face.scale]])
            if not np.all(np.isfinite(values)) or face.scale <= 0:
                raise AssertionError(f"a decoded packet holds invalid coefficients: {face}")


def _signed(payload: bytes) -> str:
    """Return a JWT carrying `payload` as its claims, signed with SECRET (HS256)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(payload)
    signature = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


@fuzz_target
def token(data: bytes) -> None:
    from signaling.auth import AuthError, authorize, verify_token
    from signaling.errors import GatewayError

    raw, payload = _split(data, 2)
    for candidate in (_text(raw), _signed(payload)):
        for now in (None, 1.0e9):
            with contextlib.suppress(AuthError):
                verify_token(SECRET, candidate, now=now)
        try:
            authorize(SECRET, candidate, "send", "room", "target")
        except GatewayError as error:
            if error.status not in (401, 403):
                raise AssertionError(f"a token was refused with {error.status}") from error


@fuzz_target
def upload_headers(data: bytes) -> None:
    from signaling.auth import bearer_token
    from signaling.enrolment import container_suffix, parse_upload_offset
    from signaling.errors import GatewayError

    offset, rest = _split(data)
    authorization, head = _split(rest, 2)
    try:
        parsed = parse_upload_offset(_text(offset))
    except GatewayError as error:
        if error.status != 400:
            raise AssertionError(f"an Upload-Offset was refused with {error.status}") from error
    else:
        if parsed < 0:
            raise AssertionError(f"Upload-Offset {offset!r} parsed as {parsed}")
    bearer_token(_text(authorization))
    container_suffix(head)


@fuzz_target
def manifest(data: bytes) -> None:
    from inference.registry import RegistryError, TargetRegistry

    manifest_bytes, revoked_bytes = _split(data, 2)
    registry = TargetRegistry("memory://fuzz-registry")
    if registry.fs.exists("/fuzz-registry"):
        registry.fs.rm("/fuzz-registry", recursive=True)
    registry.fs.pipe("/fuzz-registry/targets/woman/20261203T000000/manifest.json", manifest_bytes)
    if revoked_bytes:
        registry.fs.pipe("/fuzz-registry/targets/woman/revoked.json", revoked_bytes)
    for read in (registry.ids, lambda: registry.state("woman"), lambda: registry.revocation("woman"),
                 lambda: registry.metadata("woman"), lambda: registry.load("woman")):  # fmt: skip
        with contextlib.suppress(RegistryError):
            read()


@fuzz_target
def tracks(data: bytes) -> None:
    from edge.errors import TrackingError
    from edge.tracks import MASKS_FILE, SUMMARY_FILE, TRACKS_FILE, load_tracks

    summary, rest = _split(data, 2)
    arrays, masks = _split(rest, 4)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / SUMMARY_FILE).write_bytes(summary)
        (Path(folder) / TRACKS_FILE).write_bytes(arrays)
        if masks:
            (Path(folder) / MASKS_FILE).write_bytes(masks)
        with contextlib.suppress(TrackingError):
            load_tracks(folder)


@fuzz_target
def job_progress(data: bytes) -> None:
    from training.jobs.errors import JobError
    from training.jobs.progress import JobProgress, progress_from_logs, read_progress

    record, logs = _split(data)
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(record)
        file.flush()
        with contextlib.suppress(JobError):
            read_progress(file.name)
    progress_from_logs(_text(logs))
    try:
        parsed = json.loads(record)
    except (ValueError, RecursionError):
        return
    if isinstance(parsed, dict):
        with contextlib.suppress(JobError):
            JobProgress.from_dict(parsed)
