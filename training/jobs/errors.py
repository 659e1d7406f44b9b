"""The jobs package's one error type."""

from __future__ import annotations

from base.errors import HeadcastError


class JobError(HeadcastError, RuntimeError):
    """A job or the cluster it runs on could not be reached, started, or asked; the message says what to do."""
