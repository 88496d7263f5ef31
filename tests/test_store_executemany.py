"""``Store.executemany`` (the ingest hot path, straight on the DBAPI cursor) raises the same
SQLAlchemy exceptions as every other statement, so that the monitor's store-outage handling
(``consumers.monitor.STORE_ERRORS``: retry the batch with backoff) sees a driver error raised
mid-insert (PostgreSQL's ``DiskFull`` "could not extend file", a connection cut by a restart)
instead of crashing on the driver's own exception class (found by ``bench/chaos.py`` on
PostgreSQL: the monitor exited with ``psycopg.errors.DiskFull`` when the disk filled)."""
from __future__ import annotations

import pytest
import sqlalchemy.exc

from consumers.monitor import STORE_ERRORS
from driftloop.core.config import StoreConfig
from driftloop.core.store import Store


def test_a_driver_error_in_executemany_is_a_sqlalchemy_store_error(tmp_path):
    store = Store.from_config(StoreConfig(url=f"sqlite:///{tmp_path}/s.db"))
    store.create_schema()
    try:
        with store.engine.begin() as conn, pytest.raises(STORE_ERRORS) as info:
            store.executemany(conn, "INSERT INTO no_such_table VALUES (?)", [[1]])
        assert isinstance(info.value, sqlalchemy.exc.OperationalError)
        assert "no_such_table" in str(info.value)
    finally:
        store.dispose()
