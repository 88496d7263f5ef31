"""The bearer token that guards the mutating endpoints (promote, rollback, resolve).

>>> check_token("s3cret", "Bearer s3cret")
>>> check_token("s3cret", "Bearer wrong")
Traceback (most recent call last):
...
driftloop.api.auth.Unauthorized: invalid token
>>> check_token(None, "Bearer anything")
Traceback (most recent call last):
...
driftloop.api.auth.Unauthorized: changes are disabled: no API token is configured (api.token or api.token_env)
"""
from __future__ import annotations

import hmac

__all__ = ["Unauthorized", "check_token"]


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
