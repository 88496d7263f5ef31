"""Shared fixtures: the real local Kafka broker, isolated topics per test, temporary stores.

A missing dependency skips locally and fails under ``CI`` (tests/deps.py, whose hooks are
registered here: under ``CI`` no skip goes through)."""
from __future__ import annotations

import copy
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from driftloop.core.config import Config, load_config
from tests.deps import missing, pytest_configure, pytest_make_collect_report, pytest_runtest_makereport, require_module  # noqa: F401 - hooks
from tests.kafka_helpers import isolated_kafka

BOOTSTRAP = os.environ.get("DRIFTLOOP_TEST_BOOTSTRAP", "127.0.0.1:9092")

# Folders whose files run first, in this order: they hold the long tests (SIGKILL and chaos runs,
# the million-event false-alarm checks). Under pytest-xdist (``make test``) a worker that starts
# with them ends the run with short files, instead of one long file starting last.
LONG_FIRST = ("tests/integration/", "tests/detectors/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the run: :data:`LONG_FIRST` folders first, everything else after (a stable sort)."""
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))
    items.sort(key=rank)


def _broker_up(bootstrap: str) -> str | None:
    return _answers(bootstrap_servers=bootstrap.split(","))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    err = _broker_up(BOOTSTRAP)
    if err is not None:
        missing(f"no Kafka broker at {BOOTSTRAP} ({err}); start it with `scripts/kafka.sh start` "
                "(make test and .ci/run start it)")
    return BOOTSTRAP


def _broker_missing(msg: str) -> None:
    """A listener the tests need is not there: fail in CI, skip (with the reason) elsewhere."""
    missing(msg + " (make test and .ci/run start it)")


def _listener(var: str, port_var: str, port: int) -> str:
    """A listener's address: DRIFTLOOP_TEST_..., else 127.0.0.1 and the port scripts/kafka.sh was given."""
    return os.environ.get(var) or f"127.0.0.1:{os.environ.get(port_var) or port}"


@dataclass(frozen=True)
class SecureListeners:
    """The local broker's SASL and TLS listeners (scripts/kafka.sh with KAFKA_SASL=1 KAFKA_TLS=1) and credentials."""

    sasl: str                 # SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    tls: str                  # SSL (a client certificate is optional)
    sasl_ssl: str             # SASL_SSL: the same mechanisms
    user: str
    password: str
    tls_dir: Path             # ca.pem, client.pem, client.key (encrypted with key_password)
    key_password: str

    @property
    def ca(self) -> str:
        return str(self.tls_dir / "ca.pem")


SECURE = SecureListeners(
    sasl=_listener("DRIFTLOOP_TEST_SASL_BOOTSTRAP", "KAFKA_SASL_PORT", 9094),
    tls=_listener("DRIFTLOOP_TEST_TLS_BOOTSTRAP", "KAFKA_TLS_PORT", 9095),
    sasl_ssl=_listener("DRIFTLOOP_TEST_SASL_SSL_BOOTSTRAP", "KAFKA_SASL_SSL_PORT", 9096),
    user=os.environ.get("KAFKA_SASL_USER") or "driftloop",
    password=os.environ.get("KAFKA_SASL_PASSWORD") or "driftloop-secret",
    tls_dir=Path(os.environ.get("DRIFTLOOP_TEST_TLS_DIR")
                 or Path(os.environ.get("KAFKA_DIR") or Path(__file__).resolve().parents[1] / ".kafka") / "tls"),
    key_password=os.environ.get("KAFKA_TLS_PASSWORD") or "driftloop-tls",
)


