"""driftloop configuration: YAML (or TOML) on disk, environment overrides, validated at start.

Part of the base layer (:mod:`driftloop.core`), with every section's schema: this module holds
the root :class:`Config` and the ``kafka``, ``topics``, ``store``, ``ingest``, ``versions``,
``analysis`` and ``models`` sections; :mod:`~driftloop.core.config.alerts`, :mod:`~driftloop.core.config.api` and
:mod:`~driftloop.core.config.retrain` the others. The ``models.<name>.detectors`` section is
checked against the detectors' own schema (``detectors.model_monitor.MonitorSettings``).

Every key has a documented default except ``models``. An environment variable
``DRIFTLOOP__SECTION__KEY`` overrides ``section.key`` (double underscores separate levels; the
value is parsed as YAML, so ``5000``, ``true`` and ``[a, b]`` keep their types)::

    DRIFTLOOP__KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092
    DRIFTLOOP__STORE__URL=postgresql://driftloop@localhost/driftloop

>>> cfg = load_config_dict({"models": {"fraud": {"task": "classification",
...                          "features": {"amount": "numeric", "country": "categorical"}}}})
>>> cfg.kafka.bootstrap_servers, cfg.topics.predictions, cfg.models["fraud"].numeric_features
('127.0.0.1:9092', 'driftloop.predictions', ['amount'])
"""
from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from driftloop.core.gctune import GEN0_THRESHOLD

__all__ = [
    "Config",
    "ConfigError",
    "KafkaConfig",
    "TopicsConfig",
    "StoreConfig",
    "IngestConfig",
    "AnalysisConfig",
    "ModelConfig",
    "load_config",
    "load_config_dict",
    "load_config_text",
]

ENV_PREFIX = "DRIFTLOOP__"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is wrong."""


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that also says False for a name the OS refuses (too long, NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


class ConfigSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The base of every configuration section, here and in the alerts, api and retrain section
    modules: an unknown key is an error that names it, fields are keyword-only, and ``repr`` is
    built from ``__rich_repr__`` (a section with secrets hides them by overriding only that).

    >>> class Demo(ConfigSection):
    ...     size: int = 1
    >>> Demo(size=2)
    Demo(size=2)
    >>> msgspec.convert({"sise": 2}, Demo)
    Traceback (most recent call last):
    ...
    msgspec.ValidationError: Object contains unknown field `sise`
    """

    def __repr__(self) -> str:
        """msgspec's repr, built from ``__rich_repr__``: a section that holds secrets overrides only
        that, and ``repr``, ``str`` and rich's pretty-printing all hide them."""
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.__rich_repr__()) + ")"


