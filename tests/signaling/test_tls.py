"""HTTPS and origins on a real TCP port: the gateway serves TLS from a PEM certificate and key, the Python
edge reaches it trusting the certificate's CA, bad certificates fail before anything starts, and the API
refuses requests made by pages of other origins.

The certificates come from a throwaway CA (trustme). No Serve app exists ("absent"): what is tested
happens before a target is looked up, or answers 503 when it is.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from configs import ConfigError
from edge.client import ViewerClient
from edge.errors import EdgeError
from signaling.auth import mint_token
from signaling.config import GatewayConfig
from signaling.errors import TlsError
from signaling.gateway import RunningGateway, start_gateway
from signaling.renderer import ServeRenderer
from signaling.tls import server_context

SECRET = b"k" * 32
ROOM = "room-1"
FOREIGN = "https://pages.example.net"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    """A certificate authority nobody else trusts."""
    return trustme.CA()


@pytest.fixture
def pem(authority: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """The gateway's certificate chain and key for 127.0.0.1, and the CA's certificate, as PEM files."""
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    files = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem", "ca": tmp_path / "ca.pem"}
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(files["cert"]), append=True)
    leaf.private_key_pem.write_to_path(str(files["key"]))
    authority.cert_pem.write_to_path(str(files["ca"]))
    return files


def token(role: str = "view", room: str = ROOM) -> str:
    return mint_token(SECRET, "alice", room, role, ("woman",))  # type: ignore[arg-type]


def run_gateway(config: GatewayConfig, test: Callable[[RunningGateway], Awaitable[None]]) -> None:
    async def main() -> None:
        running = await start_gateway(config, ServeRenderer("absent"), SECRET)
        try:
            await test(running)
        finally:
            await running.stop()

    asyncio.run(main())


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def test_the_gateway_serves_https_with_its_certificate(pem: dict[str, Path]) -> None:
    config = GatewayConfig(port=0, tls_cert=pem["cert"], tls_key=pem["key"])

    async def test(running: RunningGateway) -> None:
        assert running.url.startswith("https://127.0.0.1:")
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{running.url}/healthz", ssl=trusting(pem["ca"])) as response:
                assert response.status == 200 and (await response.json())["ok"] is True
            async with client.get(f"{running.url}/view", ssl=trusting(pem["ca"])) as response:
                assert response.status == 200
                assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]  # the CSP stays
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # a client that does not trust the CA
                await client.get(f"{running.url}/healthz")
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not spoken on the TLS port
                await client.get(running.url.replace("https://", "http://") + "/healthz")

    run_gateway(config, test)


def test_the_python_edge_reaches_an_https_gateway_that_trusts_its_ca(
    pem: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = GatewayConfig(port=0, tls_cert=pem["cert"], tls_key=pem["key"])

    async def test(running: RunningGateway) -> None:
        # Not trusted yet: the edge says it cannot reach the gateway, and why.
        with pytest.raises(EdgeError, match="CERTIFICATE_VERIFY_FAILED"):
            await ViewerClient(running.url, token()).run(duration_s=1)
        # Trusted (the system store, or SSL_CERT_FILE as here): the gateway's own refusal comes back over TLS.
        monkeypatch.setenv("SSL_CERT_FILE", str(pem["ca"]))
        with pytest.raises(EdgeError, match="has no sender"):
            await ViewerClient(running.url, token()).run(duration_s=1)

    run_gateway(config, test)


def test_certificates_that_cannot_be_used_fail_clearly(
    pem: dict[str, Path], authority: trustme.CA, tmp_path: Path
) -> None:
    with pytest.raises(TlsError, match="does not exist"):
        server_context(tmp_path / "missing.pem", pem["key"])
    other_key = tmp_path / "other-key.pem"
    authority.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    with pytest.raises(TlsError, match="cannot be used"):
        server_context(pem["cert"], other_key)  # a key that is not the certificate's
    with pytest.raises(TlsError, match="cannot be used"):
        server_context(pem["key"], pem["key"])  # not a certificate at all
    with pytest.raises(ConfigError, match="both tls_cert and tls_key"):
        GatewayConfig.load(tls_cert=pem["cert"])

    async def starts() -> None:
        await start_gateway(GatewayConfig(port=0, tls_cert=pem["cert"], tls_key=other_key), ServeRenderer("x"), SECRET)

    with pytest.raises(TlsError):
        asyncio.run(starts())
    with pytest.raises(ConfigError, match="not an origin"):
        GatewayConfig.load(allowed_origins=["https://example.com/path"])


def test_the_api_refuses_pages_of_other_origins() -> None:
    config = GatewayConfig(port=0, allowed_origins=("https://proxy.example.org",))

    async def test(running: RunningGateway) -> None:
        own = running.url  # http://127.0.0.1:<port>, what a browser sends for the gateway's own pages
        view = f"{running.url}/api/rooms/{ROOM}/view?token={token()}"
        body = {"sdp": "v=0\r\n", "type": "offer"}
        async with aiohttp.ClientSession() as client:
            for origin, status, code in (
                (FOREIGN, 403, "bad_origin"),
                ("null", 403, "bad_origin"),  # a sandboxed frame or a file:// page
                (own.replace("127.0.0.1", "localhost"), 403, "bad_origin"),  # another host is another origin
                (own, 404, "unknown_room"),  # through the guard: the room has no sender
                ("https://proxy.example.org", 404, "unknown_room"),  # listed in allowed_origins
                (None, 404, "unknown_room"),  # clients that are not browsers send no Origin
            ):
                headers = {"Origin": origin} if origin is not None else {}
                async with client.post(view, json=body, headers=headers) as response:
                    assert (response.status, (await response.json())["code"]) == (status, code), origin
            # GETs of the API too (a cross-origin fetch carries Origin); the pages themselves stay public.
            async with client.get(f"{running.url}/api/rooms/{ROOM}", headers={"Origin": FOREIGN}) as response:
                assert response.status == 403
            async with client.get(f"{running.url}/view", headers={"Origin": FOREIGN}) as response:
                assert response.status == 200
            async with client.get(f"{running.url}/metrics") as response:
                text = await response.text()
        refused = [s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == "headcast_gateway_refusals_total" and s.labels == {"code": "bad_origin"}]  # fmt: skip
        assert refused == [4]  # three offers and one GET

    run_gateway(config, test)
