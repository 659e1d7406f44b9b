"""The browser pages the gateway serves: sender, viewer and their static files (built from web/)."""

from __future__ import annotations

from aiohttp import web

from signaling.config import GatewayConfig


def add_page_routes(app: web.Application, config: GatewayConfig) -> None:
    """Add the browser pages' routes to the gateway's application."""
