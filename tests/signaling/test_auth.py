"""Tokens: minted, verified, and refused for every reason a bearer can get wrong."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest

from signaling.auth import AuthError, load_secret, mint_token, require, verify_token

SECRET = b"s" * 32


def test_a_minted_token_verifies_to_its_grant() -> None:
    token = mint_token(SECRET, "alice", "room-1", "send", ("bob-avatar",), ttl_s=60, max_sessions=2)
    grant = verify_token(SECRET, token)
    assert (grant.subject, grant.room, grant.role, grant.targets, grant.max_sessions) == (
        "alice", "room-1", "send", ("bob-avatar",), 2)  # fmt: skip
    assert grant.expires_at - time.time() == pytest.approx(60, abs=2)
    require(grant, "send", "room-1", "bob-avatar")
    assert verify_token(SECRET, mint_token(SECRET, "x", "r", "view")).token_id != grant.token_id


@pytest.mark.parametrize(
    ("role", "room", "target", "message"),
    [("view", "room-1", None, "send role, not view"), ("send", "room-2", None, "for room 'room-1'"),
     ("send", "room-1", "carol", "does not allow driving target 'carol'")],
)  # fmt: skip
def test_grants_allow_only_what_they_name(role: str, room: str, target: str | None, message: str) -> None:
    grant = verify_token(SECRET, mint_token(SECRET, "alice", "room-1", "send", ("bob-avatar",)))
    with pytest.raises(AuthError, match=message):
        require(grant, role, room, target)  # type: ignore[arg-type]


def test_wildcard_targets() -> None:
    grant = verify_token(SECRET, mint_token(SECRET, "ops", "room", "send", ("*",)))
    assert grant.may_drive("anyone")


def test_expired_forged_malformed_and_missing_tokens_are_refused() -> None:
    old = mint_token(SECRET, "alice", "room", "view", ttl_s=10, now=time.time() - 100)
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, old)
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, mint_token(SECRET, "alice", "room", "view", ttl_s=10), now=time.time() + 11)
    with pytest.raises(AuthError, match="signature"):
        verify_token(b"t" * 32, mint_token(SECRET, "alice", "room", "view"))
    for garbage in ("abc", "a.b.c", "\x00" * 40):
        with pytest.raises(AuthError, match="malformed"):
            verify_token(SECRET, garbage)
    with pytest.raises(AuthError, match="no token"):
        verify_token(SECRET, None)
    unsigned = jwt.encode({"sub": "x", "room": "r", "role": "send", "targets": []}, key="", algorithm="none")
    with pytest.raises(AuthError):
        verify_token(SECRET, unsigned)
    no_role = jwt.encode({"iss": "headcast", "sub": "x", "room": "r", "targets": [], "iat": int(time.time()),
                          "exp": int(time.time()) + 60, "jti": "1"}, SECRET, algorithm="HS256")  # fmt: skip
    with pytest.raises(AuthError, match="malformed"):
        verify_token(SECRET, no_role)


def test_a_signed_token_whose_expiry_is_not_a_time_is_malformed() -> None:
    # Found by fuzzing: an exp of 1e999 passed PyJWT as infinity and crashed the grant's int().
    claims = {"iss": "headcast", "sub": "x", "room": "r", "role": "send", "targets": [], "iat": int(time.time()),
              "jti": "1"}  # fmt: skip
    for expires in (float("inf"), "tomorrow", True):
        signed = jwt.encode({**claims, "exp": expires}, SECRET, algorithm="HS256")
        with pytest.raises(AuthError):  # PyJWT's own check: "must be an integer", or True taken as 1, expired
            verify_token(SECRET, signed)
        with pytest.raises(AuthError, match="malformed"):  # with an explicit clock PyJWT checks nothing
            verify_token(SECRET, signed, now=time.time())


def test_minting_refuses_nonsense() -> None:
    with pytest.raises(AuthError, match="unknown role"):
        mint_token(SECRET, "a", "r", "admin")  # type: ignore[arg-type]
    with pytest.raises(AuthError):
        mint_token(SECRET, "a", "r", "view", ttl_s=0)


def test_the_secret_file_is_created_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADCAST_SECRET", raising=False)
    path = tmp_path / "conf" / "secret"
    first = load_secret(path)
    assert load_secret(path) == first and len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("HEADCAST_SECRET", "short")
    with pytest.raises(AuthError, match="at least 32 bytes"):
        load_secret(path)
