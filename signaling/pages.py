"""The browser pages the gateway serves: sender, viewer and their static files (built from web/).

No bundler: `web/src/` holds plain ES modules served as they are under `/static/`; the one third-party
package, MediaPipe's `@mediapipe/tasks-vision`, is installed by `make web` (`npm ci` from
`web/package-lock.json`) into `web/node_modules/` and served under `/vendor/tasks-vision/` — only its
ES-module bundle and its WASM folder. The face model comes from the same pinned asset the Python edge
uses (`/models/face_landmarker.task`), and `/api/face-model.json` hands the page the numbers face3d's
online pose estimation uses, so the browser computes the same Coefficients. Nothing is fetched from
anywhere else: the pages' Content-Security-Policy allows their own origin only.

Pages and links (docs/live-protocol.md):

    /send?room=R&target=T#token=...    the sender: camera → FaceLandmarker → Coefficients → "coeffs"
    /view?room=R#token=...             a viewer of room R

The token sits in the fragment, which browsers never send to a server, so it stays out of access logs.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from base import assets
from face3d.blendshapes import BLENDSHAPE_NAMES
from face3d.camera import DEGENERATE_RELATIVE_RMS, MIN_SPREAD
from face3d.errors import Face3dError
from face3d.online import OnlineConfig
from face3d.topology import NUM_VERTICES, load_canonical_mesh
from signaling.config import GatewayConfig

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""The front end's folder in a source checkout: `src/` (ours) and `node_modules/` (from `make web`)."""
VENDOR_PACKAGE = Path("node_modules") / "@mediapipe" / "tasks-vision"
NUM_LANDMARKS = 478

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".wasm": "application/wasm",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # one path segment: no "..", no hidden files
_WASM_NAME = re.compile(r"vision_wasm(_[a-z]+)?_internal\.(js|wasm)")

# Own origin only; MediaPipe compiles WASM ('wasm-unsafe-eval') and loads its loader script from /vendor.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "connect-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "worker-src 'self' blob:",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(self), microphone=()",
    "Cache-Control": "no-cache",
}
VENDOR_CACHE = "public, max-age=86400"  # pinned by package-lock.json; a new version arrives with a new build


@dataclass
class PageFiles:
    """Where the pages' files are, and the face-model answer once it has been built."""

    web_dir: Path
    face_model: dict[str, Any] | None = field(default=None, repr=False)
    model_path: Path | None = None

    @property
    def src(self) -> Path:
        """Return the folder of our own modules and pages."""
        return self.web_dir / "src"

    @property
    def vendor(self) -> Path:
        """Return the installed @mediapipe/tasks-vision package folder."""
        return self.web_dir / VENDOR_PACKAGE

    def vendor_installed(self) -> bool:
        """Return whether `make web` has installed MediaPipe's bundle and WASM."""
        return (self.vendor / "vision_bundle.mjs").is_file() and (self.vendor / "wasm").is_dir()


PAGE_FILES = web.AppKey("page_files", PageFiles)


def face_model_json(online: OnlineConfig | None = None) -> dict[str, Any]:
    """Return what the browser needs to compute Coefficients exactly as face3d.online does.

    procrustes: MediaPipe's 33 reference landmark ids, their weights (not normalised) and their
    positions on the canonical mean face (cm, y up, +z out of the face) — float32 values written as the
    doubles they equal, so both sides align against the same numbers. online: the One-Euro settings.
    """
    mesh = load_canonical_mesh()
    ids = mesh.procrustes_ids
    return {
        "version": 1,
        "landmarks": NUM_LANDMARKS,
        "vertices": NUM_VERTICES,
        "blendshape_names": list(BLENDSHAPE_NAMES),
        "procrustes": {
            "ids": [int(i) for i in ids],
            "weights": [float(w) for w in mesh.procrustes_weights],
            "positions_cm": [[float(v) for v in row] for row in mesh.vertices[ids]],
        },
        "degenerate_relative_rms": DEGENERATE_RELATIVE_RMS,
        "min_spread": MIN_SPREAD,
        "online": dataclasses.asdict(online or OnlineConfig()),
    }


