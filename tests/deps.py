"""What the tests need from the machine, and what happens when it is missing.

Locally a missing dependency skips the tests that need it, naming it and how to get it. Under
the environment variable ``CI`` (``.ci/run`` sets ``CI=true``) it FAILS them instead: CI
installs everything, so a dependency missing there is a broken CI set-up that would otherwise
hide tests behind a "skipped" line nobody reads.

* :func:`require_module` replaces ``pytest.importorskip``;
* :func:`require_binary` replaces a ``skipif(not Path(...).exists())`` on a program;
* :func:`missing` is the one place that decides skip-or-fail, for the other cases (a service
  that is not running, a dedicated server that did not start, a tmpfs that cannot be mounted);
* the ``pytest_runtest_makereport`` / ``pytest_make_collect_report`` hooks below (registered by
  ``tests/conftest.py``) are the safety net: under ``CI`` ANY skip, wherever it comes from (a
  bare ``pytest.skip`` or ``importorskip`` added later, a ``skipif`` mark), is reported as a
  failure naming the skip's reason. A test that may legitimately skip in CI says so with
  ``@pytest.mark.allow_skip_in_ci(reason=...)`` (none does today). ``xfail`` is not a skip.

Where each dependency comes from in CI (the message of a failure says it):

==================  =========================================================================
river               pip, the ``test`` extra (``make setup``: ``pip install -e ".[test,demo]"``)
confluent_kafka     pip, the ``test`` extra
psycopg             pip, the ``test`` extra (``psycopg[binary]``)
playwright          pip, the ``test`` extra (drives the system Chromium; no browser download)
chromium            apt: ``.ci/run`` installs Debian's ``chromium`` when ``command -v chromium``
                    finds none
mlflow              pip, the ``test`` extra (``mlflow-skinny``, the client)
Kafka, PostgreSQL,  started by ``.ci/run`` / ``make test`` (scripts/kafka.sh, scripts/postgres.sh,
MLflow server       scripts/mlflow.sh: the full ``mlflow`` in a venv of its own, ``.mlflow-venv``)
==================  =========================================================================

Every skip in the suite, and what it does under ``CI`` (decided one by one):

* ``tests/conftest.py``: no broker / no SASL or TLS listener / no PostgreSQL server / no MLflow
  server, and psycopg or mlflow not importable: :func:`missing` / :func:`require_module`, fail in CI;
* ``tests/detectors/test_concept_river.py``: River, :func:`require_module` (a fixture, so a
  missing River fails those tests rather than the collection of the whole run);
* ``tests/integration/test_pipeline_kafka.py``: confluent-kafka, :func:`require_module`;
* ``tests/api/test_dashboard_*.py``: Chromium and Playwright, the ``chromium`` fixture of
  ``tests/api/conftest.py`` (:func:`require_binary`, :func:`require_module`);
* ``tests/integration/test_broker_faults.py`` (dedicated broker did not start) and
  ``tests/integration/test_store_faults.py`` (tmpfs needs root, dedicated PostgreSQL did not
  start): already fail under CI through ``fault_helpers.in_ci()``, the same test as here;
  psycopg there and in ``tests/integration/test_chaos.py``: :func:`require_module`.

>>> import os, pytest
>>> require_module("json").__name__
'json'
>>> try:
...     require_module("no_such_module_for_the_doctest")
... except (pytest.skip.Exception, pytest.fail.Exception) as exc:
...     kind = "failed" if isinstance(exc, pytest.fail.Exception) else "skipped"
>>> kind == ("failed" if in_ci() else "skipped")
True
"""
from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

__all__ = ["in_ci", "missing", "require_module", "require_binary", "find_binary", "HOW_CI_INSTALLS"]

_PIP_TEST_EXTRA = 'pip, the "test" extra of pyproject.toml (make setup: pip install -e ".[test,demo]")'
HOW_CI_INSTALLS: dict[str, str] = {
    "river": _PIP_TEST_EXTRA,
    "confluent_kafka": _PIP_TEST_EXTRA,
    "psycopg": _PIP_TEST_EXTRA + ", as psycopg[binary]",
    "playwright": _PIP_TEST_EXTRA + " (it drives the system Chromium; no browser download)",
    "mlflow": _PIP_TEST_EXTRA + ", as mlflow-skinny (the client; the server is scripts/mlflow.sh's own venv)",
    "chromium": "apt: .ci/run runs `apt-get install chromium` when `command -v chromium` finds none",
}
CI_ALLOW_MARKER = "allow_skip_in_ci"


def in_ci() -> bool:
    """True under the environment variable ``CI`` (any non-empty value, like ``fault_helpers.in_ci``)."""
    return bool(os.environ.get("CI"))


def missing(msg: str) -> NoReturn:
    """Something a test needs is not there: skip locally, fail under ``CI``.

    Works inside a test, a fixture and at module level (``allow_module_level``).
    """
    if in_ci():
        pytest.fail(f"{msg} - under CI (the environment variable CI is set) a missing dependency fails "
                    "the test instead of skipping it", pytrace=False)
    pytest.skip(f"{msg} (skipped here; under CI this fails)", allow_module_level=True)


def _how(name: str) -> str:
    root = name.split(".")[0]
    return HOW_CI_INSTALLS.get(root, "not installed by .ci/run: add it to the test extra or to .ci/run")


def require_module(name: str) -> ModuleType:
    """Import ``name``, or :func:`missing` naming it and how CI installs it (replaces ``importorskip``).

    Only a module that is not there (``ModuleNotFoundError``) counts as missing; one that is there
    but breaks on import raises, like ``pytest.importorskip`` since pytest 8.2.

    >>> require_module("os.path").join("a", "b")
    'a/b'
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing(f"the Python module {name!r} cannot be imported ({type(exc).__name__}: {exc}); "
                f"CI installs it with {_how(name)}")


def find_binary(name: str, *fallbacks: str) -> str | None:
    """The program ``name`` on ``PATH``, else the first existing of ``fallbacks``, else None."""
    found = shutil.which(name)
    if found:
        return found
    return next((f for f in fallbacks if Path(f).is_file() and os.access(f, os.X_OK)), None)


def require_binary(name: str, *fallbacks: str) -> str:
    """The path of the program ``name`` (see :func:`find_binary`), or :func:`missing` naming it.

    >>> require_binary("sh").endswith("/sh")
    True
    """
    path = find_binary(name, *fallbacks)
    if path is None:
        where = ", ".join(("PATH", *fallbacks))
        missing(f"the program {name!r} is not installed (looked in {where}); CI installs it with {_how(name)}")
    return path


# -- the safety net: under CI no skip goes through ------------------------------------------------
def _skip_reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:     # (path, lineno, "Skipped: ...")
        return f"{longrepr[2]} ({longrepr[0]}:{longrepr[1]})"
    return str(longrepr)


def _as_ci_failure(report: Any) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI, which fails instead: {_skip_reason(report.longrepr)}\n"
                       "(CI installs and starts every dependency; see tests/deps.py. A test that may skip in CI "
                       f"says so with @pytest.mark.{CI_ALLOW_MARKER}(reason=...))")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    """Under ``CI``, a skipped setup or call of a test is a failure (xfail stays xfail)."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and in_ci() and not hasattr(report, "wasxfail")
            and item.get_closest_marker(CI_ALLOW_MARKER) is None):
        _as_ci_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """Under ``CI``, a module skipped while collected (module-level skip) is a collection error."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        _as_ci_failure(report)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CI_ALLOW_MARKER}(reason): this test may skip under CI (tests/deps.py)")
