"""The statements that read and write the alert tables (``alerts``, ``alert_events``,
``alert_deliveries``, ``alert_stream_watch``: declared, with their row format, in
:mod:`driftloop.core.tables`; re-exported here for the alert modules). SQLAlchemy Core; the
same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.alerts.incidents import IncidentState
from driftloop.alerts.lifecycle import AlertState
from driftloop.core.jsonio import dumps, loads
from driftloop.core.store import Store
from driftloop.core.tables import alert_deliveries, alert_events, alert_stream_watch, alerts, incidents

__all__ = ["alerts", "incidents", "alert_events", "alert_deliveries", "alert_stream_watch", "dumps", "loads",
           "load_states", "save_states", "insert_events", "due_models", "load_incidents", "save_incidents",
           "incident_ordinals"]


def load_states(conn: Connection, *, models: Iterable[str] | None = None, ids: Iterable[str] | None = None,
                active_only: bool = False) -> dict[str, AlertState]:
    """Alert states of some models (all their rows) and/or some ids."""
    out = {}
    for (raw,) in conn.execute(_states_of(alerts, alerts.c.alert_id, models, ids, active_only)):
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
    """Models with a hold-down, a group window or an incident's wait over at ``now`` (cheap:
    index range scans)."""
    q = (sa.select(alerts.c.model).distinct()
         .where(alerts.c.status.in_(("pending", "resolving")), alerts.c.due_at <= now))
    qi = sa.select(incidents.c.model).distinct().where(incidents.c.status == "pending", incidents.c.due_at <= now)
    return sorted({r[0] for r in conn.execute(q)} | {r[0] for r in conn.execute(qi)})


def load_incidents(conn: Connection, *, models: Iterable[str] | None = None, ids: Iterable[str] | None = None,
                   active_only: bool = False) -> dict[str, IncidentState]:
    """Incidents of some models and/or some ids (all of them without either)."""
    q = _states_of(incidents, incidents.c.incident_id, models, ids, active_only)
    return {st.incident_id: st for st in (IncidentState.from_dict(loads(raw)) for (raw,) in conn.execute(q))}


def _states_of(table: sa.Table, id_col: sa.Column, models: Iterable[str] | None, ids: Iterable[str] | None,
               active_only: bool) -> sa.Select:
    """The ``state`` column of ``table``'s rows of some models and/or ids (all without either)."""
    q = sa.select(table.c.state)
    conds = []
    if models is not None:
        conds.append(table.c.model.in_(sorted(set(models))))
    if ids is not None:
        conds.append(id_col.in_(sorted(set(ids))))
    if conds:
        q = q.where(sa.or_(*conds))
    return q.where(table.c.status != "resolved") if active_only else q


def incident_ordinals(conn: Connection, models: Iterable[str]) -> dict[tuple[str, str], int]:
    """How many incidents each (model, version) of ``models`` has had (for the next one's id)."""
    q = (sa.select(incidents.c.model, incidents.c.model_version, sa.func.max(incidents.c.ordinal))
         .where(incidents.c.model.in_(sorted(set(models))))
         .group_by(incidents.c.model, incidents.c.model_version))
    return {(m, v or ""): int(n) for m, v, n in conn.execute(q)}


def save_incidents(store: Store, conn: Connection, states: Iterable[IncidentState], summaries: dict[str, str]) -> None:
    """Upsert incidents; ``summaries`` gives each one's sentence for listings."""
    rows = [{
        "incident_id": st.incident_id, "model": st.model, "model_version": st.model_version, "ordinal": st.ordinal,
        "status": st.status, "severity": st.severity, "seq": st.seq, "due_at": st.due_at,
        "started_at": st.started_at, "updated_at": st.updated_at, "summary": summaries.get(st.incident_id),
        "state": dumps(st.to_dict()),
    } for st in states]
    if not rows:
        return
    ins = store._insert(incidents)
    stmt = ins.on_conflict_do_update(
        index_elements=["incident_id"],
        set_={c.name: ins.excluded[c.name] for c in incidents.c if c.name != "incident_id"})
    for row in rows:
        conn.execute(stmt, row)
