"""The bearer tokens: the change token guards the mutating endpoints (promote, rollback,
resolve); the optional read token (``api.read_token_env``) the read endpoints and /metrics.

>>> check_token("s3cret", "Bearer s3cret")
>>> check_token("s3cret", "Bearer wrong")
Traceback (most recent call last):
...
driftloop.app.api.auth.Unauthorized: invalid token
>>> check_token(None, "Bearer anything")
Traceback (most recent call last):
...
driftloop.app.api.auth.Unauthorized: changes are disabled: no API token is configured (api.token or api.token_env)
>>> check_read_token(None, None, None)       # no read token configured: reading is open
>>> check_read_token("r", "w", "Bearer w")   # the change token reads too
>>> check_read_token("r", None, None)
Traceback (most recent call last):
...
driftloop.app.api.auth.Unauthorized: reading needs a bearer token (Authorization: Bearer <token>; api.read_token_env)
"""
from __future__ import annotations

import hmac

__all__ = ["Unauthorized", "check_token", "check_read_token"]


class Unauthorized(Exception):
    """The request may not change anything (401)."""


def check_token(expected: str | None, authorization: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``authorization`` is ``Bearer <expected>``.

    The comparison takes the same time whatever the given token (``hmac.compare_digest`` over
    bytes), so the token cannot be guessed byte by byte from response times.
    """
    if not expected:
        raise Unauthorized("changes are disabled: no API token is configured (api.token or api.token_env)")
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if not hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8")):
        raise Unauthorized("invalid token")


def _bearer(authorization: str | None) -> str | None:
    scheme, _, given = (authorization or "").strip().partition(" ")
    return given.strip() or None if scheme.lower() == "bearer" else None


def check_read_token(read: str | None, change: str | None, authorization: str | None) -> None:
    """Raise :class:`Unauthorized` unless reading is open (``read`` is None) or ``authorization``
    is ``Bearer <read>`` or ``Bearer <change>``; both comparisons always run, in constant time."""
    if not read:
        return
    given = _bearer(authorization)
    if given is None:
        raise Unauthorized("reading needs a bearer token (Authorization: Bearer <token>; api.read_token_env)")
    raw = given.encode("utf-8")
    ok_read = hmac.compare_digest(raw, read.encode("utf-8"))
    ok_change = bool(change) and hmac.compare_digest(raw, (change or "").encode("utf-8"))
    if not (ok_read or ok_change):
        raise Unauthorized("invalid read token")
