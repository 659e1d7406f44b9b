"""The target-id rule, one for the registry, the enrolment API, tokens and the CLI."""

from __future__ import annotations

import re
from typing import TypeGuard

from base.errors import HeadcastError

TARGET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TARGET_ID_RULE = "1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"


class TargetIdError(HeadcastError, ValueError):
    """A name that cannot be a target id."""


def is_target_id(name: object) -> TypeGuard[str]:
    """Return whether `name` is a valid target id."""
    return isinstance(name, str) and TARGET_ID.fullmatch(name) is not None


def validate_target_id(name: object) -> str:
    """Return `name` when it is a valid target id; raise TargetIdError saying the rule otherwise."""
    if not is_target_id(name):
        raise TargetIdError(f"{name!r} is not a valid target id: use {TARGET_ID_RULE}")
    return name
