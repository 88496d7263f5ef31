from __future__ import annotations

import pytest

from driftloop.core.store import Store
from tests.alerts.helpers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def sqlite_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/alerts.db")
    store.create_schema()
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request, tmp_path):
    """The same tests on SQLite and on PostgreSQL (skipped when no server runs)."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path}/alerts.db")
    else:
        store = Store(request.getfixturevalue("postgres_url"))
    store.create_schema()
    yield store
    store.dispose()
