"""The state store: SQLite (WAL) by default, PostgreSQL through a URL; SQLAlchemy Core only.

Everything the monitor must not lose lives here and is written in ONE transaction per consumed
batch: joined/pending examples, counters, detector state, outbox rows (dead letters, alerts)
and the consumed offsets. A crash before the commit loses the whole batch (it is consumed again
from the stored offsets); a crash after it loses nothing. See :mod:`consumers.monitor`.

Concurrency: on SQLite every write transaction is ``BEGIN IMMEDIATE`` (one writer at a time, so
read-then-write inside it is safe). On PostgreSQL a batch takes a transaction-scoped advisory
lock per model it touches (sorted, so no deadlock) and locks its offset rows, which gives the
same guarantee per model with several monitor processes.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from driftloop.core.tables import counters, detector_state, examples, metadata, offsets, outbox

__all__ = ["Store", "metadata", "offsets", "examples", "counters", "outbox", "detector_state", "now_ms",
           "lock_models"]


UNATTRIBUTED = "_unattributed"
"""Counter bucket for invalid messages whose model cannot be read."""


def now_ms() -> int:
    return int(time.time() * 1000)


def lock_models(conn: Connection, models: Iterable[str]) -> None:
    """Take the per-model write locks in ``conn``'s transaction: PostgreSQL transaction-scoped
    advisory locks, in sorted order (so no deadlock); nothing on SQLite (one writer at a time).
    For code that has a connection but no :class:`Store` (``consumers.join.expire_pending``)."""
    if conn.dialect.name == "sqlite":
        return
    for model in sorted(set(models)):
        key = int.from_bytes(hashlib.blake2b(model.encode(), digest_size=8).digest(), "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _normalise_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def add_missing_columns(conn: Connection) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for each column of :data:`~driftloop.core.tables.metadata` missing from an
    existing table (a store written by an older release); returns ``table.column`` names.

    Only columns that can be added to a table with rows qualify: nullable, or with a
    ``server_default`` (the old rows take it). Runs in the caller's transaction, so a crash
    leaves the table as it was (SQLite and PostgreSQL both have transactional DDL).
    """
    inspector = sa.inspect(conn)
    existing_tables = set(inspector.get_table_names())
    prep = conn.dialect.identifier_preparer
    added = []
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for col in table.columns:
            if col.name in have:
                continue
            if not col.nullable and col.server_default is None:
                raise RuntimeError(f"{table.name}.{col.name}: a column added to an existing table needs a "
                                   "server_default or nullable=True")
            ddl = sa.schema.CreateColumn(col).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {ddl}")
            added.append(f"{table.name}.{col.name}")
    return added


