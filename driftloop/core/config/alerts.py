"""The ``alerts:`` section of the configuration, validated: lifecycle timings, sinks, stale streams.

Every key has a default; an empty section gives a working setup that only publishes to the
Kafka alerts topic. A fuller example::

    alerts:
      hold_down_s: 300          # a cleared alert resolves after this long without re-detection
      cooldown_s: 1800          # after a resolution the same alert_id cannot fire again for this long
      group_window_s: 10        # new alerts of one (model, kind) within this window page together
      group_min: 2              # ... when at least this many; fewer page individually
      critical: {psi: 0.25}     # effect size at or above which a detection is critical
      sinks:
        - {name: team-hook, type: webhook, url: "https://hooks.example/driftloop", secret_env: HOOK_SECRET}
        - {name: slack, type: slack, url_env: SLACK_WEBHOOK_URL}
        - {name: am, type: alertmanager, url: "http://alertmanager:9093"}
        - name: pd
          type: pagerduty
          routing_key_env: PD_ROUTING_KEY
          routes: [{models: [fraud], min_severity: critical}]
      stale:
        predictions_after_s: 3600
        models: {fraud: {labels_after_s: 86400}}

Secrets (``secret``, ``routing_key`` and webhook URLs, which often embed a token) are never
logged and never shown by ``repr``; prefer the ``*_env`` forms that read an environment variable.

>>> cfg = AlertsConfig.from_dict({"hold_down_s": 60, "sinks": [
...     {"type": "slack", "url": "https://hooks.slack.com/services/T/B/xyz", "secret": "s3"}]})
>>> cfg.hold_down_s, cfg.cooldown_s, cfg.sinks[0].name, cfg.sinks[0].timeout_s
(60.0, 1800.0, 'slack', 10.0)
>>> cfg.sinks[0]
SinkConfig(name='slack', type='slack', url=<hidden>, secret=<hidden>, routes=[])
>>> AlertsConfig.from_dict({"hold_down": 60})
Traceback (most recent call last):
...
driftloop.core.config.ConfigError: alerts: Object contains unknown field `hold_down`
"""
from __future__ import annotations

import os
from typing import Any, Literal

import msgspec

from driftloop.core.config import ConfigError, ConfigSection

__all__ = ["AlertsConfig", "SinkConfig", "RouteConfig", "StaleConfig", "StaleModelConfig",
           "DispatchConfig", "SEVERITY_RANK", "KAFKA_SINK"]

SEVERITY_RANK = {"warning": 0, "critical": 1}
KINDS = ("data_drift", "prediction_drift", "concept_drift", "performance", "multivariate_drift", "stale_stream",
         "data_quality", "detector_failure")
KAFKA_SINK = "kafka"
"""Name of the implicit sink that publishes every alert change to the ``driftloop.alerts`` topic."""

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SINK_TYPES = ("webhook", "slack", "alertmanager", "pagerduty")


class RouteConfig(ConfigSection):
    """One routing rule of a sink: the alert goes to the sink when every given condition holds.

    ``models`` (None: every model), ``kinds`` (None: every kind), ``min_severity``.
    """

    models: list[str] | None = None
    kinds: list[str] | None = None
    min_severity: Literal["warning", "critical"] = "warning"

    def matches(self, model: str, kind: str, severity: str) -> bool:
        return ((self.models is None or model in self.models)
                and (self.kinds is None or kind in self.kinds)
                and SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.min_severity])


class SinkConfig(ConfigSection):
    """A notification target.

    ``type``: ``webhook`` (the alert message as JSON), ``slack`` (incoming-webhook format),
    ``alertmanager`` (Prometheus Alertmanager API v2; ``url`` is the server's base URL or the
    full ``/api/v2/alerts`` endpoint), ``pagerduty`` (Events API v2; ``url`` defaults to
    PagerDuty's enqueue endpoint, ``routing_key`` is required).
    ``name`` (default: the type) must be unique. ``url``/``url_env``, ``secret``/``secret_env``
    (HMAC-SHA256 signature of each body, see :mod:`driftloop.alerts.sinks.http`),
    ``routing_key``/``routing_key_env``, ``headers`` (extra HTTP headers), ``timeout_s`` (10:
    per request), ``routes`` (empty: every alert), ``resend_every_s`` (Alertmanager only,
    300: firing alerts are re-sent this often and carry ``endsAt`` four intervals ahead, the way
    Prometheus does it; 0: never re-sent, no ``endsAt``), ``page`` (``incidents``, the default:
    the sink gets one message per incident change, see :mod:`driftloop.alerts.incidents`, routed
    when any member alert matches ``routes``; ``alerts``: one per alert change, as before 1.1).
    """

    type: Literal["webhook", "slack", "alertmanager", "pagerduty"]
    name: str = ""
    url: str | None = None
    url_env: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    routing_key: str | None = None
    routing_key_env: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_s: float = 10.0
    routes: list[RouteConfig] = msgspec.field(default_factory=list)
    resend_every_s: float = 300.0
    page: Literal["incidents", "alerts"] = "incidents"

    def __repr__(self) -> str:  # never show URLs or secrets (a Slack URL is itself a token)
        secret = "<hidden>" if (self.secret or self.secret_env) else None
        url = "<hidden>" if (self.url or self.url_env) else None
        return (f"SinkConfig(name={self.name!r}, type={self.type!r}, url={url}, secret={secret}, "
                f"routes={self.routes!r})")

    __str__ = __repr__

    def matches(self, model: str, kind: str, severity: str) -> bool:
        return not self.routes or any(r.matches(model, kind, severity) for r in self.routes)

    def resolved_url(self, environ: dict[str, str] | None = None) -> str:
        url = _from_env(self.url, self.url_env, environ)
        if url is None and self.type == "pagerduty":
            return PAGERDUTY_URL
        if url is None:  # checked at validation; kept for direct construction
            raise ConfigError(f"alerts.sinks.{self.name}: url is required")
        if self.type == "alertmanager" and not url.rstrip("/").endswith("/api/v2/alerts"):
            url = url.rstrip("/") + "/api/v2/alerts"
        return url

    def resolved_secret(self, environ: dict[str, str] | None = None) -> bytes | None:
        s = _from_env(self.secret, self.secret_env, environ)
        return None if s is None else s.encode()

    def resolved_routing_key(self, environ: dict[str, str] | None = None) -> str | None:
        return _from_env(self.routing_key, self.routing_key_env, environ)


