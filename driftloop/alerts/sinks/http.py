"""HTTP sinks (webhook, Slack, Alertmanager, PagerDuty): one POST per alert change, signed.

Every request carries ``Idempotency-Key: <alert_id>:<status>:<seq>`` (also inside the
webhook body) so a receiver can drop the repeats at-least-once delivery may produce. When the
sink has a ``secret``, the body is signed with HMAC-SHA256::

    X-Driftloop-Timestamp: 1717171717            (unix seconds, when it was signed)
    X-Driftloop-Signature: sha256=<hex of HMAC(secret, timestamp + "." + body)>

A receiver recomputes it with :func:`verify_signature` (and may refuse old timestamps).

>>> body, secret = b'{"alert_id":"a1"}', b"s3cret"
>>> headers = sign_headers(secret, body, timestamp=1717171717)
>>> headers["X-Driftloop-Signature"][:7], verify_signature(secret, body, headers)
('sha256=', True)
>>> verify_signature(b"other", body, headers), verify_signature(secret, body + b" ", headers)
(False, False)
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from driftloop.alerts import tables
from driftloop.alerts.sinks import formats
from driftloop.alerts.sinks.base import DeliveryError
from driftloop.core.store import now_ms

__all__ = ["HttpSink", "sign_headers", "verify_signature", "SIGNATURE_HEADER", "TIMESTAMP_HEADER",
           "IDEMPOTENCY_HEADER", "make_http_sink"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Driftloop-Signature"
TIMESTAMP_HEADER = "X-Driftloop-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign_headers(secret: bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers of ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={mac}"}


def verify_signature(secret: bytes, body: bytes, headers: Mapping[str, str], *, max_age_s: float | None = None) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` (case-insensitive names)."""
    h = {k.lower(): v for k, v in headers.items()}
    ts, sig = h.get(TIMESTAMP_HEADER.lower()), h.get(SIGNATURE_HEADER.lower())
    if not ts or not sig or not sig.startswith("sha256="):
        return False
    if max_age_s is not None:
        try:
            if abs(time.time() - int(ts)) > max_age_s:
                return False
        except ValueError:
            return False
    want = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig[7:])


class HttpSink:
    """POSTs ``render(message)`` as JSON to one URL; 2xx is success, anything else a
    :class:`DeliveryError` (``Retry-After`` honoured). Errors never include the URL, the
    secret or the response body (which may echo them)."""

    def __init__(self, name: str, url: str, render: Callable[[dict[str, Any]], Any], *, secret: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout_s: float = 10.0, kind: str = "webhook",
                 resend_every_s: float = 0.0) -> None:
        self.name = name
        self.kind = kind
        self._url = url
        self._render = render
        self._secret = secret
        self._headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.resend_every_s = resend_every_s

    def __repr__(self) -> str:
        return f"HttpSink(name={self.name!r}, kind={self.kind!r})"

    def send(self, message: dict[str, Any], key: str) -> None:
        self.post(tables.dumps(self._render(message)), key)

    def post(self, body: bytes, key: str) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "driftloop-alerts/1", IDEMPOTENCY_HEADER: key,
                   **self._headers}
        if self._secret is not None:
            headers.update(sign_headers(self._secret, body))
        req = urllib.request.Request(self._url, data=body, headers=headers, method="POST")  # noqa: S310 - configured URL
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
                resp.read(65536)
                status = resp.status
        except urllib.error.HTTPError as exc:
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            raise DeliveryError(f"HTTP {exc.code}", retry_after_s=retry_after,
                                permanent=400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DeliveryError(self._describe(exc)) from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    def _describe(self, exc: BaseException) -> str:
        """The failure without the URL (``ValueError``/``URLError`` texts may contain it)."""
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"timed out after {self.timeout_s:g}s"
        if isinstance(reason, OSError) and reason.strerror:
            return f"{type(reason).__name__}: {reason.strerror}"
        return type(reason).__name__ if not isinstance(reason, str) else type(exc).__name__

    def close(self) -> None:
        pass


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def make_http_sink(cfg: Any, environ: Mapping[str, str] | None = None) -> HttpSink:
    """An :class:`HttpSink` from a :class:`~driftloop.core.config.alerts.SinkConfig`."""
    env = dict(environ) if environ is not None else None
    common = {"secret": cfg.resolved_secret(env), "headers": cfg.headers, "timeout_s": cfg.timeout_s,
              "kind": cfg.type}
    url = cfg.resolved_url(env)
    if cfg.type == "webhook":
        return HttpSink(cfg.name, url, formats.webhook, **common)
    if cfg.type == "slack":
        return HttpSink(cfg.name, url, formats.slack, **common)
    if cfg.type == "alertmanager":
        resend = cfg.resend_every_s
        return HttpSink(cfg.name, url, lambda m: formats.alertmanager(m, now_ms=now_ms(), resend_every_s=resend),
                        resend_every_s=resend, **common)
    if cfg.type == "pagerduty":
        key = cfg.resolved_routing_key(env) or ""
        return HttpSink(cfg.name, url, lambda m: formats.pagerduty(m, key), **common)
    raise ValueError(f"unknown sink type {cfg.type!r}")
