"""The ``api:`` section of the configuration: the HTTP server ``driftloop monitor`` runs.

Every key has a default; the server listens on loopback only unless told otherwise::

    api:
      enabled: true
      host: 127.0.0.1           # 0.0.0.0 in a container
      port: 8321
      token_env: DRIFTLOOP_API_TOKEN   # bearer token for promote / rollback / resolve
      read_token_env: DRIFTLOOP_READ_TOKEN  # optional: bearer token for /api/ reads and /metrics
      cors_origins: []          # e.g. ["https://grafana.example"]: allowed to call the API from a browser

Without a token (neither ``token`` nor a set ``token_env``) the mutating endpoints answer 401 to
everyone: reading is open, changing needs the token. Prefer ``token_env`` to ``token`` (the
configuration file is then free of secrets); ``repr`` never shows the token.

``read_token_env`` (the NAME of an environment variable, never the token itself) closes the
reading too: every ``GET /api/...`` and ``/metrics`` then needs ``Authorization: Bearer
<token>``, with that variable's value or the change token. ``/healthz``, ``/readyz``, the
OpenAPI document and the dashboard's page and static files (no data in them) stay open; the
dashboard asks for the token, or takes it from its address (``/#token=...``: a fragment, never
sent to the server or written to its logs). A variable named but unset or empty is an error at
start (fail closed), not an open API.

>>> cfg = ApiConfig.from_dict({"port": 9000, "token": "s3cret"})
>>> cfg.host, cfg.port, cfg.resolved_token()
('127.0.0.1', 9000, 's3cret')
>>> cfg
ApiConfig(enabled=True, host='127.0.0.1', port=9000, token=<hidden>, token_env=None, cors_origins=[])
>>> ApiConfig.from_dict({"token_env": "TOK"}).resolved_token({"TOK": "abc"})
'abc'
>>> ApiConfig.from_dict({"read_token_env": "READ"}).resolved_read_token({"READ": "xyz"})
'xyz'
>>> ApiConfig.from_dict({"read_token_env": "MY-TOKEN"})
Traceback (most recent call last):
...
driftloop.core.config.ConfigError: api.read_token_env: 'MY-TOKEN' is not an environment variable name (letters, digits, _)
>>> ApiConfig.from_dict({"prot": 1})
Traceback (most recent call last):
...
driftloop.core.config.ConfigError: api: Object contains unknown field `prot`
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from driftloop.core.config import ConfigError, ConfigSection

__all__ = ["ApiConfig"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ApiConfig(ConfigSection):
    """Settings of the HTTP API and dashboard (see the module docstring)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8321
    token: str | None = None
    token_env: str | None = None
    cors_origins: list[str] = msgspec.field(default_factory=list)
    read_token_env: str | None = None
    """Name of the environment variable holding the bearer token for reads (None: reads open)."""
    readiness_timeout_s: float = 2.0
    """How long ``/readyz`` waits for the store's write lock and the broker's TCP answer."""

    def __repr__(self) -> str:  # never show the token
        tok = "<hidden>" if self.token else None
        return (f"ApiConfig(enabled={self.enabled!r}, host={self.host!r}, port={self.port!r}, token={tok}, "
                f"token_env={self.token_env!r}, cors_origins={self.cors_origins!r}"
                + (f", read_token_env={self.read_token_env!r})" if self.read_token_env else ")"))

    __str__ = __repr__

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "api") -> ApiConfig:
        """Validate the ``api`` mapping; errors are :class:`~driftloop.core.config.ConfigError` naming the key."""
        try:
            cfg = msgspec.convert(dict(data or {}), cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not 0 <= cfg.port <= 65535:
            raise ConfigError(f"{where}.port: must be 0-65535, got {cfg.port}")
        if cfg.readiness_timeout_s <= 0:
            raise ConfigError(f"{where}.readiness_timeout_s: must be positive")
        if cfg.token is not None and not cfg.token.strip():
            raise ConfigError(f"{where}.token: must not be empty (leave it out to disable changes)")
        if cfg.read_token_env is not None and not _ENV_NAME.fullmatch(cfg.read_token_env):
            raise ConfigError(f"{where}.read_token_env: {cfg.read_token_env!r} is not an environment variable name "
                              "(letters, digits, _)")
        return cfg

    def resolved_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The bearer token: ``token``, else the value of ``token_env``; None if neither is set."""
        if self.token:
            return self.token
        if self.token_env:
            value = (os.environ if environ is None else environ).get(self.token_env)
            return value or None
        return None

    def resolved_read_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The token reads need: the value of ``read_token_env``; None when reads are open.

        Fails closed: a variable named but unset or empty raises :class:`ConfigError`.
        """
        if self.read_token_env is None:
            return None
        value = (os.environ if environ is None else environ).get(self.read_token_env, "").strip()
        if not value:
            raise ConfigError(f"api.read_token_env: the environment variable {self.read_token_env} is not set or "
                              "empty; set it to the token, or remove the key to leave reading open")
        return value