class StaleModelConfig(ConfigSection):
    """Per-model override of the stale-stream settings (None: the global value)."""

    enabled: bool | None = None
    predictions_after_s: float | None = None
    labels_after_s: float | None = None
    severity: Literal["warning", "critical"] | None = None


class StaleConfig(ConfigSection):
    """Stale streams: a watched model with no new predictions (or labels) for a while fires
    ``stale_stream`` (detector ``no_predictions`` / ``no_labels``); new events resolve it.

    ``enabled`` (True), ``check_every_s`` (60), ``predictions_after_s`` (3600; 0 or None: not
    watched), ``labels_after_s`` (None: labels not watched), ``severity`` (``warning``),
    ``hold_down_s`` (0: events resolve it at the next check), ``models`` (per-model overrides;
    every configured model is watched with the global values unless disabled here). The
    monitor's start counts as activity, so a freshly started monitor waits the full time.
    """

    enabled: bool = True
    check_every_s: float = 60.0
    predictions_after_s: float | None = 3600.0
    labels_after_s: float | None = None
    severity: Literal["warning", "critical"] = "warning"
    hold_down_s: float = 0.0
    models: dict[str, StaleModelConfig] = msgspec.field(default_factory=dict)

    def for_model(self, model: str) -> tuple[bool, float | None, float | None, str]:
        """(enabled, predictions_after_s, labels_after_s, severity) for one model."""
        o = self.models.get(model, StaleModelConfig())
        enabled = self.enabled if o.enabled is None else o.enabled
        p = self.predictions_after_s if o.predictions_after_s is None else o.predictions_after_s
        lab = self.labels_after_s if o.labels_after_s is None else o.labels_after_s
        return enabled, (p or None), (lab or None), (o.severity or self.severity)


class DispatchConfig(ConfigSection):
    """How the dispatcher delivers: ``poll_interval_s`` (0.5: how often each sink's worker
    looks for due deliveries), ``backoff_initial_s`` (1), ``backoff_max_s`` (300: exponential
    backoff with jitter between attempts), ``max_attempts`` (0: retry forever — nothing is
    lost; N: give up after N attempts and mark the delivery ``failed``), ``lease_s`` (60: a
    claimed delivery is not taken by another dispatcher for this long; must exceed any sink's
    timeout), ``batch`` (100 deliveries read per pass)."""

    poll_interval_s: float = 0.5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    max_attempts: int = 0
    lease_s: float = 60.0
    batch: int = 100


class IncidentsConfig(ConfigSection):
    """``alerts.incidents``: ``wait_s`` (30): how long a new incident waits for more alerts of its
    model version before it pages (Alertmanager's ``group_wait``); 0 pages at once."""

    wait_s: float = 30.0