def _message_page(status: int, title: str, text: str) -> web.Response:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>headcast: '
        f'{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1><p role="alert">'
        f"{html.escape(text)}</p></main></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers=PAGE_HEADERS)


def _not_built() -> web.Response:
    return _message_page(
        503,
        "The front end is not built",
        "The sender page needs MediaPipe's browser package, which is not installed on this gateway: "
        "run `make web` (npm ci in web/) in the project folder, then reload this page.",
    )


def _file(path: Path, cache: str) -> web.FileResponse:
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    headers = {"Content-Type": content_type, "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    if path.suffix == ".html":
        headers.update(PAGE_HEADERS)
    return web.FileResponse(path, headers=headers)


def _inside(root: Path, relative: str) -> Path:
    """Return the regular file `root/relative`; 404 for anything else (parent steps, hidden files, links out)."""
    segments = relative.split("/")
    if not relative or not all(_STATIC_NAME.fullmatch(s) for s in segments):
        raise web.HTTPNotFound(text="no such file")
    path = (root / Path(*segments)).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file() or path.suffix not in CONTENT_TYPES:
        raise web.HTTPNotFound(text="no such file")
    return path


class PageRoutes:
    """The handlers of the pages' routes."""

    def __init__(self, files: PageFiles) -> None:
        self.files = files

    async def sender(self, request: web.Request) -> web.StreamResponse:
        """Return the sender page, or a 503 page saying to run `make web` when MediaPipe is not installed."""
        if not self.files.vendor_installed():
            return _not_built()
        return _file(self.files.src / "sender.html", "no-cache")

    async def viewer(self, request: web.Request) -> web.StreamResponse:
        """Return the viewer page (it needs no MediaPipe)."""
        return _file(self.files.src / "viewer.html", "no-cache")

    async def static(self, request: web.Request) -> web.StreamResponse:
        """Return one file of web/src."""
        return _file(_inside(self.files.src, request.match_info["path"]), "no-cache")

    async def vendor(self, request: web.Request) -> web.StreamResponse:
        """Return MediaPipe's ES-module bundle or one of its WASM files; nothing else of node_modules."""
        if not self.files.vendor_installed():
            return _not_built()
        name = request.match_info["path"]
        if name == "vision_bundle.mjs":
            return _file(self.files.vendor / name, VENDOR_CACHE)
        folder, _, file = name.partition("/")
        if folder != "wasm" or not _WASM_NAME.fullmatch(file):
            raise web.HTTPNotFound(text="no such file")
        return _file(_inside(self.files.vendor / "wasm", file), VENDOR_CACHE)

    async def model(self, request: web.Request) -> web.StreamResponse:
        """Return face_landmarker.task, the same pinned asset the Python edge tracks with."""
        if self.files.model_path is None:
            try:
                self.files.model_path = assets.resolve("face_landmarker")  # hashes the file: once
            except Face3dError as error:
                return _message_page(503, "The face model is missing", str(error))
        return _file(self.files.model_path, VENDOR_CACHE)

    async def face_model(self, request: web.Request) -> web.Response:
        """Return /api/face-model.json (see `face_model_json`)."""
        if self.files.face_model is None:
            try:
                self.files.face_model = face_model_json()
            except Face3dError as error:
                return web.json_response({"error": str(error), "code": "unavailable"}, status=503)
        return web.json_response(self.files.face_model, headers={"Cache-Control": "no-cache"})


def add_page_routes(app: web.Application, config: GatewayConfig, web_dir: Path | None = None) -> None:
    """Add the browser pages' routes to the gateway's application.

    web_dir: the front end's folder (default: web/ of this source checkout).
    """
    files = PageFiles(web_dir or WEB_DIR)
    app[PAGE_FILES] = files
    routes = PageRoutes(files)
    app.router.add_get("/send", routes.sender)
    app.router.add_get("/view", routes.viewer)
    app.router.add_get("/static/{path:.+}", routes.static)
    app.router.add_get("/vendor/tasks-vision/{path:.+}", routes.vendor)
    app.router.add_get("/models/face_landmarker.task", routes.model)
    app.router.add_get("/api/face-model.json", routes.face_model)
    if not files.vendor_installed():
        log.warning("web/node_modules is missing: the sender page answers 503 until `make web` runs")
