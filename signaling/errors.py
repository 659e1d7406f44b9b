"""The gateway's refusals: each carries the HTTP status and short code of docs/live-protocol.md's table.

Tokens have their own `signaling.auth.AuthError` (raised by the token functions the CLI shares);
the gateway turns it into a GatewayError at its edge, 401 when the token itself is bad and 403 when
it is good but for something else.
"""

from __future__ import annotations

from base.errors import HeadcastError


class GatewayError(HeadcastError):
    """A request or render the gateway cannot serve; `status` and `code` are its HTTP answer, the message what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def message(self) -> str:
        """Return the human-readable explanation (the exception's text)."""
        return str(self)


class RendererUnavailableError(GatewayError):
    """The Serve app could not be reached or its replica died: the call may succeed when retried."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "unavailable", message)


class TlsError(HeadcastError):
    """The gateway's certificate or key cannot be used; the message names the file and what to do."""