def _answers(**client: object) -> str | None:
    """None if a metadata request through these client settings succeeds, else why not."""
    from kafka import KafkaAdminClient
    try:
        admin = KafkaAdminClient(request_timeout_ms=5000, bootstrap_timeout_ms=5000, **client)
        admin.list_topics()
        admin.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means no broker: the reason is reported
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def kafka_sasl(kafka_bootstrap) -> SecureListeners:
    """The SASL_PLAINTEXT listener (checked with SCRAM-SHA-512, so SCRAM credentials are there too)."""
    err = _answers(bootstrap_servers=[SECURE.sasl], security_protocol="SASL_PLAINTEXT",
                   sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=SECURE.user, sasl_plain_password=SECURE.password)
    if err is not None:
        _broker_missing(f"no SASL/SCRAM listener at {SECURE.sasl} ({err}); "
                        "start the broker with KAFKA_SASL=1 scripts/kafka.sh start")
    return SECURE


@pytest.fixture(scope="session")
def kafka_tls(kafka_bootstrap) -> SecureListeners:
    """The SSL and SASL_SSL listeners and the dev CA that signed the broker's certificate."""
    if not (SECURE.tls_dir / "ca.pem").is_file():
        _broker_missing(f"no dev CA at {SECURE.tls_dir}/ca.pem; start the broker with KAFKA_TLS=1 scripts/kafka.sh start")
    for addr, client in ((SECURE.tls, {"security_protocol": "SSL"}),
                         (SECURE.sasl_ssl, {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
                                            "sasl_plain_username": SECURE.user, "sasl_plain_password": SECURE.password})):
        err = _answers(bootstrap_servers=[addr], ssl_cafile=SECURE.ca, **client)
        if err is not None:
            _broker_missing(f"no {client['security_protocol']} listener at {addr} ({err}); "
                            "start the broker with KAFKA_SASL=1 KAFKA_TLS=1 scripts/kafka.sh start")
    return SECURE


MODELS = {
    "fraud": {"task": "classification", "features": {"amount": "numeric", "age": "numeric", "country": "categorical"}},
    "price": {"task": "regression", "features": {"x": "numeric"}},
}


@pytest.fixture
def make_config(tmp_path: Path):
    """Write a config with unique topics/group for one test; returns (path, Config)."""

    def make(bootstrap: str = BOOTSTRAP, store_url: str | None = None, **overrides) -> tuple[Path, Config]:
        tag = uuid.uuid4().hex[:10]
        data = {
            **isolated_kafka(bootstrap, tag),
            "store": {"url": store_url or f"sqlite:///{tmp_path}/driftloop-{tag}.db"},
            "ingest": {"poll_timeout_ms": 200, "max_poll_records": 2000},
            "api": {"enabled": False},
            "models": copy.deepcopy(MODELS),   # an override of models__NAME must not leak into the next test
        }
        for key, value in overrides.items():
            section, _, name = key.partition("__")
            data.setdefault(section, {})[name] = value
        path = tmp_path / f"config-{tag}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path, load_config(path, environ={})

    return make


MLFLOW_URI = os.environ.get("DRIFTLOOP_TEST_MLFLOW") or f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT') or 5055}"


@pytest.fixture(scope="session")
def mlflow_uri() -> str:
    """The local MLflow tracking server (scripts/mlflow.sh start; `make test` and .ci/run start it
    once for the session), and the MLflow client (the test extra's mlflow-skinny)."""
    import urllib.request

    require_module("mlflow")
    try:
        with urllib.request.urlopen(MLFLOW_URI + "/health", timeout=5) as r:
            ok = r.status == 200 and r.read().strip() == b"OK"
    except OSError as exc:
        ok, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = "its /health did not answer OK"
    if not ok:
        missing(f"no MLflow tracking server at {MLFLOW_URI} ({why}); start it with `scripts/mlflow.sh start` "
                "(make test and .ci/run start it)")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return MLFLOW_URI


PG_URL = os.environ.get("DRIFTLOOP_TEST_PG", "postgresql://driftloop@127.0.0.1:55432/driftloop")


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty database on the local PostgreSQL server (scripts/postgres.sh start)."""
    psycopg = require_module("psycopg")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing(f"no PostgreSQL at {PG_URL} ({exc}); start it with `scripts/postgres.sh start` "
                "(make test and .ci/run start it)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
