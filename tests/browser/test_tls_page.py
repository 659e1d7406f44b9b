"""The pages over HTTPS in Chromium, and a page of another origin refused by the gateway's API.

The gateway serves a throwaway CA's certificate for the host name `avatar.test`, which Chromium resolves
to loopback (--host-resolver-rules). Chromium trusts exactly that certificate's key
(--ignore-certificate-errors-spki-list, not a blanket "ignore errors"). Over plain HTTP the same name is
not a secure context, so a page there gets no camera: TLS is what makes the pages usable off localhost.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families

from signaling.auth import mint_token
from signaling.config import GatewayConfig
from signaling.gateway import RunningGateway, start_gateway
from signaling.renderer import ServeRenderer

pytestmark = pytest.mark.slow

SECRET = b"k" * 32
HOST = "avatar.test"
ROOM = "nobody-here"  # no Serve app runs: the pages get as far as the gateway's answer for an empty room


@dataclass(frozen=True)
class Servers:
    """The HTTPS gateway, a plain-HTTP page of another origin, and the SPKI hash Chromium is told to trust."""

    gateway: RunningGateway
    https_url: str  # the gateway as https://avatar.test:<port>
    foreign_url: str  # http://127.0.0.1:<port>/, another origin
    spki: str


def spki_sha256(cert_pem: bytes) -> str:
    """Return base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's SPKI list takes."""
    spki = (
        x509.load_pem_x509_certificate(cert_pem)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def _foreign_page(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>another site</title><p>another site</p>", content_type="text/html")


@pytest.fixture(scope="module")
def servers(server_thread: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("tls")
    leaf = trustme.CA().issue_cert(HOST)
    cert, key = folder / "cert.pem", folder / "key.pem"
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    config = GatewayConfig(port=0, tls_cert=cert, tls_key=key)
    gateway = server_thread.call(start_gateway(config, ServeRenderer("absent"), SECRET))
    foreign = web.Application()
    foreign.router.add_get("/", _foreign_page)
    foreign_runner = web.AppRunner(foreign)
    server_thread.call(foreign_runner.setup())
    server_thread.call(web.TCPSite(foreign_runner, "127.0.0.1", 0).start())
    foreign_url = f"http://127.0.0.1:{foreign_runner.addresses[0][1]}"
    port = gateway.url.rsplit(":", 1)[1]
    try:
        spki = spki_sha256(leaf.cert_chain_pems[0].bytes())
        yield Servers(gateway, f"https://{HOST}:{port}", f"{foreign_url}/", spki)
    finally:
        server_thread.call(foreign_runner.cleanup())
        server_thread.call(gateway.stop())


@pytest.fixture(scope="module")
def tls_browser(chromium: tuple[str, tuple[str, ...]], servers: Servers) -> Iterator[Any]:
    """Chromium resolving avatar.test to loopback and trusting the gateway's certificate key only."""
    from playwright.sync_api import sync_playwright

    path, args = chromium
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            args=[*args, f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
                  f"--ignore-certificate-errors-spki-list={servers.spki}"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


def refusals(servers: Servers, server_thread: Any, code: str) -> float:
    """Return the gateway's count of refusals with `code`."""

    async def exposition() -> bytes:
        return servers.gateway.gateway.metrics.exposition()

    text = server_thread.call(exposition()).decode()
    values = [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
              if sample.name == "headcast_gateway_refusals_total" and sample.labels == {"code": code}]  # fmt: skip
    return values[0] if values else 0.0


def test_the_pages_run_over_https_as_a_secure_context(tls_browser: Any, servers: Servers) -> None:
    tab = tls_browser.new_context().new_page()
    try:
        viewer = mint_token(SECRET, "bob", ROOM, "view", ("woman",))
        response = tab.goto(f"{servers.https_url}/view?room={ROOM}#token={viewer}")
        assert response is not None and response.ok
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert tab.evaluate("[location.protocol, window.isSecureContext]") == ["https:", True]
        assert tab.evaluate("typeof navigator.mediaDevices?.getUserMedia") == "function"  # the camera is offered
        # The page's own POST (same origin, over TLS) reaches the gateway, which answers for the empty room.
        tab.locator("#status[data-state='unknown-room']").wait_for(timeout=60_000)  # no eval: the CSP forbids it
        # The same host over plain HTTP is no secure context: no camera for the sender page there.
        tab.goto(f"http://{HOST}:{servers.foreign_url.rsplit(':', 1)[1]}")
        assert tab.evaluate("[window.isSecureContext, typeof navigator.mediaDevices]") == [False, "undefined"]
    finally:
        tab.context.close()


def test_a_page_of_another_origin_cannot_use_a_token(tls_browser: Any, servers: Servers, server_thread: Any) -> None:
    before = refusals(servers, server_thread, "bad_origin"), refusals(servers, server_thread, "unknown_room")
    tab = tls_browser.new_context().new_page()
    try:
        tab.goto(servers.foreign_url)
        viewer = mint_token(SECRET, "mallory", ROOM, "view", ("woman",))
        # A "simple" request (no-cors, text/plain) needs no CORS preflight: only the Origin check stops it.
        status = tab.evaluate(
            """async ([url, body]) => (await fetch(url, {method: 'POST', mode: 'no-cors', body})).status""",
            [f"{servers.https_url}/api/rooms/{ROOM}/view?token={viewer}", '{"sdp": "v=0", "type": "offer"}'],
        )
        assert status == 0  # opaque: the page learns nothing from the answer either
    finally:
        tab.context.close()
    after = refusals(servers, server_thread, "bad_origin"), refusals(servers, server_thread, "unknown_room")
    assert after == (before[0] + 1, before[1])  # refused for its origin, before the room was looked up
