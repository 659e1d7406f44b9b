"""Signed, expiring tokens: who may send, view or enrol in which room, and which targets they may drive.

Tokens are JWTs (HS256, PyJWT) carrying the room, the role, the targets the bearer may drive, the
session limit and an expiry. The gateway verifies every offer and upload against them; `headcast
token` mints them. The secret comes from HEADCAST_SECRET or a file kept in the user config
directory (created on first use, readable by its owner only).
"""

from __future__ import annotations

import math
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
import jwt.types
import platformdirs

from base.errors import HeadcastError
from signaling.errors import GatewayError

Role = Literal["send", "view", "enrol"]
ROLES: tuple[Role, ...] = ("send", "view", "enrol")
ALGORITHM = "HS256"
ISSUER = "headcast"
SECRET_ENV = "HEADCAST_SECRET"
MIN_SECRET_BYTES = 32


class AuthError(HeadcastError):
    """A token is missing, malformed, forged, expired, or does not allow what was asked."""


@dataclass(frozen=True)
class Grant:
    """What a verified token allows.

    subject: who the bearer is; room: the room it is for; role: send, view or enrol;
    targets: the target ids the bearer may drive ("*" for any); max_sessions: concurrent sessions
    allowed with this token; expires_at: Unix seconds; token_id: unique id of the token.
    """

    subject: str
    room: str
    role: Role
    targets: tuple[str, ...]
    max_sessions: int
    expires_at: int
    token_id: str

    def may_drive(self, target_id: str) -> bool:
        """Return True when this grant allows driving `target_id`."""
        return "*" in self.targets or target_id in self.targets


def default_secret_path() -> Path:
    """Return where the signing secret is kept when HEADCAST_SECRET is not set."""
    return platformdirs.user_config_path("headcast") / "secret"


def load_secret(path: Path | None = None) -> bytes:
    """Return the signing secret: HEADCAST_SECRET, else the secret file (created on first use)."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        secret = from_env.encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise AuthError(f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes; "
                            "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`")  # fmt: skip
        return secret
    file = path or default_secret_path()
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(32))
    secret = file.read_text().strip().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise AuthError(f"the secret in {file} is shorter than {MIN_SECRET_BYTES} bytes; delete it to make a new one")
    return secret


def mint_token(secret: bytes, subject: str, room: str, role: Role, targets: tuple[str, ...] = (),
               ttl_s: int = 3600, max_sessions: int = 1, now: float | None = None) -> str:  # fmt: skip
    """Return a signed token granting `role` in `room` to `subject` for `ttl_s` seconds."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not room or not subject:
        raise AuthError("a token names its room and its subject")
    if ttl_s <= 0 or max_sessions < 1:
        raise AuthError("a token lives for a positive number of seconds and allows at least one session")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "room": room,
        "role": role,
        "targets": list(targets),
        "max_sessions": max_sessions,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str | None, now: float | None = None) -> Grant:
    """Return the Grant of a valid token; raises AuthError saying why a token is refused."""
    if not token:
        raise AuthError("no token: ask the room's owner for one (`headcast token`)")
    if not token.isascii():  # a JWT is base64url and dots; PyJWT cannot even encode some other text
        raise AuthError("the token is malformed (it holds characters no token has)")
    # With an explicit clock (tests, replays) expiry is checked below against it instead.
    options: jwt.types.Options = {
        "require": ["exp", "iat", "sub", "jti", "iss"],
        "verify_exp": now is None,
        "verify_iat": now is None,
    }
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options=options)
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired: ask for a new one") from None
    except jwt.InvalidSignatureError:
        raise AuthError("the token's signature is not valid for this server") from None
    except jwt.PyJWTError as error:
        raise AuthError(f"the token is malformed ({error})") from None
    expires = claims["exp"]
    # PyJWT takes any number (1e999 is infinity), and with an explicit clock it checks none at all.
    if not isinstance(expires, int | float) or isinstance(expires, bool) or not math.isfinite(expires):
        raise AuthError("the token is malformed (exp is not a time)")
    if now is not None and expires <= now:
        raise AuthError("the token has expired: ask for a new one")
    role, targets, sessions = claims.get("role"), claims.get("targets"), claims.get("max_sessions", 1)
    if role not in ROLES or not isinstance(claims.get("room"), str) or not isinstance(targets, list):
        raise AuthError("the token is malformed (room, role or targets missing)")
    if not isinstance(sessions, int) or isinstance(sessions, bool) or sessions < 1:
        raise AuthError("the token is malformed (max_sessions is a positive integer)")
    return Grant(
        subject=str(claims["sub"]),
        room=claims["room"],
        role=role,
        targets=tuple(str(t) for t in targets),
        max_sessions=sessions,
        expires_at=int(expires),
        token_id=str(claims["jti"]),
    )


def require(grant: Grant, role: Role, room: str, target_id: str | None = None) -> None:
    """Raise AuthError unless `grant` allows `role` in `room` (and driving `target_id` when given)."""
    if grant.role != role:
        raise AuthError(f"this token is for the {grant.role} role, not {role}")
    if grant.room != room:
        raise AuthError(f"this token is for room {grant.room!r}, not {room!r}")
    if target_id is not None and not grant.may_drive(target_id):
        raise AuthError(f"this token does not allow driving target {target_id!r}")


def bearer_token(header: str | None) -> str | None:
    """Return the token of an `Authorization` header value `Bearer <token>`; None when it carries none."""
    if header is None or not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip() or None


def authorize(secret: bytes, token: str | None, role: Role, room: str | None, target_id: str | None = None) -> Grant:
    """Return the grant of `token` after checking it allows `role` in `room` (and driving `target_id`).

    room: None when the role is for no room in particular (enrolment).

    The gateway's answer for each refusal: GatewayError 401 `unauthorized` when the token is missing,
    malformed, expired or not signed with `secret`; 403 `forbidden` when it is valid but for another
    role, room or target.
    """
    try:
        grant = verify_token(secret, token)
    except AuthError as error:
        raise GatewayError(401, "unauthorized", str(error)) from None
    try:
        require(grant, role, grant.room if room is None else room, target_id)
    except AuthError as error:
        raise GatewayError(403, "forbidden", str(error)) from None
    return grant
