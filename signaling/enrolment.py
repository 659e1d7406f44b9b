"""Enrolment through the gateway: size-limited, resumable uploads and the enrolment jobs they start.

The browser's enrolment page (web/src/enrol.html) records 10-25 s of a person, uploads it here and
follows the job that turns it into a target. The protocol (an `enrol` token as `Authorization: Bearer`,
its subject being the owner of the new target) is a small subset of tus's ideas:

- `POST /api/uploads` `{"size": N, "sha256": "<hex>", "name": "<target id>"}` → `{"upload": id,
  "offset": 0, "chunk_bytes": C}`. 413 when N is over `limits.max_upload_bytes`, 400 for a bad name,
  403 when the token may not enrol that name or another owner has it, 429 with too many unfinished uploads.
- `PUT /api/uploads/{id}` with `Upload-Offset: K` and at most C bytes → `{"offset": K + bytes}`. A K
  that is not the stored offset is refused with 409 `{"code": "offset_mismatch", "offset": stored}`
  (also as the `Upload-Offset` header), so a client resumes from where the server stands.
  The bytes of a chunk whose connection drops half-way are kept: they are the next offset.
- `GET /api/uploads/{id}` → `{"upload", "offset", "size", "chunk_bytes", "job"}`: where to resume after a lost answer.
- `POST /api/uploads/{id}/enrol` `{"consent": true, "subject": "<who is recorded>"}` → `{"job": id}`,
  once all N bytes arrived and their sha256 is the declared one; the consent must be explicit. Sent
  again it answers the same job, so a client that lost the answer can simply retry.
- `GET /api/enrolments/{job}` → the job's `EnrolmentProgress` as JSON (the page polls it); 404 for a
  job that is not the bearer's, so job ids reveal nothing.
- `GET /enrol` → the page itself (its script and style come from the pages' /static/ route).

Uploads live in `enrolment.uploads_dir`, one folder each (`upload.json` and the recording), owned by
nobody but this module: a folder is removed once its job has finished, and an unfinished upload
after `upload_ttl_s` without a byte. The gateway never imports `training` (nor torch): the work is
done by an `Enroller` passed in (headcast/enrolment.py's `JobEnroller` runs Ray jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from base.files import sha256_of, write_atomic
from base.targets import TARGET_ID_RULE, is_target_id
from signaling.auth import Grant, authorize, bearer_token
from signaling.config import GatewayConfig
from signaling.errors import GatewayError
from signaling.pages import PAGE_HEADERS, WEB_DIR

log = logging.getLogger(__name__)

# inference.registry's rule for target ids, copied because importing the registry imports torch
# (tests/signaling/test_enrolment_api.py checks the two stay equal).
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # Ray submission ids; anything else cannot name a job
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_OFFSET = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() takes "²", which int() refuses
MAX_SUBJECT_CHARS = 200
META_FILE = "upload.json"
PART_FILE = "recording.part"
_READ_BYTES = 256 * 1024  # one read from the request stream: large enough to be cheap, small enough to stay responsive

T = TypeVar("T")
EnrolmentState = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True)
class EnrolmentProgress:
    """Where one enrolment job stands, as the page shows it (`GET /api/enrolments/{job}` answers its fields).

    job: the job id. state: queued, running, succeeded or failed. target: the target id being
    enrolled. owner: who submitted it (only they may see it). stage: what the job does now
    ("tracking, checking and fitting the recording", "fine-tuning" …). step, total: progress within
    the stage (total 0 while unknown). eta_s: seconds to the end of the stage, None while unknown.
    message: one human line (why it failed; the version it made).
    """

    job: str
    state: EnrolmentState
    target: str
    owner: str
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""

    @property
    def finished(self) -> bool:
        """Return whether the job has ended (succeeded or failed)."""
        return self.state in ("succeeded", "failed")


class Enroller(Protocol):
    """What starts and follows enrolment jobs (headcast/enrolment.py's JobEnroller; a fake in unit tests).

    Every method may raise GatewayError: 503 `unavailable` when the jobs' cluster cannot be reached,
    404 `unknown_job` from `progress` for an id it does not know.
    """

    async def owner_of(self, target_id: str) -> str | None:
        """Return the owner of the enrolled target `target_id`, None when no such target exists."""
        ...

    async def submit(self, video: Path, target_id: str, owner: str, consent_subject: str) -> str:
        """Return the id of a new job enrolling `video` as `target_id`; it reads `video` until it finishes."""
        ...

    async def progress(self, job_id: str) -> EnrolmentProgress:
        """Return the job's progress."""
        ...

    async def revoke(self, target_id: str, by: str, reason: str) -> dict[str, str]:
        """Revoke the enrolled target `target_id` (the registry's revocation record as JSON)."""
        ...


@dataclass(frozen=True)
class Upload:
    """One upload, as stored in its folder's upload.json.

    id: 32 hex digits. owner: the token subject that created it. target: the target id it enrols.
    size: bytes declared. sha256: their declared hash (hex). created_at: Unix seconds.
    recording: the file name of the completed recording, "" until the job is submitted. job: its id.
    """

    id: str
    owner: str
    target: str
    size: int
    sha256: str
    created_at: float
    recording: str = ""
    job: str = ""


class UploadStore:
    """Upload folders under one root: `<root>/<id>/upload.json` and the bytes received so far."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, upload_id: str) -> Path:
        """Return the folder of one upload."""
        return self.root / upload_id

    def part(self, upload: Upload) -> Path:
        """Return the file receiving the upload's bytes."""
        return self.folder(upload.id) / PART_FILE

    def create(self, owner: str, target: str, size: int, sha256: str) -> Upload:
        """Return a new, empty upload."""
        upload = Upload(uuid.uuid4().hex, owner, target, size, sha256, time.time())
        folder = self.folder(upload.id)
        folder.mkdir(parents=True, mode=0o700)
        self.part(upload).touch()
        self.save(upload)
        return upload

    def save(self, upload: Upload) -> None:
        """Write the upload's record atomically (a reader sees the old one or the new one)."""
        write_atomic(self.folder(upload.id) / META_FILE, json.dumps(asdict(upload)))

    def get(self, upload_id: str) -> Upload | None:
        """Return the upload with this id, None when there is none (or its record is unreadable)."""
        if not UPLOAD_ID.fullmatch(upload_id):
            return None
        try:
            return Upload(**json.loads((self.folder(upload_id) / META_FILE).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            log.warning("upload %s: unreadable record (%s); it will expire", upload_id, error)
            return None

    def all(self) -> list[Upload]:
        """Return every readable upload."""
        if not self.root.is_dir():
            return []
        found = (self.get(entry.name) for entry in self.root.iterdir() if entry.is_dir())
        return [upload for upload in found if upload is not None]

    def offset(self, upload: Upload) -> int:
        """Return how many bytes of the upload have arrived."""
        if upload.recording:
            return upload.size
        try:
            return self.part(upload).stat().st_size
        except FileNotFoundError:
            return 0

    def last_activity(self, upload_id: str) -> float:
        """Return the Unix time the upload last received bytes (or was created or submitted)."""
        folder = self.folder(upload_id)
        times = [path.stat().st_mtime for path in (folder, *folder.iterdir())] if folder.is_dir() else [0.0]
        return max(times)

    def delete(self, upload_id: str) -> None:
        """Remove the upload's folder and everything in it."""
        shutil.rmtree(self.folder(upload_id), ignore_errors=True)


def container_suffix(head: bytes) -> str:
    """Return a file suffix for a video whose first bytes are `head` (.webm, .mp4, else .video).

    Decoders probe the content anyway; the suffix is for whoever looks at the folder.
    """
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM and Matroska, what MediaRecorder writes
        return ".webm"
    if head[4:8] == b"ftyp":
        return ".mp4"
    return ".video"


class Enrolments:
    """The enrolment routes' state: the upload store, the enroller, uploads being written."""

    def __init__(self, config: GatewayConfig, secret: bytes, enroller: Enroller) -> None:
        self.config = config
        self.settings = config.enrolment
        self.secret = secret
        self.enroller = enroller
        self.store = UploadStore(self.settings.upload_folder())
        self._busy: set[str] = set()  # uploads with a PUT or an enrol request in flight: one at a time

    # ---------------------------------------------------------------------------------------------- routes

    async def page(self, request: web.Request) -> web.FileResponse:
        """Return the enrolment page (web/src/enrol.html)."""
        return web.FileResponse(
            WEB_DIR / "src" / "enrol.html", headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"}
        )

    async def create_upload(self, request: web.Request) -> web.Response:
        """Return a new upload's id, offset 0 and the largest chunk a PUT may carry."""
        grant = self._authorize(request)
        body = await _json_object(request, '{"size": N, "sha256": "<hex>", "name": "<target id>"}')
        size, sha256, name = body.get("size"), body.get("sha256"), body.get("name")
        limit = self.config.limits.max_upload_bytes
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise GatewayError(400, "bad_request", '"size" is the recording\'s length in bytes, a positive integer')
        if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256.lower()):
            raise GatewayError(400, "bad_request", '"sha256" is the recording\'s SHA-256 as 64 hex digits')
        if not is_target_id(name):
            raise GatewayError(400, "bad_request", f"{name!r} is not a valid target id: use {TARGET_ID_RULE}")
        if size > limit:  # after the form: a malformed request is malformed at any size
            raise GatewayError(
                413, "too_large", f"a recording may have {limit} bytes at most: record a shorter or smaller one"
            )
        await self._check_may_enrol(grant, name)
        pending = [u for u in self.store.all() if u.owner == grant.subject and not u.job]
        if len(pending) >= self.settings.max_pending_uploads:
            raise GatewayError(
                429, "too_many_uploads",
                f"{grant.subject!r} has {len(pending)} unfinished uploads: finish one, or wait "
                f"{self.settings.upload_ttl_s:g} s for it to expire",
            )  # fmt: skip
        upload = await asyncio.to_thread(self.store.create, grant.subject, name, size, sha256.lower())
        log.info("upload %s: %s enrols %s (%d bytes)", upload.id, grant.subject, name, size)
        return web.json_response(
            {"upload": upload.id, "offset": 0, "chunk_bytes": self.settings.max_chunk_bytes}, status=201
        )

    async def upload_status(self, request: web.Request) -> web.Response:
        """Return the upload's offset (bytes stored), size and job: where a client resumes."""
        upload = self._upload(request, self._authorize(request))
        return web.json_response(
            {
                "upload": upload.id,
                "offset": self.store.offset(upload),
                "size": upload.size,
                "chunk_bytes": self.settings.max_chunk_bytes,
                "job": upload.job or None,
            }
        )

    async def upload_chunk(self, request: web.Request) -> web.Response:
        """Return the offset after appending the request's body at `Upload-Offset` (409 at any other offset)."""
        upload = self._upload(request, self._authorize(request))
        offset = self.store.offset(upload)
        claimed = parse_upload_offset(request.headers.get("Upload-Offset"))
        if upload.job:
            return _conflict("upload_complete", "this upload is complete and enrolling: follow its job", offset)
        if upload.id in self._busy:
            return _conflict("upload_busy", "another request is writing this upload: wait for it, then resume", offset)
        if claimed != offset:
            return _conflict(
                "offset_mismatch", f"the server has {offset} bytes of this upload: send from offset {offset}", offset
            )
        room = min(self.settings.max_chunk_bytes, upload.size - offset)
        if request.content_length is not None and request.content_length > room:
            raise GatewayError(413, "too_large", _chunk_limit(room, offset, upload.size))
        self._busy.add(upload.id)
        try:
            written = await self._append(request, upload, offset, room)
        finally:
            self._busy.discard(upload.id)
        return web.json_response({"offset": offset + written, "size": upload.size})

    async def enrol(self, request: web.Request) -> web.Response:
        """Return the job enrolling a complete upload, after checking its hash and the subject's consent."""
        grant = self._authorize(request)
        upload = self._upload(request, grant)
        body = await _json_object(request, '{"consent": true, "subject": "<who is recorded>"}')
        if body.get("consent") is not True:
            raise GatewayError(
                400, "consent_required", 'the recorded person must consent to being enrolled: send "consent": true'
            )
        subject = body.get("subject", grant.subject)
        if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_CHARS:
            raise GatewayError(
                400, "bad_request", f'"subject" names the recorded person (1-{MAX_SUBJECT_CHARS} characters)'
            )
        if upload.job:
            return web.json_response({"job": upload.job})  # a retry whose first answer was lost
        offset = self.store.offset(upload)
        if upload.id in self._busy:
            return _conflict("upload_busy", "this upload is being written or submitted: retry in a moment", offset)
        if offset != upload.size:
            message = f"{offset} of {upload.size} bytes arrived: send the rest from offset {offset}"
            return _conflict("upload_incomplete", message, offset)
        self._busy.add(upload.id)
        try:
            job = await self._submit(upload, subject.strip())
        finally:
            self._busy.discard(upload.id)
        return web.json_response({"job": job}, status=201)

    async def progress(self, request: web.Request) -> web.Response:
        """Return an enrolment job's progress (404 for jobs of other owners); its upload goes once it ended."""
        grant = self._authorize(request)
        job_id = request.match_info["job"]
        unknown = GatewayError(404, "unknown_job", f"no enrolment job {job_id!r} of yours: check the id")
        if not JOB_ID.fullmatch(job_id):
            raise unknown
        progress = await self._ask(self.enroller.progress(job_id))
        if progress.owner != grant.subject:
            raise unknown
        if progress.finished:
            for upload in self.store.all():
                if upload.job == job_id:
                    await asyncio.to_thread(self.store.delete, upload.id)
        return web.json_response(asdict(progress))

    async def revoke(self, request: web.Request) -> web.Response:
        """Revoke a target for its owner: live sessions driving it end, new ones are refused (the owner's call)."""
        grant = self._authorize(request)
        target_id = request.match_info["target"]
        body = await _json_object(request, '{"reason": "<why, shown to the sessions it ends>"}')
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_SUBJECT_CHARS:
            raise GatewayError(400, "bad_request", f'"reason" is text of at most {MAX_SUBJECT_CHARS} characters')
        if not is_target_id(target_id):
            raise GatewayError(404, "unknown_target", f"no target {target_id!r} is enrolled")
        owner = await self._ask(self.enroller.owner_of(target_id))
        if owner is None:
            raise GatewayError(404, "unknown_target", f"no target {target_id!r} is enrolled")
        if owner != grant.subject:
            raise GatewayError(403, "forbidden", f"only the owner of {target_id!r} may revoke it")
        revocation = await self._ask(self.enroller.revoke(target_id, grant.subject, reason.strip()))
        log.info("target %s revoked by its owner %s", target_id, grant.subject)
        return web.json_response(revocation)

    # --------------------------------------------------------------------------------------------- helpers

    def _authorize(self, request: web.Request) -> Grant:
        """Return the grant of the request's bearer token after checking it is an enrol token (401, 403)."""
        return authorize(self.secret, bearer_token(request.headers.get("Authorization")), "enrol", None)

    async def _check_may_enrol(self, grant: Grant, target_id: str) -> None:
        """Raise 403 unless the token names `target_id` (or '*') and the target is new or the bearer's own."""
        if not grant.may_drive(target_id):
            raise GatewayError(
                403, "forbidden", f"this token does not allow enrolling {target_id!r}: ask for one minted with "
                f"--target {target_id} (or '*')",
            )  # fmt: skip
        await self._check_owner(target_id, grant.subject)

    def _upload(self, request: web.Request, grant: Grant) -> Upload:
        """Return the request's upload; 404 when there is none of the bearer's (others' ids reveal nothing)."""
        upload_id = request.match_info["upload"]
        upload = self.store.get(upload_id)
        if upload is None or upload.owner != grant.subject:
            raise GatewayError(404, "unknown_upload", f"no upload {upload_id!r} of yours: start a new one")
        return upload

    async def _append(self, request: web.Request, upload: Upload, offset: int, room: int) -> int:
        """Return the bytes of the request's body appended to the upload (at most `room`; 413 above it)."""
        written = 0
        # Plain blocking writes: each is at most _READ_BYTES into the page cache, far below a frame's time.
        with self.store.part(upload).open("ab") as stream:
            try:
                async for block in request.content.iter_chunked(_READ_BYTES):
                    if written + len(block) > room:
                        # A body without Content-Length that turns out too long: none of it counts.
                        stream.truncate(offset)
                        raise GatewayError(413, "too_large", _chunk_limit(room, offset, upload.size))
                    stream.write(block)
                    written += len(block)
            except (ConnectionError, HttpProcessingError) as error:
                # The client is gone and will not read an answer; what arrived is kept: it resumes there (GET).
                log.info("upload %s: connection lost at offset %d (%r)", upload.id, offset + written, error)
        return written

    async def _submit(self, upload: Upload, subject: str) -> str:
        """Return the job enrolling the complete upload, once its hash is verified (the recording renamed for it)."""
        part = self.store.part(upload)
        digest = await asyncio.to_thread(sha256_of, part)
        if digest != upload.sha256:
            part.write_bytes(b"")  # the bytes are not what was declared; they are of no use to a resume either
            raise GatewayError(
                400, "checksum_mismatch", f"the uploaded bytes' SHA-256 is {digest}, not the declared {upload.sha256}: "
                "upload the recording again from offset 0",
            )  # fmt: skip
        # Checked again: someone else may have enrolled the name while this recording was uploading.
        await self._check_owner(upload.target, upload.owner)
        with part.open("rb") as stream:
            recording = part.with_name("recording" + container_suffix(stream.read(16)))
        part.replace(recording)
        self.store.save(replace(upload, recording=recording.name))
        try:
            job = await self.enroller.submit(recording.resolve(), upload.target, upload.owner, subject)
        except BaseException:
            recording.replace(part)  # not submitted: the upload stays complete and can be enrolled again
            self.store.save(upload)
            raise
        self.store.save(replace(upload, recording=recording.name, job=job))
        log.info("upload %s: job %s enrols %s for %s (consent of %r)", upload.id, job, upload.target, upload.owner,
                 subject)  # fmt: skip
        return job

    async def _check_owner(self, target_id: str, subject: str) -> None:
        """Raise 403 when `target_id` is enrolled already and owned by someone other than `subject`."""
        owner = await self._ask(self.enroller.owner_of(target_id))
        # A new version of someone else's target would make `subject` its owner: take its likeness away.
        if owner is not None and owner != subject:
            raise GatewayError(403, "forbidden", f"target {target_id!r} belongs to someone else: choose another name")

    async def _ask(self, call: Awaitable[T]) -> T:
        """Return what an enroller call returns within `enroller_timeout_s` (503 unavailable after)."""
        try:
            async with asyncio.timeout(self.settings.enroller_timeout_s):  # keeps a cancellation (wait_for may not)
                return await call
        except TimeoutError:
            raise GatewayError(
                503, "unavailable", f"the enrolment jobs did not answer within {self.settings.enroller_timeout_s:g} s"
            ) from None

    async def sweep(self) -> None:
        """Remove the uploads of finished jobs and the unfinished ones that expired (once)."""
        now = time.time()
        for upload in self.store.all():
            if upload.job:
                try:
                    ended = (await self._ask(self.enroller.progress(upload.job))).finished
                except GatewayError as error:
                    ended = error.code == "unknown_job"  # the cluster forgot it (restarted): nothing reads it
                if ended:
                    self.store.delete(upload.id)
            elif upload.id not in self._busy and now - self.store.last_activity(upload.id) > self.settings.upload_ttl_s:
                log.info("upload %s of %s expired at offset %d", upload.id, upload.owner, self.store.offset(upload))
                self.store.delete(upload.id)

    async def sweep_forever(self) -> None:
        """Sweep every `sweep_interval_s` while the app serves."""
        while True:
            try:
                await self.sweep()
            except OSError as error:  # e.g. the uploads folder vanished; the next sweep tries again
                log.warning("sweeping uploads failed: %r", error)
            await asyncio.sleep(self.settings.sweep_interval_s)


def parse_upload_offset(value: str | None) -> int:
    """Return the byte offset an `Upload-Offset` header value names; 400 unless it is ASCII decimal digits."""
    if value is None or not UPLOAD_OFFSET.fullmatch(value):
        raise GatewayError(400, "bad_request", "a chunk says where it starts: header Upload-Offset: <bytes>")
    return int(value)


def _chunk_limit(room: int, offset: int, size: int) -> str:
    return (
        f"this chunk may carry {room} bytes at most (the chunk limit, and {size - offset} bytes are "
        f"left of the declared {size}): send smaller chunks"
    )


def _conflict(code: str, message: str, offset: int) -> web.Response:
    """Return a 409 that carries the stored offset (body and Upload-Offset header), so the client resumes."""
    return web.json_response(
        {"error": message, "code": code, "offset": offset}, status=409, headers={"Upload-Offset": str(offset)}
    )


async def _json_object(request: web.Request, shape: str) -> dict[str, Any]:
    """Return the request's JSON object body; 400 (saying `shape`) for anything else, 413 when too long."""
    try:
        raw = await request.read()  # bounded by the app's client_max_size
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError(413, "too_large", f"the body is too long; send {shape}") from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "bad_request", f"the body must be JSON: {shape}")
    return body


ENROLMENTS_KEY = web.AppKey("enrolments", Enrolments)


def add_enrolment_routes(
    app: web.Application, config: GatewayConfig, secret: bytes, enroller: Enroller | None = None
) -> None:
    """Add the enrolment routes (the page, uploads, jobs) to the gateway's application; none without an enroller."""
    if enroller is None:
        return
    enrolments = Enrolments(config, secret, enroller)
    app[ENROLMENTS_KEY] = enrolments
    app.router.add_get("/enrol", enrolments.page)
    app.router.add_post("/api/uploads", enrolments.create_upload)
    app.router.add_get("/api/uploads/{upload}", enrolments.upload_status)
    app.router.add_put("/api/uploads/{upload}", enrolments.upload_chunk)
    app.router.add_post("/api/uploads/{upload}/enrol", enrolments.enrol)
    app.router.add_get("/api/enrolments/{job}", enrolments.progress)
    app.router.add_post("/api/targets/{target}/revoke", enrolments.revoke)
    sweeper: list[asyncio.Task[None]] = []

    async def start_sweeping(app: web.Application) -> None:
        sweeper.append(asyncio.create_task(enrolments.sweep_forever()))

    async def stop_sweeping(app: web.Application) -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(start_sweeping)
    app.on_shutdown.append(stop_sweeping)
