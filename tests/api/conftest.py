"""Fixtures of the API tests: a seeded store (real detectors, alerts and registry; no broker)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from driftloop.app.api import create_app
from tests.api.seed import Seeded, seed
from tests.deps import require_binary, require_module

TOKEN = "test-token-3f9a"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium (/usr/bin/chromium) with Playwright")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium the browser tests drive, and Playwright to drive it: a missing one skips
    them here and fails them under CI (.ci/run installs Debian's chromium; Playwright is a test
    extra)."""
    require_module("playwright.sync_api")
    return require_binary("chromium", "/usr/bin/chromium")    # the path test_dashboard_browser.CHROMIUM finds


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Read-only: tests using it must not change the store."""
    s = seed(tmp_path_factory.mktemp("seeded"))
    yield s
    s.store.dispose()


@pytest.fixture(scope="session")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Read-only: a seeded store whose model judges the segments of ``country``, with a model
    wrong for Italy and a broken pipeline late in the run (``seed(segments=True)``)."""
    s = seed(tmp_path_factory.mktemp("segmented"), segments=True)
    yield s
    s.store.dispose()


@pytest.fixture(scope="session")
def client(seeded: Seeded) -> TestClient:
    with TestClient(create_app(seeded.cfg, seeded.store, token=TOKEN)) as c:
        yield c


@pytest.fixture(scope="module")
def mutable(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """A seeded store of its own, for the tests that change it (one module)."""
    s = seed(tmp_path_factory.mktemp("mutable"), windows=24)
    yield s
    s.store.dispose()


class FakeMonitor:
    """What the API reads of :class:`consumers.monitor.Monitor`: stats, expected, lag."""

    def __init__(self, assigned: bool = True) -> None:
        from consumers.monitor import MonitorStats

        self.stats = MonitorStats(batches=12, records=24_000, fenced=1, last_batch_ms=250.0, poll_s=1.5,
                                  prepare_s=2.0, commit_s=4.0, outbox_s=0.5)
        self.expected: dict[tuple[str, int], Any] = (
            {("driftloop.predictions", 0): 1000, ("driftloop.labels", 0): 900} if assigned else {})
        self.lag = {("driftloop.predictions", 0): 42, ("driftloop.labels", 0): 7} if assigned else {}


def app_for(s: Seeded, **kw: Any) -> TestClient:
    return TestClient(create_app(s.cfg, s.store, **kw))


__all__ = ["TOKEN", "FakeMonitor", "app_for", "Path"]
