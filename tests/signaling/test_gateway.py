"""The gateway's HTTP contract (docs/live-protocol.md) on a real TCP port: every refusal answers the table's
status and code, is counted in /metrics, and costs no session; the configuration loads and checks itself.

None of these requests reaches the Serve app: they are refused before the target is looked up, or the
app is deliberately absent (503). Live sessions with the real app are in test_live_sessions.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from signaling.auth import mint_token
from signaling.config import GatewayConfig, LimitsConfig
from signaling.gateway import RunningGateway, start_gateway
from signaling.renderer import ServeRenderer

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"k" * 32
ROOM = "room-1"
MAX_SDP = 4096
CONFIG = GatewayConfig(port=0, limits=LimitsConfig(max_sdp_bytes=MAX_SDP))
# An offer's content does not matter to refusals made before the SDP is parsed.
OFFER: dict[str, Any] = {"sdp": "v=0\r\n", "type": "offer", "target": "woman"}


def offer(**fields: Any) -> dict[str, Any]:
    """Return OFFER with `fields` replaced."""
    return {**OFFER, **fields}


def token(role: str = "send", room: str = ROOM, targets: tuple[str, ...] = ("woman",), **kwargs: Any) -> str:
    """Return a token of SECRET (or kwargs' secret) for `role` in `room`."""
    secret = kwargs.pop("secret", SECRET)
    return mint_token(secret, "alice", room, role, targets, **kwargs)  # type: ignore[arg-type]


def with_gateway(test: Callable[[RunningGateway, aiohttp.ClientSession], Awaitable[None]]) -> None:
    """Run `test` against a fresh gateway (no Serve app named "absent" exists) and an HTTP client."""

    async def main() -> None:
        running = await start_gateway(CONFIG, ServeRenderer("absent"), SECRET)
        try:
            async with aiohttp.ClientSession(running.url) as client:
                await test(running, client)
        finally:
            await running.stop()

    asyncio.run(main())


async def post(client: aiohttp.ClientSession, path: str, body: Any, bearer: str | None) -> tuple[int, Any]:
    """Return (status, JSON body) of a POST with `body` (a str is sent as is)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    async with client.post(path, data=data, headers=headers) as response:
        return response.status, await response.json()


def metric(text: str, name: str, **labels: str) -> float:
    """Return the value of one sample in Prometheus text (0 when absent)."""
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


EXPIRED = token(ttl_s=10, now=time.time() - 100)
FORGED = token(secret=b"x" * 32)

# (what is wrong, method path, body, token) → (status, code)
REFUSALS: list[tuple[str, str, Any, str | None, int, str]] = [
    ("no token", "/api/rooms/room-1/send", OFFER, None, 401, "unauthorized"),
    ("garbage token", "/api/rooms/room-1/send", OFFER, "not.a.token", 401, "unauthorized"),
    ("forged token", "/api/rooms/room-1/send", OFFER, FORGED, 401, "unauthorized"),
    ("expired token", "/api/rooms/room-1/send", OFFER, EXPIRED, 401, "unauthorized"),
    ("viewer sends", "/api/rooms/room-1/send", OFFER, token("view"), 403, "forbidden"),
    ("sender views", "/api/rooms/room-1/view", OFFER, token("send"), 403, "forbidden"),
    ("viewer of another room", "/api/rooms/room-2/view", OFFER, token("view"), 403, "forbidden"),
    ("sender of another room", "/api/rooms/room-2/send", OFFER, token("send"), 403, "forbidden"),
    ("target not allowed", "/api/rooms/room-1/send", offer(target="bob"), token(), 403, "forbidden"),
    ("view a room without sender", "/api/rooms/room-1/view", OFFER, token("view"), 404, "unknown_room"),
    ("not JSON", "/api/rooms/room-1/send", "{sdp:", token(), 400, "bad_request"),
    ("JSON not an object", "/api/rooms/room-1/send", [1, 2], token(), 400, "bad_request"),
    ("no sdp", "/api/rooms/room-1/send", {"type": "offer", "target": "woman"}, token(), 400, "bad_request"),
    ("an answer", "/api/rooms/room-1/send", offer(type="answer"), token(), 400, "bad_request"),
    ("no target", "/api/rooms/room-1/send", {"sdp": "v=0", "type": "offer"}, token(), 400, "bad_request"),
    ("fps over max", "/api/rooms/room-1/send", offer(fps=61), token(), 400, "bad_request"),
    ("fps not int", "/api/rooms/room-1/send", offer(fps="25"), token(), 400, "bad_request"),
    ("background not rgb", "/api/rooms/room-1/send", offer(background=[1, 2]), token(), 400, "bad_request"),
    ("SDP over the limit", "/api/rooms/room-1/send", offer(sdp="a" * (MAX_SDP + 1)), token(), 413, "too_large"),
    ("body over the limit", "/api/rooms/room-1/view", "x" * (3 * MAX_SDP + 8192), token("view"), 413, "too_large"),
    ("Serve app absent", "/api/rooms/room-1/send", OFFER, token(), 503, "unavailable"),
]


def test_every_refusal_answers_its_status_and_code_and_is_counted() -> None:
    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        for what, path, body, bearer, status, code in REFUSALS:
            got_status, answer = await post(client, path, body, bearer)
            assert (got_status, answer["code"]) == (status, code), what
            assert isinstance(answer["error"], str) and answer["error"], what
        async with client.get("/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        for code in {refusal[5] for refusal in REFUSALS}:
            expected = sum(1 for refusal in REFUSALS if refusal[5] == code)
            assert metric(text, "headcast_gateway_refusals_total", code=code) == expected, code
        # Refused requests hold nothing: no session, no room, no reserved slot.
        assert metric(text, "headcast_gateway_sessions", role="send") == 0
        assert metric(text, "headcast_gateway_rooms") == 0
        assert not running.gateway.peers and not running.gateway.rooms

    with_gateway(test)


def test_a_session_slot_is_given_back_when_the_offer_fails() -> None:
    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        bearer = token(max_sessions=1)
        # The Serve app is absent: each attempt claims the token's only slot, fails with 503, and frees it.
        for _ in range(3):
            status, answer = await post(client, "/api/rooms/room-1/send", OFFER, bearer)
            assert (status, answer["code"]) == (503, "unavailable")

    with_gateway(test)


def test_room_reads_need_a_token_of_that_room() -> None:
    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        cases = [(None, 401, "unauthorized"), (token("view", room="room-2"), 403, "forbidden"),
                 (token("view"), 404, "unknown_room"), (token("send"), 404, "unknown_room")]  # fmt: skip
        for bearer, status, code in cases:
            params = {"token": bearer} if bearer else {}
            async with client.get("/api/rooms/room-1", params=params) as response:
                assert (response.status, (await response.json())["code"]) == (status, code)

    with_gateway(test)


def test_tokens_in_viewer_links_stay_out_of_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    secret_link = token("view")

    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        async with client.get("/api/rooms/room-1", params={"token": secret_link}) as response:
            assert response.status == 404

    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        with_gateway(test)
    logged = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /api/rooms/room-1" 404' in line for line in logged), logged
    assert not any(secret_link in line for line in logged)


def test_health_says_when_the_serve_app_is_down() -> None:
    async def test(running: RunningGateway, client: aiohttp.ClientSession) -> None:
        async with client.get("/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "serve": "down"}

    with_gateway(test)


def test_the_packaged_configuration_loads_and_checks_its_fields() -> None:
    config = GatewayConfig.load()
    assert (config.default_fps, config.limits.max_sdp_bytes, config.app_name) == (25, 32 * 1024, "avatar")
    assert GatewayConfig.load(port=9000).port == 9000
    with pytest.raises(ValidationError, match="default_fps"):
        GatewayConfig(default_fps=90, max_fps=60)
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({"no_such_field": 1})