class AlertsConfig(ConfigSection):
    """The validated ``alerts:`` section; see the module docstring for an example.

    Lifecycle: ``hold_down_s`` (300), ``cooldown_s`` (1800), ``group_window_s`` (10),
    ``group_min`` (2), ``notify_escalation`` (True: a firing alert that becomes critical is
    announced again as ``firing`` with severity ``critical``), ``critical`` (detector or
    statistic name → effect size at or above which the alert is critical, on top of the
    detector's own severity; e.g. ``{psi: 0.25, wasserstein: 0.5}``), ``tick_every_s`` (5: how
    often hold-downs and group windows are checked between batches), ``incidents``
    (:class:`IncidentsConfig`: the alerts of one model version that fire together page once).
    """

    hold_down_s: float = 300.0
    cooldown_s: float = 1800.0
    group_window_s: float = 10.0
    group_min: int = 2
    notify_escalation: bool = True
    critical: dict[str, float] = msgspec.field(default_factory=dict)
    tick_every_s: float = 5.0
    sinks: list[SinkConfig] = msgspec.field(default_factory=list)
    stale: StaleConfig = msgspec.field(default_factory=StaleConfig)
    dispatch: DispatchConfig = msgspec.field(default_factory=DispatchConfig)
    incidents: IncidentsConfig = msgspec.field(default_factory=IncidentsConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, environ: dict[str, str] | None = None) -> AlertsConfig:
        """Validate ``Config.alerts``; raises :class:`~driftloop.core.config.ConfigError`."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("alerts: must be a mapping")
        try:
            cfg = msgspec.convert(data, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"alerts: {str(exc).replace('`$', '`alerts')}") from None
        cfg._check(os.environ if environ is None else environ)
        return cfg

    def _check(self, environ: Any) -> None:
        """Every key of the section, in order: lifecycle, dispatch, stale checks, then each sink
        (``environ``: where ``*_env`` keys are looked up). Names unnamed sinks."""
        self._check_lifecycle()
        d = self.dispatch
        for key in ("poll_interval_s", "backoff_initial_s", "backoff_max_s", "lease_s"):
            if getattr(d, key) <= 0:
                raise ConfigError(f"alerts.dispatch.{key}: must be positive")
        if d.max_attempts < 0 or d.batch <= 0:
            raise ConfigError("alerts.dispatch: max_attempts must be >= 0 and batch positive")
        if self.stale.check_every_s <= 0:
            raise ConfigError("alerts.stale.check_every_s: must be positive")
        seen: set[str] = {KAFKA_SINK}
        for i, s in enumerate(self.sinks):
            self._check_sink(i, s, seen, environ)

    def _check_lifecycle(self) -> None:
        """Hold-down, cooldown, group window and size, tick interval, the ``critical`` thresholds."""
        for key in ("hold_down_s", "cooldown_s", "group_window_s"):
            if getattr(self, key) < 0:
                raise ConfigError(f"alerts.{key}: must be >= 0")
        if self.group_min < 2:
            raise ConfigError("alerts.group_min: must be at least 2 (a group of one is not a group)")
        if self.tick_every_s <= 0:
            raise ConfigError("alerts.tick_every_s: must be positive")
        if not self.incidents.wait_s >= 0:
            raise ConfigError("alerts.incidents.wait_s: must be >= 0")
        for name, value in self.critical.items():
            if not value >= 0:
                raise ConfigError(f"alerts.critical.{name}: must be a number >= 0")

    def _check_sink(self, i: int, s: SinkConfig, seen: set[str], environ: Any) -> None:
        """Sink ``i``: a unique name (given one if it has none; added to ``seen``), its timeouts,
        routes, secrets and URL."""
        where = f"alerts.sinks[{i}]"
        if not s.name:
            s.name = s.type if s.type not in {x.name for x in self.sinks[:i]} else f"{s.type}-{i}"
        if s.name in seen:
            raise ConfigError(f"{where}.name: {s.name!r} is used twice (or is reserved)")
        seen.add(s.name)
        if s.timeout_s <= 0 or s.timeout_s >= self.dispatch.lease_s:
            raise ConfigError(f"{where}.timeout_s: must be positive and below alerts.dispatch.lease_s")
        if s.resend_every_s < 0:
            raise ConfigError(f"{where}.resend_every_s: must be >= 0")
        for j, r in enumerate(s.routes):
            bad = sorted(set(r.kinds or ()) - set(KINDS))
            if bad:
                raise ConfigError(f"{where}.routes[{j}].kinds: unknown kinds {bad}; known: {list(KINDS)}")
        _check_sink_secrets(where, s, environ)


def _check_sink_secrets(where: str, s: SinkConfig, environ: Any) -> None:
    """A sink's ``url``/``secret``/``routing_key``: given directly or by ``*_env`` (not both, and the
    variable set), an http(s) URL unless PagerDuty, a routing key for PagerDuty."""
    for key in ("url", "secret", "routing_key"):
        env = getattr(s, f"{key}_env")
        if getattr(s, key) is not None and env is not None:
            raise ConfigError(f"{where}: give {key} or {key}_env, not both")
        if env is not None and env not in environ:
            raise ConfigError(f"{where}.{key}_env: environment variable {env} is not set")
    url = _from_env(s.url, s.url_env, environ)
    if url is None and s.type != "pagerduty":
        raise ConfigError(f"{where}.url: required for a {s.type} sink")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL")
    if s.type == "pagerduty" and _from_env(s.routing_key, s.routing_key_env, environ) is None:
        raise ConfigError(f"{where}.routing_key: required for a pagerduty sink")


def _from_env(value: str | None, env: str | None, environ: Any = None) -> str | None:
    if value is not None:
        return value
    if env is None:
        return None
    return (os.environ if environ is None else environ).get(env)
