"""Enrolment through the gateway: size-limited, retryable uploads and the enrolment jobs they start."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from signaling.config import GatewayConfig


def add_enrolment_routes(app: web.Application, config: GatewayConfig, secret: bytes, enroller: Any = None) -> None:
    """Add the enrolment routes (uploads, jobs) to the gateway's application; none without an enroller."""