class Store:
    """Connection pool plus the few statements every part of driftloop shares."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> None:
        self.url = _normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._read_engine: Engine | None = None
        if self.is_sqlite:
            self.engine: Engine = sa.create_engine(
                self.url, connect_args={"timeout": busy_timeout_ms / 1000, "isolation_level": None})
            sync = sqlite_synchronous

            @sa.event.listens_for(self.engine, "connect")
            def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={sync}")
                cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                # 64 MiB page cache (default 2 MiB): random event ids touch pages all over the
                # examples key b-tree; a bigger cache halves the cost of an insert once it is large
                cur.execute("PRAGMA cache_size=-65536")
                cur.close()

            @sa.event.listens_for(self.engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # connect_timeout: an unreachable host fails a batch in 10 s (then back-off) instead of the OS's TCP timeout
            self.engine = sa.create_engine(self.url, pool_pre_ping=True, connect_args={"connect_timeout": 10})

    @classmethod
    def from_config(cls, store_cfg: Any) -> Store:
        return cls(store_cfg.url, sqlite_synchronous=store_cfg.sqlite_synchronous,
                   busy_timeout_ms=store_cfg.busy_timeout_ms)

    def create_schema(self) -> None:
        """Create every missing table of :mod:`driftloop.core.tables` (the whole schema, whatever
        modules this process imported), and add the columns a newer release declares to the tables
        an older one created (:func:`add_missing_columns`); safe when several processes start at
        once. One transaction: a crash leaves the schema as it was (transactional DDL)."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:  # concurrent CREATE TABLE races on PostgreSQL's catalog
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7352001)"))
            metadata.create_all(conn)
            add_missing_columns(conn)

    @property
    def read_engine(self) -> Engine:
        """The engine for reads that must neither wait for a writer nor hold one up.

        On SQLite :attr:`engine` starts every transaction with ``BEGIN IMMEDIATE`` (the write
        lock), reads included; this second engine runs in autocommit mode: each statement reads
        a consistent WAL snapshot and takes no lock (two statements may see two snapshots). On
        PostgreSQL (MVCC), or an in-memory SQLite database only its engine sees, it is
        :attr:`engine`.
        """
        if not self.is_sqlite or self.engine.url.database in (None, "", ":memory:"):
            return self.engine
        if self._read_engine is None:
            self._read_engine = sa.create_engine(self.url, connect_args={"timeout": 30, "isolation_level": None})
        return self._read_engine

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        with self.engine.begin() as conn:
            yield conn

    # -- locking -----------------------------------------------------------------------------
    def lock_models(self, conn: Connection, models: Iterable[str]) -> None:
        """Serialise writers per model on PostgreSQL (SQLite already has one writer)."""
        if not self.is_sqlite:
            lock_models(conn, models)

    # -- counters ----------------------------------------------------------------------------
    def add_counters(self, conn: Connection, deltas: dict[tuple[str, str], int]) -> None:
        rows = [{"model": m, "name": n, "value": v} for (m, n), v in deltas.items() if v]
        if not rows:
            return
        ins = self._insert(counters)
        conn.execute(ins.on_conflict_do_update(
            index_elements=["model", "name"], set_={"value": counters.c.value + ins.excluded.value}), rows)

    def read_counters(self, conn: Connection | None = None) -> dict[str, dict[str, int]]:
        """Every model's counters; without ``conn``, one lock-free read (:attr:`read_engine`): a
        poller (``driftloop stats``, a test, the demo) never waits behind a long ingest batch."""
        out: dict[str, dict[str, int]] = {}
        with (nullcontext(conn) if conn is not None else self.read_engine.connect()) as c:
            for model, name, value in c.execute(sa.select(counters.c.model, counters.c.name, counters.c.value)):
                out.setdefault(model, {})[name] = int(value)
        return out

    # -- outbox ------------------------------------------------------------------------------
    def add_outbox(self, conn: Connection, topic: str, items: list[tuple[bytes | None, bytes]], ts: int) -> None:
        if items:
            conn.execute(outbox.insert(), [
                {"topic": topic, "key": k, "value": v, "created_at": ts} for k, v in items])

    def unsent_outbox(self, limit: int = 1000, topics: list[str] | None = None) -> list[Any]:
        q = sa.select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value).where(outbox.c.sent_at.is_(None))
        if topics is not None:
            q = q.where(outbox.c.topic.in_(topics))
        with self.engine.connect() as c:
            return list(c.execute(q.order_by(outbox.c.id).limit(limit)))

    def mark_sent(self, ids: list[int], ts: int) -> None:
        if not ids:
            return
        with self.transaction() as c:
            for i in range(0, len(ids), 500):
                c.execute(outbox.update().where(outbox.c.id.in_(ids[i:i + 500])).values(sent_at=ts))

    # -- detector state ----------------------------------------------------------------------
    def save_detector_state(self, conn: Connection, model: str, blob: bytes, ts: int, *, generation: int = 0,
                            reference_version: str | None = None) -> None:
        ins = self._insert(detector_state)
        conn.execute(ins.on_conflict_do_update(
            index_elements=["model"], set_={k: getattr(ins.excluded, k) for k in
                                            ("state", "updated_at", "generation", "reference_version")}),
            {"model": model, "state": blob, "updated_at": ts, "generation": generation,
             "reference_version": reference_version})

    def load_detector_state(self, model: str, conn: Connection | None = None) -> bytes | None:
        row = self.detector_state_row(model, conn)
        return None if row is None else row[0]

    def detector_state_row(self, model: str, conn: Connection | None = None) -> tuple[bytes, int, str | None] | None:
        """``(state, generation, reference_version)`` of a model, or None."""
        with self._conn(conn) as c:
            row = c.execute(sa.select(detector_state.c.state, detector_state.c.generation,
                                      detector_state.c.reference_version)
                            .where(detector_state.c.model == model)).first()
        return None if row is None else (bytes(row[0]), int(row[1]), row[2])

    def detector_reference_version(self, model: str, conn: Connection | None = None) -> tuple[bool, str | None]:
        """``(stored, reference_version)`` of a model's stored detectors, without the state."""
        with self._conn(conn) as c:
            row = c.execute(sa.select(detector_state.c.reference_version)
                            .where(detector_state.c.model == model)).first()
        return (False, None) if row is None else (True, row[0])

    def detector_generation(self, conn: Connection, model: str) -> int | None:
        row = conn.execute(sa.select(detector_state.c.generation).where(detector_state.c.model == model)).first()
        return None if row is None else int(row[0])

    # -- hot path ----------------------------------------------------------------------------
    def executemany(self, conn: Connection, sql: str, rows: list[tuple] | list[list]) -> None:
        """Run ``sql`` (``?`` placeholders) for every row straight on the DBAPI cursor.

        For the ingest hot path only: SQLAlchemy's per-row parameter processing costs more than
        SQLite's insert itself. The statement runs inside ``conn``'s transaction.
        """
        if not rows:
            return
        if not self.is_sqlite:
            sql = sql.replace("?", "%s")
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # checked out: never None
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            cur.executemany(sql, rows)
        except dbapi_error as exc:   # as SQLAlchemy raises it: a store outage is OperationalError either way
            raise sa.exc.DBAPIError.instance(sql, None, exc, dbapi_error) from exc
        finally:
            cur.close()

    # -- helpers -----------------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as c:
                yield c
