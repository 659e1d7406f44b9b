"""The exception types of the edge package: `EdgeError`, and `TrackingError` for capture and tracking."""

from __future__ import annotations

from base.errors import HeadcastError


class EdgeError(HeadcastError):
    """The edge cannot go on; the message says what the user can do about it.

    status: the gateway's HTTP status when the gateway refused a request (None otherwise);
    code: the gateway's short error code (`docs/live-protocol.md`), e.g. "room_busy".
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TrackingError(EdgeError):
    """Capture or tracking cannot go on; the message says what the user can do about it."""
