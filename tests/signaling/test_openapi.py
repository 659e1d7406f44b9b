"""The gateway's OpenAPI description (signaling/openapi.yaml, served at /api/openapi.json) against the gateway.

The description names exactly the routes the gateway serves, with and without enrolment. Then schemathesis
generates requests from it, valid and malformed, and sends them to a real gateway on a TCP port: in front of
the real Serve app (local Ray, the test target "woman") for the live-session calls, and of the real
JobEnroller for the enrolment calls (its private Ray head starts only for a submitted job, which no generated
upload completes, so a progress call meets no cluster and is answered 404 or 503, as described). Every answer
must be one the description allows (status, content type, body schema), no request may cost a 500, and
malformed ones must be refused.

The requests carry a token of the right role, and the session calls name the room it is for and (half of
them) the enrolled target, so they reach the checks behind authorisation: the body, the SDP, the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

from headcast.enrolment import JobEnroller
from inference.serve_config import ServingConfig
from signaling.auth import mint_token
from signaling.config import EnrolmentConfig, GatewayConfig, LimitsConfig
from signaling.gateway import create_app, start_gateway
from signaling.openapi import openapi_document
from signaling.renderer import ServeRenderer

pytestmark = pytest.mark.slow

SECRET = b"o" * 32
ROOM = "room-api"
TARGET = "woman"  # the conftest target, enrolled in avatar_app's registry
EXAMPLES = 40  # per operation: enough to meet every refusal, bounded for CI
SERVICE_PATHS = ("/api/", "/healthz", "/metrics")  # the API; the pages (/send, /static/…) are not part of it
TOKENS = {
    "send": mint_token(SECRET, "bob", ROOM, "send", (TARGET,), max_sessions=1000),
    "view": mint_token(SECRET, "carol", ROOM, "view", (), max_sessions=1000),
    "enrol": mint_token(SECRET, "alice", "any-room", "enrol", ("*",)),
}


def served_routes(enrolment: bool, tmp_path: Path) -> set[tuple[str, str]]:
    """Return (method, path) of every API route a gateway serves (aiohttp's automatic HEADs left out)."""
    config = GatewayConfig(port=0, enrolment=EnrolmentConfig(uploads_dir=tmp_path / "uploads"))
    app = create_app(config, ServeRenderer("absent"), SECRET, JobEnroller(str(tmp_path)) if enrolment else None)
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    return {(method, path) for method, path in routes if method != "HEAD" and path.startswith(SERVICE_PATHS)}


def described_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}  # fmt: skip


@pytest.mark.parametrize("enrolment", [False, True], ids=["sessions only", "with enrolment"])
def test_the_description_names_exactly_the_routes_served(enrolment: bool, tmp_path: Path) -> None:
    document = openapi_document(enrolment)
    assert described_routes(document) == served_routes(enrolment, tmp_path)
    assert any(path.startswith("/api/uploads") for path in document["paths"]) is enrolment
    # It loads as OpenAPI: every operation is one schemathesis can generate requests for.
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.0 schema
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == len(described_routes(document))


@contextlib.contextmanager
def gateway_thread(config: GatewayConfig, renderer: ServeRenderer, enroller: JobEnroller | None) -> Iterator[str]:
    """Yield the URL of a gateway serving in a thread of its own (schemathesis' requests block)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(start_gateway(config, renderer, SECRET, enroller), loop).result(60)
    try:
        yield running.url
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def sessions_gateway(avatar_app: ServingConfig) -> Iterator[str]:
    """A gateway in front of the real Serve app."""
    config = GatewayConfig(port=0, limits=LimitsConfig(max_sdp_bytes=8192))
    with gateway_thread(config, ServeRenderer(avatar_app.app_name), None) as url:
        yield url


@pytest.fixture(scope="module")
def enrolment_gateway(enrolment_jobs: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway with the real JobEnroller and the module's private cache and registry."""
    settings = EnrolmentConfig(uploads_dir=tmp_path_factory.mktemp("uploads"), max_chunk_bytes=64 * 1024)
    config = GatewayConfig(port=0, limits=LimitsConfig(max_upload_bytes=512 * 1024), enrolment=settings)
    with gateway_thread(config, ServeRenderer("absent"), JobEnroller(enrolment_jobs)) as url:
        yield url


def served_schema(url: str) -> Any:
    """Return the description the gateway at `url` serves, as schemathesis loads it."""
    with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=30) as response:
        return schemathesis.openapi.from_dict(json.load(response), config=CONFIG)


def operation_ids(tag: str) -> list[str]:
    return [op["operationId"] for item in openapi_document(enrolment=True)["paths"].values()
            for op in item.values() if isinstance(op, dict) and tag in op.get("tags", ())]  # fmt: skip


def steer(case: Any) -> str:
    """Point a generated session call at the token's room and (for half of the offers) the enrolled target;
    return the role of the token it needs."""
    role = "send" if case.path.endswith("/send") else "view"
    case.path_parameters = {**(case.path_parameters or {}), "room": ROOM}
    if isinstance(case.body, dict) and "target" in case.body and len(json.dumps(case.body)) % 2 == 0:
        case.body["target"] = TARGET
    return role


# Schema-valid requests are refused too (a generated SDP is never a usable offer, a generated upload id
# names no upload): positive_data_acceptance cannot hold for this API and is left out; every other check runs.
EXCLUDED = [positive_data_acceptance]
# A malformed request may also be too large: 413 (documented for every operation with a body) rejects it too.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]}}}
)


def fuzz_operation(url: str, operation_id: str, role_of: Callable[[Any], str]) -> None:
    """Send EXAMPLES generated requests, valid and malformed, to one operation of the gateway at `url`; each
    answer must pass schemathesis' checks."""
    operation = served_schema(url).find_operation_by_id(operation_id)
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers_as_described(case: Any) -> None:
        token = TOKENS[role_of(case)]
        case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED)

    answers_as_described()


@pytest.mark.parametrize("operation_id", operation_ids("sessions"))
def test_session_calls_answer_as_described(operation_id: str, sessions_gateway: str) -> None:
    fuzz_operation(sessions_gateway, operation_id, steer)


@pytest.mark.parametrize("operation_id", operation_ids("enrolment"))
def test_enrolment_calls_answer_as_described(operation_id: str, enrolment_gateway: str) -> None:
    fuzz_operation(enrolment_gateway, operation_id, lambda case: "enrol")
