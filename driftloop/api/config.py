"""The ``api:`` section of the configuration: the HTTP server ``driftloop monitor`` runs.

Every key has a default; the server listens on loopback only unless told otherwise::

    api:
      enabled: true
      host: 127.0.0.1           # 0.0.0.0 in a container
      port: 8321
      token_env: DRIFTLOOP_API_TOKEN   # bearer token for promote / rollback / resolve
      cors_origins: []          # e.g. ["https://grafana.example"]: allowed to call the API from a browser

Without a token (neither ``token`` nor a set ``token_env``) the mutating endpoints answer 401 to
everyone: reading is open, changing needs the token. Prefer ``token_env`` to ``token`` (the
configuration file is then free of secrets); ``repr`` never shows the token.

>>> cfg = ApiConfig.from_dict({"port": 9000, "token": "s3cret"})
>>> cfg.host, cfg.port, cfg.resolved_token()
('127.0.0.1', 9000, 's3cret')
>>> cfg
ApiConfig(enabled=True, host='127.0.0.1', port=9000, token=<hidden>, token_env=None, cors_origins=[])
>>> ApiConfig.from_dict({"token_env": "TOK"}).resolved_token({"TOK": "abc"})
'abc'
>>> ApiConfig.from_dict({"prot": 1})
Traceback (most recent call last):
...
driftloop.config.ConfigError: api: Object contains unknown field `prot`
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from driftloop.config import ConfigError

__all__ = ["ApiConfig"]


class ApiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, repr_omit_defaults=False):
    """Settings of the HTTP API and dashboard (see the module docstring)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8321
    token: str | None = None
    token_env: str | None = None
    cors_origins: list[str] = msgspec.field(default_factory=list)
    readiness_timeout_s: float = 2.0
    """How long ``/readyz`` waits for the store's write lock and the broker's TCP answer."""

    def __repr__(self) -> str:  # never show the token
        tok = "<hidden>" if self.token else None
        return (f"ApiConfig(enabled={self.enabled!r}, host={self.host!r}, port={self.port!r}, token={tok}, "
                f"token_env={self.token_env!r}, cors_origins={self.cors_origins!r})")

    __str__ = __repr__

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "api") -> ApiConfig:
        """Validate the ``api`` mapping; errors are :class:`~driftloop.config.ConfigError` naming the key."""
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
        return cfg

    def resolved_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The bearer token: ``token``, else the value of ``token_env``; None if neither is set."""
        if self.token:
            return self.token
        if self.token_env:
            value = (os.environ if environ is None else environ).get(self.token_env)
            return value or None
        return None
