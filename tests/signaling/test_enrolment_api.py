"""The enrolment upload protocol (signaling/enrolment.py) on a real gateway with the real JobEnroller.

Refusals answer their status and code; an upload interrupted mid-chunk keeps what arrived and resumes
from the server's offset after a 409; a recording whose bytes do not hash to the declared SHA-256 is
refused; consent must be explicit; a submitted job (a real Ray job on a private local head) is visible
to its owner only until it ends, and then its upload is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from headcast.enrolment import JobEnroller
from signaling.auth import mint_token
from signaling.config import EnrolmentConfig, GatewayConfig, LimitsConfig
from signaling.enrolment import ENROLMENTS_KEY, Enrolments
from signaling.gateway import RunningGateway, start_gateway
from signaling.renderer import ServeRenderer

SECRET = b"e" * 32
CHUNK = 64 * 1024  # the smallest chunk limit the configuration allows: several chunks for a small recording
MAX_UPLOAD = 512 * 1024


def token(subject: str = "alice", role: str = "enrol", targets: tuple[str, ...] = ("*",)) -> str:
    """Return an enrol token of SECRET (the room plays no part in enrolment)."""
    return mint_token(SECRET, subject, "any-room", role, targets)  # type: ignore[arg-type]


ALICE = token()
BOB = token("bob")


def config(uploads: Path, **enrolment: Any) -> GatewayConfig:
    """Return a gateway configuration on a free port, uploads in `uploads`, small chunk and upload limits."""
    settings = EnrolmentConfig(uploads_dir=uploads, max_chunk_bytes=CHUNK, **enrolment)
    return GatewayConfig(port=0, limits=LimitsConfig(max_upload_bytes=MAX_UPLOAD), enrolment=settings)


def with_gateway(
    gateway_config: GatewayConfig,
    enroller: JobEnroller,
    test: Callable[[RunningGateway, aiohttp.ClientSession], Awaitable[None]],
) -> None:
    """Run `test` against a fresh gateway (no Serve app: enrolment does not need one) and an HTTP client."""

    async def main() -> None:
        running = await start_gateway(gateway_config, ServeRenderer("absent"), SECRET, enroller)
        try:
            async with aiohttp.ClientSession(running.url) as client:
                await test(running, client)
        finally:
            await running.stop()

    asyncio.run(main())


async def call(
    client: aiohttp.ClientSession,
    method: str,
    path: str,
    bearer: str | None = ALICE,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """Return (status, JSON answer, headers) of one request; a dict body is sent as JSON, bytes as they are."""
    sent = dict(headers or {})
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    data = json.dumps(body) if isinstance(body, dict | list) else body
    async with client.request(method, path, data=data, headers=sent) as response:
        return response.status, await response.json(), response.headers


async def new_upload(client: aiohttp.ClientSession, data: bytes, name: str = "woman", sha256: str | None = None) -> str:
    status, answer, _ = await call(client, "POST", "/api/uploads", body={
        "size": len(data), "sha256": sha256 or hashlib.sha256(data).hexdigest(), "name": name})  # fmt: skip
    assert status == 201 and answer["offset"] == 0 and answer["chunk_bytes"] == CHUNK, answer
    return str(answer["upload"])


async def put(client: aiohttp.ClientSession, upload: str, offset: int, chunk: bytes) -> tuple[int, Any]:
    status, answer, _ = await call(client, "PUT", f"/api/uploads/{upload}", body=chunk,
                                   headers={"Upload-Offset": str(offset)})  # fmt: skip
    return status, answer


async def put_all(client: aiohttp.ClientSession, upload: str, data: bytes, offset: int = 0) -> None:
    while offset < len(data):
        status, answer = await put(client, upload, offset, data[offset : offset + CHUNK])
        assert status == 200, answer
        offset = answer["offset"]


async def drop_mid_chunk(url: str, upload: str, offset: int, chunk: bytes, sent: int) -> None:
    """Send a PUT announcing `chunk` but only its first `sent` bytes, then vanish (a dropped connection)."""
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = (f"PUT /api/uploads/{upload} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE}\r\n"
            f"Upload-Offset: {offset}\r\nContent-Length: {len(chunk)}\r\n\r\n")  # fmt: skip
    writer.write(head.encode() + chunk[:sent])
    await writer.drain()
    writer.transport.abort()  # no FIN handshake: a connection that just dies


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


def test_refusals_answer_their_status_and_code(enrolment_jobs: str, tmp_path: Path) -> None:
    enrolled_by_carol(enrolment_jobs, "carol-target")
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    good = {"size": len(data), "sha256": sha, "name": "woman"}

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        refusals: list[tuple[str, str, str, str | None, Any, int, str]] = [
            ("no token", "POST", "/api/uploads", None, good, 401, "unauthorized"),
            ("garbage token", "POST", "/api/uploads", "x.y.z", good, 401, "unauthorized"),
            ("forged token", "POST", "/api/uploads", mint_token(b"f" * 32, "alice", "r", "enrol", ("*",)), good,
             401, "unauthorized"),
            ("a send token", "POST", "/api/uploads", token(role="send"), good, 403, "forbidden"),
            ("a view token", "POST", "/api/uploads", token(role="view"), good, 403, "forbidden"),
            ("over the size limit", "POST", "/api/uploads", ALICE, {**good, "size": MAX_UPLOAD + 1}, 413, "too_large"),
            ("empty", "POST", "/api/uploads", ALICE, {**good, "size": 0}, 400, "bad_request"),
            ("size not an int", "POST", "/api/uploads", ALICE, {**good, "size": "10"}, 400, "bad_request"),
            ("not a sha256", "POST", "/api/uploads", ALICE, {**good, "sha256": "abc"}, 400, "bad_request"),
            ("a path as name", "POST", "/api/uploads", ALICE, {**good, "name": "../x"}, 400, "bad_request"),
            ("upper case name", "POST", "/api/uploads", ALICE, {**good, "name": "Woman"}, 400, "bad_request"),
            ("not JSON", "POST", "/api/uploads", ALICE, b"{size:", 400, "bad_request"),
            ("name not in the token", "POST", "/api/uploads", token(targets=("man",)), good, 403, "forbidden"),
            ("someone else's target", "POST", "/api/uploads", ALICE, {**good, "name": "carol-target"}, 403,
             "forbidden"),
            ("unknown upload", "GET", "/api/uploads/0123456789abcdef0123456789abcdef", ALICE, None, 404,
             "unknown_upload"),
            ("not an upload id", "PUT", "/api/uploads/not-an-id", ALICE, b"x", 404, "unknown_upload"),
            ("unknown job", "GET", "/api/enrolments/headcast-enrol-woman-12345678", ALICE, None, 404, "unknown_job"),
            ("not a job id", "GET", "/api/enrolments/a.b", ALICE, None, 404, "unknown_job"),
        ]  # fmt: skip
        for what, method, path, bearer, body, status, code in refusals:
            got, answer, _ = await call(client, method, path, bearer, body)
            assert (got, answer["code"]) == (status, code), (what, answer)
            assert answer["error"], what
        assert not list((tmp_path / "uploads").glob("*")), "a refused request left an upload behind"
        # Carol may enrol a new version of her own target.
        status, _, _ = await call(client, "POST", "/api/uploads", token("carol"), {**good, "name": "carol-target"})
        assert status == 201
        # Unfinished uploads per subject are limited (2 here); Carol's one does not count against Alice.
        for _ in range(2):
            await new_upload(client, data)
        status, answer, _ = await call(client, "POST", "/api/uploads", ALICE, good)
        assert (status, answer["code"]) == (429, "too_many_uploads")

    with_gateway(config(tmp_path / "uploads"), JobEnroller(enrolment_jobs), test)


def test_an_interrupted_upload_resumes_at_the_servers_offset(enrolment_jobs: str, tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 1234)

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        upload = await new_upload(client, data)
        status, answer = await put(client, upload, 0, data[:CHUNK])
        assert (status, answer["offset"]) == (200, CHUNK)
        # The connection drops 20 000 bytes into the second chunk: those bytes are kept.
        await drop_mid_chunk(running.url, upload, CHUNK, data[CHUNK : 2 * CHUNK], 20_000)

        async def stored() -> bool:
            _, answer, _ = await call(client, "GET", f"/api/uploads/{upload}")
            return bool(answer["offset"] == CHUNK + 20_000)

        await until(stored, 5, "the bytes before the drop to be stored")
        # A client that thinks the second chunk never arrived is told where the server stands.
        status, answer, headers = await call(client, "PUT", f"/api/uploads/{upload}", body=data[CHUNK : 2 * CHUNK],
                                             headers={"Upload-Offset": str(CHUNK)})  # fmt: skip
        assert (status, answer["code"], answer["offset"]) == (409, "offset_mismatch", CHUNK + 20_000)
        assert headers["Upload-Offset"] == str(CHUNK + 20_000)
        offset = answer["offset"]
        status, answer = await put(client, upload, offset, data[offset : offset + CHUNK + 1])
        assert (status, answer["code"]) == (413, "too_large"), "a chunk over max_chunk_bytes"
        status, answer, _ = await call(client, "PUT", f"/api/uploads/{upload}", body=b"x")
        assert (status, answer["code"]) == (400, "bad_request"), "a chunk without Upload-Offset"
        # Digits only ASCII ones: "²" passes str.isdigit() but not int() (it cost a 500 before fuzzing found it).
        for digits in ("²", "١٢"):  # sent as UTF-8, read back as UTF-8
            status, answer, _ = await call(client, "PUT", f"/api/uploads/{upload}", body=b"x",
                                           headers={"Upload-Offset": digits})  # fmt: skip
            assert (status, answer["code"]) == (400, "bad_request"), f"Upload-Offset: {digits}"
        status, answer, _ = await call(client, "PUT", f"/api/uploads/{upload}", BOB, b"x", {"Upload-Offset": "0"})
        assert (status, answer["code"]) == (404, "unknown_upload"), "Bob writes to Alice's upload"
        status, answer, _ = await call(client, "POST", f"/api/uploads/{upload}/enrol", body={"consent": True})
        assert (status, answer["code"], answer["offset"]) == (409, "upload_incomplete", offset)
        await put_all(client, upload, data, offset)
        status, answer = await put(client, upload, len(data), b"more")
        assert (status, answer["code"]) == (413, "too_large"), "bytes beyond the declared size"
        status, answer, _ = await call(client, "GET", f"/api/uploads/{upload}")
        assert (answer["offset"], answer["size"], answer["job"]) == (len(data), len(data), None)
        stored_bytes = (tmp_path / "uploads" / upload / "recording.part").read_bytes()
        assert stored_bytes == data

    with_gateway(config(tmp_path / "uploads"), JobEnroller(enrolment_jobs), test)


def test_a_recording_that_is_not_what_was_declared_is_refused(enrolment_jobs: str, tmp_path: Path) -> None:
    data = os.urandom(CHUNK + 10)

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        upload = await new_upload(client, data, sha256=hashlib.sha256(b"another recording").hexdigest())
        await put_all(client, upload, data)
        status, answer, _ = await call(client, "POST", f"/api/uploads/{upload}/enrol", body={"consent": True})
        assert (status, answer["code"]) == (400, "checksum_mismatch")
        status, answer, _ = await call(client, "GET", f"/api/uploads/{upload}")
        assert (answer["offset"], answer["job"]) == (0, None), "the upload starts over"

    with_gateway(config(tmp_path / "uploads"), JobEnroller(enrolment_jobs), test)


def test_a_job_starts_only_with_consent_and_only_its_owner_follows_it_to_the_end(
    enrolment_jobs: str, tmp_path: Path
) -> None:
    """Random bytes are no video: the real enrolment job refuses them at its first stage (a few seconds), which
    is what this protocol test needs — a job that runs and ends. The browser test enrols a real recording."""
    data = os.urandom(2 * CHUNK)

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        upload = await new_upload(client, data, "noise")
        await put_all(client, upload, data)
        path = f"/api/uploads/{upload}/enrol"
        for body in ({}, {"consent": False}, {"consent": "yes"}, {"subject": "Alice"}):
            status, answer, _ = await call(client, "POST", path, body=body)
            assert (status, answer["code"]) == (400, "consent_required"), body
        status, answer, _ = await call(client, "POST", path, body={"consent": True, "subject": " "})
        assert (status, answer["code"]) == (400, "bad_request"), "a blank subject"
        status, answer, _ = await call(client, "POST", path, body={"consent": True, "subject": "Alice A."})
        assert status == 201, answer
        job = answer["job"]
        status, again, _ = await call(client, "POST", path, body={"consent": True, "subject": "Alice A."})
        assert (status, again["job"]) == (200, job), "a retried enrol answers the same job"
        status, answer, _ = await call(client, "GET", f"/api/enrolments/{job}", BOB)
        assert (status, answer["code"]) == (404, "unknown_job"), "Bob sees nothing of Alice's job"
        seen: list[dict[str, Any]] = []

        async def ended() -> bool:
            status, answer, _ = await call(client, "GET", f"/api/enrolments/{job}")
            assert status == 200, answer
            seen.append(answer)
            return answer["state"] in ("succeeded", "failed")

        await until(ended, 120, "the enrolment job to end")
        final = seen[-1]
        assert (final["state"], final["target"], final["owner"], final["job"]) == ("failed", "noise", "alice", job)
        # The job's own refusal, in words for the page: not a traceback, and no server path.
        assert "not a video" in final["message"] and str(tmp_path) not in final["message"], final["message"]
        assert {s["state"] for s in seen} <= {"queued", "running", "failed"}
        assert not (tmp_path / "uploads" / upload).exists(), "the upload of a finished job is removed"
        status, answer, _ = await call(client, "GET", f"/api/uploads/{upload}")
        assert status == 404
        status, answer, _ = await call(client, "GET", "/api/enrolments/headcast-enrol-noise-00000000")
        assert (status, answer["code"]) == (404, "unknown_job"), "an id the running head does not know"

    with_gateway(config(tmp_path / "uploads"), JobEnroller(enrolment_jobs, profile="tiny-ci", steps=2), test)


def test_expired_uploads_are_swept(enrolment_jobs: str, tmp_path: Path) -> None:
    data = os.urandom(100)

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        enrolments: Enrolments = running.runner.app[ENROLMENTS_KEY]
        upload = await new_upload(client, data)
        await enrolments.sweep()
        folder = tmp_path / "uploads" / upload
        assert folder.is_dir(), "fresh: kept"
        # Idle for longer than upload_ttl_s: its files last changed before that (no waiting for a clock).
        idle_since = time.time() - 120
        for path in (folder, *folder.iterdir()):
            os.utime(path, (idle_since, idle_since))
        await enrolments.sweep()
        assert not folder.exists(), "idle longer than upload_ttl_s: removed"
        status, answer, _ = await call(client, "GET", f"/api/uploads/{upload}")
        assert (status, answer["code"]) == (404, "unknown_upload")

    with_gateway(config(tmp_path / "uploads", upload_ttl_s=60), JobEnroller(enrolment_jobs), test)


def enrolled_by_carol(registry_root: str, target_id: str) -> None:
    """Commit a manifest-only version of `target_id` owned by carol: all that ownership checks read."""
    from inference.registry import BUNDLE_FORMAT_VERSION, MANIFEST

    folder = Path(registry_root) / "targets" / target_id / "20260101T000000000000Z-00000000"
    folder.mkdir(parents=True)
    consent = {"subject": "Carol", "recorded_at": "2026-01-01T00:00:00+00:00", "recording_sha256": "0" * 64}
    metadata = {"target_id": target_id, "owner": "carol", "consent": consent, "model_size": "tiny"}
    (folder / MANIFEST).write_text(json.dumps({"format_version": BUNDLE_FORMAT_VERSION, "metadata": metadata}))


def test_only_the_owner_revokes_a_target_through_the_api(avatar_bundle: Any, tmp_path: Path) -> None:
    from inference.registry import TargetRegistry

    registry = TargetRegistry(str(tmp_path / "registry"))
    registry.save(avatar_bundle)
    owner = token(avatar_bundle.metadata.owner)

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        path = "/api/targets/woman/revoke"
        assert (await call(client, "POST", path, None, {}))[0] == 401
        assert (await call(client, "POST", path, token("mallory", "view"), {}))[0] == 403  # not an enrol token
        status, answer, _ = await call(client, "POST", path, BOB, {"reason": "I say so"})
        assert (status, answer["code"]) == (403, "forbidden") and registry.state("woman") == "enrolled"
        status, answer, _ = await call(client, "POST", "/api/targets/nobody/revoke", owner, {})
        assert (status, answer["code"]) == (404, "unknown_target")
        assert (await call(client, "POST", path, owner, {"reason": 7}))[0] == 400
        status, answer, _ = await call(client, "POST", path, owner, {"reason": "consent withdrawn"})
        assert status == 200 and (answer["by"], answer["reason"]) == (avatar_bundle.metadata.owner, "consent withdrawn")
        assert registry.state("woman") == "revoked"

    with_gateway(config(tmp_path / "uploads"), JobEnroller(registry.root), test)