_SECRETS = ("sasl_plain_password", "ssl_password")
_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
# keys of the ``alerts`` and ``api`` sections (kept as plain mappings in Config) whose values are
# secret: sink URLs (a Slack or webhook URL is itself a token), HMAC secrets, PagerDuty routing
# keys, extra HTTP headers (e.g. Authorization), the API token. ``repr`` hides them at any depth.
_SECTION_SECRETS = frozenset({"url", "secret", "routing_key", "headers", "token"})
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConfig(ConfigSection):
    """Connection and client settings shared by every consumer and producer.

    Security passes through to kafka-python: ``security_protocol`` SSL or SASL_SSL encrypts
    (the broker's certificate is always verified: against ``ssl_cafile``, else the system's trust
    store; ``ssl_check_hostname`` also checks its name), SASL_PLAINTEXT or SASL_SSL logs in with
    ``sasl_mechanism`` as ``sasl_plain_username``/``sasl_plain_password`` (the name is kafka-python's;
    it serves SCRAM too). ``ssl_certfile``/``ssl_keyfile`` (PEM; ``ssl_password`` if the key is
    encrypted) present a client certificate. Relative file paths are taken from the working
    directory. The two secrets never appear in ``repr``.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "driftloop"
    group_id: str = "driftloop-monitor"
    security_protocol: str = "PLAINTEXT"       # one of _PROTOCOLS (checked below, with a clear message)
    sasl_mechanism: str | None = None          # one of _MECHANISMS
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True
    session_timeout_ms: int = msgspec.field(default=10_000)
    heartbeat_interval_ms: int = 2_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:   # msgspec reports it with the path (`$.kafka`); load_config wraps it in a ConfigError
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """What is inconsistent or missing in the security settings (empty when fine)."""
        proto = self.security_protocol
        if proto not in _PROTOCOLS:
            return [f"kafka.security_protocol: {proto!r} is not one of {', '.join(_PROTOCOLS)}"]
        if self.sasl_mechanism is not None and self.sasl_mechanism not in _MECHANISMS:
            return [f"kafka.sasl_mechanism: {self.sasl_mechanism!r} is not one of {', '.join(_MECHANISMS)}"]
        out = self._sasl_problems(proto)
        if not proto.endswith("SSL"):
            set_ = [k for k in (*_SSL_FILES, "ssl_password") if getattr(self, k) is not None]
            if set_:
                out.append(f"kafka.{set_[0]}: set, but security_protocol is {proto}, which does not use TLS "
                           "(SSL or SASL_SSL)")
            return out
        out += self._tls_file_problems()
        return out or self._ssl_problems()

    def _sasl_problems(self, proto: str) -> list[str]:
        """SASL: a mechanism and both credentials with a SASL protocol, no mechanism without one."""
        out: list[str] = []
        if proto.startswith("SASL_"):
            if self.sasl_mechanism is None:
                out.append(f"kafka.sasl_mechanism: required with security_protocol {proto} "
                           "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            for key in ("sasl_plain_username", "sasl_plain_password"):
                if not getattr(self, key):
                    out.append(f"kafka.{key}: required with security_protocol {proto} "
                               f"(e.g. from the environment: DRIFTLOOP__KAFKA__{key.upper()})")
        elif self.sasl_mechanism is not None:   # (a stray username/password is harmless: unused)
            out.append(f"kafka.sasl_mechanism: set, but security_protocol is {proto}, which does not use SASL "
                       "(SASL_PLAINTEXT or SASL_SSL)")
        return out

    def _tls_file_problems(self) -> list[str]:
        """TLS: a key or key password needs the client certificate; every file named exists."""
        out: list[str] = []
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            out.append("kafka.ssl_keyfile: needs kafka.ssl_certfile (the client certificate)")
        if self.ssl_password is not None and self.ssl_certfile is None:
            out.append("kafka.ssl_password: unlocks the client key, so it needs kafka.ssl_certfile")
        for key in _SSL_FILES:
            value = getattr(self, key)
            if value is not None and not _is_file(Path(value)):
                out.append(f"kafka.{key}: file not found: {Path(value).resolve()}")
        return out

    def _ssl_problems(self) -> list[str]:
        """Load the TLS files as kafka-python will: a bad CA file, key or key password fails here, at start."""
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ssl_cafile is not None:
            try:
                ctx.load_verify_locations(self.ssl_cafile)
            except (ssl.SSLError, ValueError) as exc:
                return [f"kafka.ssl_cafile: not a PEM CA certificate file: {self.ssl_cafile} ({exc})"]
        if self.ssl_certfile is None:
            return []
        asked: list[bool] = []

        def password() -> str:   # a callable: without one OpenSSL would prompt on the terminal
            asked.append(True)
            return self.ssl_password or ""

        try:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=password)
        except (ssl.SSLError, ValueError) as exc:
            if asked and self.ssl_password is None:
                return ["kafka.ssl_password: the client key is encrypted; set kafka.ssl_password "
                        "(e.g. DRIFTLOOP__KAFKA__SSL_PASSWORD)"]
            if "MISMATCH" in str(exc):
                hint = "the key does not match the certificate:"
            else:
                hint = "wrong kafka.ssl_password?" if asked else "not PEM?"
            return [f"kafka.ssl_certfile: cannot load the client certificate and key ({hint} {exc})"]
        return []

    def __rich_repr__(self) -> list[tuple[str, Any]]:  # never print a secret
        return [(f, "<hidden>" if f in _SECRETS and getattr(self, f) else getattr(self, f))
                for f in self.__struct_fields__]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python's clients (no secrets are logged from here)."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            # after a broker outage, every client reconnects within 2 s of its return
            # (kafka-python's default backoff grows to 30 s)
            "reconnect_backoff_max_ms": 2_000,
        }
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password", *_SSL_FILES, "ssl_password"):
            value = getattr(self, key)
            if value is not None:
                kw[key] = value
        if self.security_protocol.endswith("SSL"):
            kw["ssl_check_hostname"] = self.ssl_check_hostname
        return kw


class TopicsConfig(ConfigSection):
    """Topic names (the contract's defaults) and how `driftloop topics create` makes them."""

    predictions: str = "driftloop.predictions"
    labels: str = "driftloop.labels"
    alerts: str = "driftloop.alerts"
    retrain: str = "driftloop.retrain"
    models: str = "driftloop.models"
    dlq: str = "driftloop.dlq"
    partitions: int = 6
    replication_factor: int = 1


class StoreConfig(ConfigSection):
    """Where state lives: SQLite by default, PostgreSQL for several monitor instances."""

    url: str = "sqlite:///driftloop.db"
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    busy_timeout_ms: int = 10_000   # a locked SQLite file fails the batch after this; the monitor backs off and retries

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """A PostgreSQL URL may carry the password:

        >>> StoreConfig(url="postgresql://app:s3cret@db:5432/drift")
        StoreConfig(url='postgresql://app:***@db:5432/drift', sqlite_synchronous='NORMAL', busy_timeout_ms=10000)
        """
        from sqlalchemy.engine import make_url

        try:
            url = make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001  (not a URL SQLAlchemy reads: validated elsewhere)
            url = "<hidden>"
        return [(f, url if f == "url" else getattr(self, f)) for f in self.__struct_fields__]


class IngestConfig(ConfigSection):
    """Limits and behaviour of the monitor's consumers."""

    max_message_bytes: int = 1_048_576
    max_events_per_message: int = 10_000
    max_features: int = 2_000
    max_string_chars: int = 1_024
    max_future_skew_s: float = 86_400.0
    max_poll_records: int = 5_000
    poll_timeout_ms: int = 500
    prediction_ttl_s: float = 7 * 86_400.0
    label_ttl_s: float = 7 * 86_400.0
    joined_retention_s: float = 30 * 86_400.0   # joined examples older than this are pruned; 0 = never
    expire_every_s: float = 60.0
    start_from: Literal["earliest", "latest"] = "earliest"
    quarantine_retry_s: float = 30.0         # a model whose detectors failed: first rebuild after this
    quarantine_max_retry_s: float = 900.0    # ... then doubling, at most this (driftloop.monitoring.analysis)
    # allocations between two young garbage collections once the process has started, its start-up
    # heap frozen (driftloop.core.gctune); 0: CPython's defaults
    gc_young_threshold: int = GEN0_THRESHOLD


class VersionsConfig(ConfigSection):
    """Each version of a model that serves traffic has its own detectors
    (:mod:`driftloop.monitoring.versions`); these keys bound how many live at once.

    ``retire_after_s``: a version that served no prediction and had no label joined for this long
    (event time, against the model's newest event) is retired: its detectors are dropped and its
    open alerts resolve. ``max_live``: at most this many versions of one model have detectors; the
    events of a version beyond it are still stored and counted, never judged (logged, counted as
    ``versions_capped``). ``shadow_min_labels``: labelled requests a shadow comparison needs
    before it reports a decision.
    """

    retire_after_s: float = 86_400.0
    max_live: int = 10
    shadow_min_labels: int = 200


class AnalysisConfig(ConfigSection):
    """Where the detectors judge what ingestion committed (:mod:`driftloop.monitoring.journal`).

    ``mode: apart`` (the default): the batch transaction appends the batch's columns to the
    analysis journal and a child process of ``driftloop monitor`` judges them, exactly once,
    beside ingestion, so a window's analysis never stalls ingestion. ``mode: inline``: the
    detectors judge in the batch's transaction, in the monitor's own process (one process, the
    detections committed with the batch; ingestion waits for every window's analysis). ``max_backlog_events``:
    past this many journalled events not judged yet, ingestion pauses its partitions until the
    backlog is under half of it (nothing is dropped). ``max_pause_s``: ``/readyz`` answers 503
    once ingestion has been paused for the backlog this long. ``entries_per_judgement``: journal
    entries one judging transaction takes, at most. ``judge_threads``: native threads (OpenMP,
    BLAS) the judging process may use; 1 leaves ingestion a core on a small machine; null: no
    limit.
    """

    mode: Literal["inline", "apart"] = "apart"
    max_backlog_events: int = 200_000
    max_pause_s: float = 60.0
    entries_per_judgement: int = 20
    judge_threads: int | None = 1


class ModelConfig(ConfigSection):
    """One monitored model: its task, feature types and training reference."""

    task: Literal["classification", "regression", "ranking"]
    features: dict[str, Literal["numeric", "categorical"]]
    reference: str | None = None
    detectors: dict[str, Any] = msgspec.field(default_factory=dict)
    retrain: dict[str, Any] = msgspec.field(default_factory=dict)
    # slices judged on their own (detectors.segments): feature names, or {feature, buckets}
    segments: list[str | dict[str, Any]] = msgspec.field(default_factory=list)

    def monitor_settings(self) -> dict[str, Any]:
        """The ``detectors:`` mapping with the model's ``segments``: what its monitor is built with."""
        return {**self.detectors, "segments": list(self.segments)} if self.segments else dict(self.detectors)

    @property
    def numeric_features(self) -> list[str]:
        return [k for k, v in self.features.items() if v == "numeric"]


class Config(ConfigSection):
    """The whole configuration. ``base_dir`` resolves relative paths (the config file's folder)."""

    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    topics: TopicsConfig = msgspec.field(default_factory=TopicsConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    ingest: IngestConfig = msgspec.field(default_factory=IngestConfig)
    versions: VersionsConfig = msgspec.field(default_factory=VersionsConfig)
    analysis: AnalysisConfig = msgspec.field(default_factory=AnalysisConfig)
    models: dict[str, ModelConfig] = msgspec.field(default_factory=dict)
    alerts: dict[str, Any] = msgspec.field(default_factory=dict)     # validated by driftloop.alerts
    registry: dict[str, Any] = msgspec.field(default_factory=dict)   # validated by retrain
    api: dict[str, Any] = msgspec.field(default_factory=dict)        # validated by driftloop.app.api
    base_dir: str = "."

    def __rich_repr__(self) -> list[tuple[str, Any]]:  # kafka and store hide their own
        return [(f, _hide_secrets(getattr(self, f)) if f in ("alerts", "api") else getattr(self, f))
                for f in self.__struct_fields__]

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _hide_secrets(value: Any) -> Any:
    """A copy of a section's data for ``repr``, with every :data:`_SECTION_SECRETS` value hidden.

    >>> _hide_secrets({"sinks": [{"type": "slack", "url": "https://hooks.slack.com/T/B/x", "secret": None}]})
    {'sinks': [{'type': 'slack', 'url': '<hidden>', 'secret': None}]}
    """
    if isinstance(value, dict):
        return {k: "<hidden>" if k in _SECTION_SECRETS and v not in (None, {}) else _hide_secrets(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secrets(v) for v in value]
    return value


_MAX_DEPTH = 32          # no configuration nests deeper; YAML can, and recursive parsers then fail
_MAX_VALUES = 100_000    # YAML aliases can make a small file expand without bound ("billion laughs")


def _parse_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` (no Python tags) with every parser failure as a ConfigError naming ``what``.

    PyYAML raises more than YAMLError on hostile text: ValueError for a date such as 2024-13-45
    (an implicit timestamp), RecursionError for deep nesting.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what}: not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:   # e.g. month must be in 1..12
        raise ConfigError(f"{what}: not valid YAML: {exc}") from None


def _check_shape(data: Any) -> None:
    """Refuse what a parser can build but no configuration needs: a structure that refers to
    itself, nesting deeper than 32 levels, more than 100,000 values once YAML aliases are
    expanded, and strings holding NUL (U+0000). Runs before anything walks the data recursively.

    >>> bomb = ["lol"] * 10
    >>> for _ in range(8):
    ...     bomb = [bomb] * 10
    >>> _check_shape({"alerts": {"x": bomb}})
    Traceback (most recent call last):
    ...
    driftloop.core.config.ConfigError: configuration: more than 100000 values once YAML aliases are expanded (an alias bomb?)
    """
    budget = [_MAX_VALUES]
    on_path: set[int] = set()

    def name(path: str) -> str:
        return path or "configuration"

    def walk(node: Any, path: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"configuration: more than {_MAX_VALUES} values once YAML aliases are "
                              "expanded (an alias bomb?)")
        if isinstance(node, str):
            if "\x00" in node:
                raise ConfigError(f"{name(path)}: contains a NUL character")
            return
        if not isinstance(node, dict | list | tuple):
            return
        if id(node) in on_path:
            raise ConfigError(f"{name(path)}: refers to itself (a recursive YAML alias)")
        if depth >= _MAX_DEPTH:
            raise ConfigError(f"{name(path)}: nested deeper than {_MAX_DEPTH} levels")
        on_path.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and "\x00" in key:
                    raise ConfigError(f"{name(path)}: a key contains a NUL character")
                walk(value, f"{path}.{key}" if path else str(key), depth + 1)
        else:
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]", depth + 1)
        on_path.discard(id(node))

    walk(data, "", 0)


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            # copied on the way down: the caller's nested dicts are not changed
            child = node[part] = dict(child) if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = _parse_yaml(raw, f"environment variable {name}")
    return data


_INT32_MAX = 2**31 - 1    # Kafka's protocol fields (sizes, timeouts, counts) are 32-bit


def _check_numbers(cfg: Config) -> None:
    """The numeric keys of the kafka, topics, store and ingest sections (ranges, signs, orders)."""
    _check_number_types(cfg)
    for key in ("session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms", "request_timeout_ms"):
        if getattr(cfg.kafka, key) <= 0:
            raise ConfigError(f"kafka.{key}: must be positive")
    if cfg.topics.replication_factor > 32767:
        raise ConfigError("topics.replication_factor: at most 32767")
    if cfg.store.busy_timeout_ms < 0:
        raise ConfigError("store.busy_timeout_ms: must be >= 0")
    _check_ingest_numbers(cfg.ingest)
    if not cfg.versions.retire_after_s > 0:
        raise ConfigError("versions.retire_after_s: must be positive")
    if cfg.versions.max_live < 1:
        raise ConfigError("versions.max_live: must be at least 1")
    if cfg.versions.shadow_min_labels < 1:
        raise ConfigError("versions.shadow_min_labels: must be at least 1")
    for key in ("max_backlog_events", "entries_per_judgement", "judge_threads"):
        if getattr(cfg.analysis, key) is not None and getattr(cfg.analysis, key) < 1:
            raise ConfigError(f"analysis.{key}: must be at least 1")
    if not cfg.analysis.max_pause_s > 0:
        raise ConfigError("analysis.max_pause_s: must be positive")


def _check_number_types(cfg: Config) -> None:
    """Every int of those sections fits Kafka's 32-bit fields; every float is finite."""
    for section in ("kafka", "topics", "store", "ingest", "versions", "analysis"):
        obj = getattr(cfg, section)
        for key in obj.__struct_fields__:
            value = getattr(obj, key)
            if type(value) is int and not -_INT32_MAX <= value <= _INT32_MAX:
                raise ConfigError(f"{section}.{key}: {value} is out of range (at most {_INT32_MAX})")
            if type(value) is float and not math.isfinite(value):
                raise ConfigError(f"{section}.{key}: must be a finite number, got {value}")


def _check_ingest_numbers(ingest: IngestConfig) -> None:
    """The ``ingest`` section's durations: skew, TTLs, retention, quarantine back-off."""
    if ingest.max_future_skew_s < 0:
        raise ConfigError("ingest.max_future_skew_s: must be >= 0")
    if ingest.joined_retention_s < 0:
        raise ConfigError("ingest.joined_retention_s: must be >= 0 (0 keeps joined examples forever)")
    for key in ("prediction_ttl_s", "label_ttl_s", "expire_every_s"):
        if getattr(ingest, key) <= 0:
            raise ConfigError(f"ingest.{key}: must be positive")
    if ingest.max_future_skew_s > 10 * 365 * 86_400:
        raise ConfigError("ingest.max_future_skew_s: at most ten years (315360000 s)")
    for key in ("quarantine_retry_s", "quarantine_max_retry_s"):
        if getattr(ingest, key) <= 0:
            raise ConfigError(f"ingest.{key}: must be positive")
    if ingest.quarantine_max_retry_s < ingest.quarantine_retry_s:
        raise ConfigError("ingest.quarantine_max_retry_s: must be >= ingest.quarantine_retry_s")


def _check_detectors(name: str, settings: dict[str, Any], task: str = "classification") -> None:
    """The ``detectors:`` mapping of one model, as its monitor's settings read it
    (:class:`detectors.model_monitor.MonitorSettings`, or :class:`detectors.ranking_monitor.RankingSettings`
    for a ranking model)."""
    import dataclasses

    from detectors.model_monitor import MonitorSettings
    from detectors.ranking_monitor import RankingSettings

    schema: Any = RankingSettings if task == "ranking" else MonitorSettings
    where = f"models.{name}.detectors"
    known = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(set(settings) - known)
    if unknown:
        what = " for a ranking model" if task == "ranking" else ""
        raise ConfigError(f"{where}: unknown settings {unknown}{what} (known: {', '.join(sorted(known))})")
    try:   # strict: the monitor takes these values as they are, without conversion
        msgspec.convert(settings, schema, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_segments(name: str, model: ModelConfig) -> None:
    """``models.<name>.segments``: each a feature of the model; a numeric one with buckets."""
    from detectors.segments import parse_segments

    if "segments" in model.detectors:
        raise ConfigError(f"models.{name}.detectors.segments: give segments as models.{name}.segments")
    try:
        parse_segments(model.segments, model.features)
    except ValueError as exc:
        raise ConfigError(f"models.{name}.{exc}") from None


def _section(where: str, check: Any, *args: Any) -> None:
    """Run another module's validator; anything but a ConfigError from it is still reported as one."""
    try:
        check(*args)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise ConfigError(f"{where}: invalid ({type(exc).__name__}: {exc})") from None


def _check(cfg: Config) -> Config:
    from driftloop.core.config.alerts import AlertsConfig
    from driftloop.core.config.api import ApiConfig
    from driftloop.core.config.retrain import validate as validate_retrain

    _check_numbers(cfg)
    _section("alerts", AlertsConfig.from_dict, cfg.alerts)
    _section("api", ApiConfig.from_dict, cfg.api)
    _section("models (retrain) / registry", validate_retrain, cfg)
    if cfg.store.url.startswith("sqlite:///") is False and not cfg.store.url.startswith(
        ("sqlite://", "postgresql://", "postgresql+psycopg://", "postgres://")
    ):
        raise ConfigError(f"store.url: unsupported database URL {cfg.store.url!r} (sqlite or postgresql)")
    for section, limits in (
        ("ingest", ("max_message_bytes", "max_events_per_message", "max_features", "max_string_chars",
                    "max_poll_records", "poll_timeout_ms")),
        ("topics", ("partitions", "replication_factor")),
    ):
        for key in limits:
            if getattr(getattr(cfg, section), key) <= 0:
                raise ConfigError(f"{section}.{key}: must be positive")
    for name, model in cfg.models.items():
        if not name or len(name) > 128:
            raise ConfigError(f"models: model name {name!r} must be 1-128 characters")
        if not model.features:
            raise ConfigError(f"models.{name}.features: at least one feature is required")
        if model.reference is not None and not _is_file(cfg.resolve(model.reference)):
            raise ConfigError(f"models.{name}.reference: file not found: {str(cfg.resolve(model.reference))[:300]}")
        if model.detectors:
            _section(f"models.{name}.detectors", _check_detectors, name, model.detectors, model.task)
        if model.segments and model.task == "ranking":
            raise ConfigError(f"models.{name}.segments: segments are judged for classifiers and regressors; "
                              "a ranking model's requests are judged as one")
        if model.segments or "segments" in model.detectors:
            _check_segments(name, model)
    return cfg


def load_config_dict(data: dict[str, Any], *, base_dir: str | os.PathLike[str] = ".",
                     environ: dict[str, str] | None = None) -> Config:
    """Validate a configuration given as a dict (after applying environment overrides).

    Only :class:`ConfigError` comes out of here for bad input, with the key in its message.
    """
    if not isinstance(data, dict):
        raise ConfigError("configuration must be a mapping at the top level")
    data = _apply_env(dict(data), dict(os.environ if environ is None else environ))
    _check_shape(data)
    data.setdefault("base_dir", str(base_dir))
    kafka = data.get("kafka")
    if isinstance(kafka, dict):   # TLS files relative to the config file's folder, like models.reference
        data["kafka"] = {k: (str(Path(str(data["base_dir"])) / v)
                             if k in _SSL_FILES and isinstance(v, str) and v and not Path(v).is_absolute() else v)
                         for k, v in kafka.items()}
    try:
        cfg = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_name_model(str(exc), data)}") from None
    return _check(cfg)


def _name_model(text: str, data: dict[str, Any]) -> str:
    """msgspec writes a model's key as ``$.models[...]``: name the model instead."""
    models = data.get("models")
    if "$.models[...]" not in text or not isinstance(models, dict):
        return text
    for name, body in models.items():
        try:
            msgspec.convert(body, ModelConfig, strict=False)
        except msgspec.ValidationError:
            return text.replace("$.models[...]", f"$.models.{name}")
    return text


def load_config_text(text: str | bytes, *, fmt: Literal["yaml", "toml"] = "yaml",
                     base_dir: str | os.PathLike[str] = ".", environ: dict[str, str] | None = None,
                     source: str = "configuration") -> Config:
    """Parse YAML or TOML text (bytes must be UTF-8) and validate it; ``source`` names it in errors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 (byte {exc.start})") from None
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    else:
        data = _parse_yaml(text, source)
    return load_config_dict({} if data is None else data, base_dir=base_dir, environ=environ)


def load_config(path: str | os.PathLike[str], *, environ: dict[str, str] | None = None) -> Config:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file and validate it."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {p}: {exc.strerror}") from None
    return load_config_text(text, fmt="toml" if p.suffix == ".toml" else "yaml", base_dir=p.parent.resolve(),
                            environ=environ, source=str(p))
