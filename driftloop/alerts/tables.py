"""The alert tables (on :data:`driftloop.core.store.metadata`, created by ``Store.create_schema``) and
the statements that read and write them. SQLAlchemy Core; the same on SQLite and PostgreSQL.

``alerts``
    current state, one row per ``alert_id`` (the lifecycle's :class:`AlertState` as JSON plus
    indexed columns for listing and for finding what is due).
``alert_events``
    the history of announced changes: one row per (``alert_id``, ``seq``) with the message as
    sent; ``idempotency_key`` (``alert_id:status:seq``) is unique.
``alert_deliveries``
    one row per event and sink: ``status`` (``pending``, ``sent``, ``failed`` = gave up after
    ``max_attempts``), ``attempts``, ``next_attempt_at``, ``lease_until`` (claimed by a
    dispatcher until then), ``last_error`` (no secrets), ``sent_at``.
``alert_stream_watch``
    per (model, stream): the last seen counter value, when it last grew, whether it is stale.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.alerts.lifecycle import AlertState
from driftloop.core.jsonio import dumps, loads
from driftloop.core.store import Store, metadata

__all__ = ["alerts", "alert_events", "alert_deliveries", "alert_stream_watch", "dumps", "loads",
           "load_states", "save_states", "insert_events", "due_models"]

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("alert_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detector", sa.String(64), nullable=False),
    sa.Column("feature", sa.String(512)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("model_version", sa.String(128)),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("group_id", sa.String(64)),
    sa.Column("due_at", sa.BigInteger),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("state", sa.LargeBinary, nullable=False),
)
sa.Index("ix_alerts_model_status", alerts.c.model, alerts.c.status)
sa.Index("ix_alerts_status_due", alerts.c.status, alerts.c.due_at)
sa.Index("ix_alerts_updated", alerts.c.updated_at)

alert_events = sa.Table(
    "alert_events", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(96), nullable=False, unique=True),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("message", sa.LargeBinary, nullable=False),
)
sa.Index("ix_alert_events_alert", alert_events.c.alert_id, alert_events.c.seq)

alert_deliveries = sa.Table(
    "alert_deliveries", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(96), nullable=False),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("sink", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
    sa.Column("lease_until", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("sent_at", sa.BigInteger),
    sa.UniqueConstraint("idempotency_key", "sink", name="uq_alert_deliveries_key_sink"),
)
sa.Index("ix_alert_deliveries_sink_status", alert_deliveries.c.sink, alert_deliveries.c.status,
         alert_deliveries.c.id)

alert_stream_watch = sa.Table(
    "alert_stream_watch", metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("stream", sa.String(32), primary_key=True),
    sa.Column("last_count", sa.BigInteger, nullable=False),
    sa.Column("changed_at", sa.BigInteger, nullable=False),
    sa.Column("stale", sa.Boolean, nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
)


def load_states(conn: Connection, *, models: Iterable[str] | None = None, ids: Iterable[str] | None = None,
                active_only: bool = False) -> dict[str, AlertState]:
    """Alert states of some models (all their rows) and/or some ids."""
    q = sa.select(alerts.c.state)
    conds = []
    if models is not None:
        conds.append(alerts.c.model.in_(sorted(set(models))))
    if ids is not None:
        conds.append(alerts.c.alert_id.in_(sorted(set(ids))))
    if conds:
        q = q.where(sa.or_(*conds))
    if active_only:
        q = q.where(alerts.c.status != "resolved")
    out = {}
    for (raw,) in conn.execute(q):
        st = AlertState.from_dict(loads(raw))
        out[st.alert_id] = st
    return out


def save_states(store: Store, conn: Connection, states: Iterable[AlertState], summaries: dict[str, str]) -> None:
    """Upsert states; ``summaries`` gives each alert's sentence for listings."""
    rows = [{
        "alert_id": st.alert_id, "model": st.model, "kind": st.kind, "detector": st.detector,
        "feature": st.feature, "status": st.status, "severity": st.severity,
        "model_version": st.model_version, "seq": st.seq, "group_id": st.group_id, "due_at": st.due_at,
        "started_at": st.started_at, "updated_at": st.updated_at, "summary": summaries.get(st.alert_id),
        "state": dumps(st.to_dict()),
    } for st in states]
    if not rows:
        return
    ins = store._insert(alerts)
    stmt = ins.on_conflict_do_update(
        index_elements=["alert_id"], set_={c.name: ins.excluded[c.name] for c in alerts.c if c.name != "alert_id"})
    for row in rows:  # a handful per call; one statement each keeps the upsert dialect-neutral
        conn.execute(stmt, row)


def insert_events(conn: Connection, events: list[dict[str, Any]], deliveries: list[dict[str, Any]]) -> None:
    """History rows and their delivery rows, in the caller's transaction."""
    if events:
        conn.execute(alert_events.insert(), events)
    if deliveries:
        conn.execute(alert_deliveries.insert(), deliveries)


def due_models(conn: Connection, now: int) -> list[str]:
    """Models with a hold-down or group window over at ``now`` (cheap: an index range scan)."""
    q = (sa.select(alerts.c.model).distinct()
         .where(alerts.c.status.in_(("pending", "resolving")), alerts.c.due_at <= now))
    return sorted(r[0] for r in conn.execute(q))
