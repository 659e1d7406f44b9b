"""The pages' routes (signaling/pages.py): what they serve and as what, what they refuse (no path escapes the
front end's folders), the 503 page before `make web`, and the face model the browser computes with.

No browser and no Ray: raw HTTP against an aiohttp app holding the page routes only. The pages themselves
run in Chromium in tests/browser/.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from base import assets
from face3d.blendshapes import BLENDSHAPE_NAMES
from face3d.online import OnlineConfig
from face3d.topology import load_canonical_mesh
from signaling.config import GatewayConfig
from signaling.pages import WEB_DIR, add_page_routes

Response = tuple[int, dict[str, str], bytes]
Get = Callable[[str], Awaitable[Response]]
VENDOR = WEB_DIR / "node_modules" / "@mediapipe" / "tasks-vision"
needs_web = pytest.mark.skipif(not VENDOR.is_dir(), reason="web/node_modules is missing: run `make web`")


def with_pages(test: Callable[[Get], Awaitable[None]], web_dir: Path | None = None) -> None:
    """Run `test(get)` against an app with the page routes; `get(path)` sends `path` byte for byte."""

    async def main() -> None:
        app = web.Application()
        add_page_routes(app, GatewayConfig(port=0), web_dir)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]

        def fetch(path: str) -> Response:
            # http.client sends the path as given: no client-side normalisation of "..", "%2e" or "//".
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            finally:
                connection.close()

        try:
            await test(lambda path: asyncio.to_thread(fetch, path))
        finally:
            await runner.cleanup()

    asyncio.run(main())


@needs_web
def test_pages_and_their_files_are_served_with_their_types() -> None:
    async def test(get: Get) -> None:
        status, headers, body = await get("/send")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'src="/static/sender.js"' in body
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp  # nothing leaves the gateway's origin
        assert headers["referrer-policy"] == "no-referrer"
        status, headers, _ = await get("/view")
        assert status == 200 and "content-security-policy" in headers
        for path, kind in (
            ("/static/sender.js", "text/javascript"),
            ("/static/style.css", "text/css"),
            ("/vendor/tasks-vision/vision_bundle.mjs", "text/javascript"),
            ("/vendor/tasks-vision/wasm/vision_wasm_internal.js", "text/javascript"),
            ("/vendor/tasks-vision/wasm/vision_wasm_internal.wasm", "application/wasm"),
            ("/vendor/tasks-vision/wasm/vision_wasm_nosimd_internal.wasm", "application/wasm"),
        ):
            status, headers, body = await get(path)
            assert (status, headers["content-type"].split(";")[0]) == (200, kind), path
            assert body
        status, _, body = await get("/models/face_landmarker.task")
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == assets.sha256_of(assets.resolve("face_landmarker"))

    with_pages(test)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/..%2f..%2fpyproject.toml",
        "/static/%2E%2E%2F%2E%2E%2Fsignaling%2Fauth.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/.hidden.js",
        "/static/sender.js%00.html",
        "/static/..\\..\\pyproject.toml",
        "/static/package.json/..",
        "/vendor/tasks-vision/package.json",
        "/vendor/tasks-vision/vision_bundle.cjs",
        "/vendor/tasks-vision/wasm/../package.json",
        "/vendor/tasks-vision/wasm/%2e%2e/package.json",
        "/vendor/tasks-vision/wasm/..%2f..%2f..%2fpackage.json",
        "/vendor/tasks-vision/../../package-lock.json",
        "/models/../pyproject.toml",
    ],
)
def test_no_path_leaves_the_front_ends_folders(path: str) -> None:
    async def test(get: Get) -> None:
        status, _, body = await get(path)
        assert status in (400, 404), (path, status, body[:200])

    with_pages(test)


def test_a_link_out_of_the_folder_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "page.js").write_text("export {};\n")
    outside = tmp_path / "secret.js"
    outside.write_text("secret\n")
    (tmp_path / "src" / "link.js").symlink_to(outside)

    async def test(get: Get) -> None:
        assert (await get("/static/page.js"))[0] == 200
        status, _, body = await get("/static/link.js")
        assert status == 404 and b"secret" not in body

    with_pages(test, tmp_path)


def test_without_make_web_the_sender_page_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name in ("viewer.html", "sender.html"):
        (tmp_path / "src" / name).write_text("<!doctype html><title>page</title>\n")

    async def test(get: Get) -> None:
        status, headers, body = await get("/send")
        assert status == 503 and headers["content-type"].startswith("text/html")
        assert b"make web" in body
        status, _, body = await get("/vendor/tasks-vision/vision_bundle.mjs")
        assert status == 503 and b"make web" in body
        assert (await get("/view"))[0] == 200  # a viewer needs no MediaPipe

    with_pages(test, tmp_path)


def test_the_face_model_is_face3ds() -> None:
    async def test(get: Get) -> None:
        status, _, body = await get("/api/face-model.json")
        assert status == 200
        model = json.loads(body)
        mesh = load_canonical_mesh()
        procrustes = model["procrustes"]
        assert procrustes["ids"] == mesh.procrustes_ids.tolist()
        # Exactly the float32 values face3d aligns against, as doubles: the browser's fit starts from the same numbers.
        assert np.array_equal(np.array(procrustes["weights"], np.float32), mesh.procrustes_weights)
        assert np.array_equal(np.array(procrustes["positions_cm"], np.float32), mesh.vertices[mesh.procrustes_ids])
        assert model["blendshape_names"] == list(BLENDSHAPE_NAMES)
        assert model["online"] == OnlineConfig().__dict__

    with_pages(test)
