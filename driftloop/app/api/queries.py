"""Read-only queries over the store for the API, the dashboard and ``/metrics``.

Everything reads tables, never a live object, so a separate ``driftloop`` process sees what the
monitor committed. Every table is declared in :mod:`driftloop.core.tables`; a query over a
table the store does not have yet (schema not created) gives an empty answer instead of an
error (:func:`safe`).

Times are epoch milliseconds throughout.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.store import Store
from driftloop.core.tables import metadata

__all__ = [
    "safe",
    "reader",
    "read_counters",
    "table",
    "alerts_list",
    "alert_brief",
    "alert_detail",
    "alert_events",
    "alert_timeline",
    "alert_counts",
    "firing_counts",
    "stats_firing_counts",
    "open_incident_counts",
    "event_extent",
    "drift_series",
    "performance_series",
    "versions",
    "champion_history",
    "champions",
    "retrain_jobs",
    "retrain_job_counts",
    "outbox_pending",
    "traffic_share",
    "ACTIVE_STATUSES",
    "TRAFFIC_WINDOW_MS",
    "TRAFFIC_SAMPLE",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
D = TypeVar("D")   # the default's own type: an empty {} or [] must not pin T to dict[Never, Never]

TRAFFIC_WINDOW_MS = 3_600_000
""":func:`traffic_share` looks at the predictions of the last hour (by their event time) ..."""
TRAFFIC_SAMPLE = 2_000
"""... and of those at most the newest 2,000: a bounded read, whatever the model's traffic."""

ACTIVE_STATUSES = ("firing", "resolving")
"""Alert statuses that count as firing: announced and not resolved yet (``resolving`` is a
cleared alert within its hold-down, still open for the people paged)."""


def table(name: str) -> sa.Table | None:
    """A table of :mod:`driftloop.core.tables` by name; None for a name the schema does not have.

    >>> table("alerts").name, table("no_such_table")
    ('alerts', None)
    """
    return metadata.tables.get(name)


def reader(store: Store) -> sa.engine.Engine:
    """The engine the API reads with: :attr:`Store.read_engine` (on SQLite, reads that neither
    wait for the monitor's batch nor hold it up)."""
    return store.read_engine


def read_counters(store: Store) -> dict[str, dict[str, int]]:
    """``Store.read_counters`` through :func:`reader`."""
    with reader(store).connect() as conn:
        return store.read_counters(conn)


def safe(store: Store, fn: Callable[[Connection], T], default: D) -> T | D:
    """``fn(conn)`` on a fresh reading connection (:func:`reader`); ``default`` when a table is
    missing or unreadable.

    A fresh connection per call: on PostgreSQL one failed statement aborts its transaction.
    """
    try:
        with reader(store).connect() as conn:
            return fn(conn)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, LookupError) as exc:
        log.debug("query skipped: %s", exc)
        return default


def _need(name: str) -> sa.Table:
    t = table(name)
    if t is None:
        raise LookupError(f"table {name} is not defined in driftloop.core.tables")
    return t


def _json(raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return orjson.loads(bytes(raw))
    return raw


# -- alerts -------------------------------------------------------------------------------------
def _alert_row(r: Any) -> dict[str, Any]:
    st = _json(r.state) or {}
    det = st.get("detection") or {}
    return {
        "alert_id": r.alert_id, "model": r.model, "kind": r.kind, "detector": r.detector, "feature": r.feature,
        "segment": st.get("segment") or None, "status": r.status, "severity": r.severity,
        "model_version": r.model_version, "seq": r.seq, "group_id": r.group_id, "members": st.get("members"), "started_at": r.started_at,
        "fired_at": st.get("fired_at"), "resolved_at": st.get("resolved_at"), "updated_at": r.updated_at,
        "resolve_reason": st.get("resolve_reason"), "summary": r.summary,
        "statistic": det.get("statistic"), "p_value": det.get("p_value"), "threshold": det.get("threshold"),
        "window": det.get("window"),
    }


def alerts_list(conn: Connection, *, model: str | None = None, status: str | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
    """Current alerts, most recently changed first. ``status``: one of the lifecycle's
    (``pending``, ``firing``, ``resolving``, ``resolved``) or ``active`` (firing or resolving)."""
    a = _need("alerts")
    q = sa.select(a).order_by(a.c.updated_at.desc(), a.c.alert_id).limit(limit)
    if model is not None:
        q = q.where(a.c.model == model)
    if status == "active":
        q = q.where(a.c.status.in_(ACTIVE_STATUSES))
    elif status is not None:
        q = q.where(a.c.status == status)
    return [_alert_row(r) for r in conn.execute(q)]


def alert_brief(conn: Connection, alert_id: str) -> dict[str, Any] | None:
    """``{"alert_id", "model", "status"}`` of one alert; None if unknown."""
    a = _need("alerts")
    row = conn.execute(sa.select(a.c.alert_id, a.c.model, a.c.status).where(a.c.alert_id == alert_id)).first()
    return None if row is None else dict(row._mapping)


def alert_detail(conn: Connection, alert_id: str) -> dict[str, Any] | None:
    """One alert with its whole announced history (oldest first); None if unknown."""
    a = _need("alerts")
    row = conn.execute(sa.select(a).where(a.c.alert_id == alert_id)).first()
    if row is None:
        return None
    out = _alert_row(row)
    out["state"] = _json(row.state)
    out["events"] = alert_events(conn, alert_id=alert_id, limit=10_000, messages=True)
    return out


def alert_events(conn: Connection, *, model: str | None = None, alert_id: str | None = None,
                 since: int | None = None, limit: int = 1000, messages: bool = False) -> list[dict[str, Any]]:
    """Announced alert changes (the ``driftloop.alerts`` messages), oldest first: the newest
    ``limit`` matching ones."""
    e = _need("alert_events")
    q = sa.select(e).order_by(e.c.id.desc()).limit(limit)
    # an incident's changes are rows of alert_events too (keyed by incident_id): not alert changes
    q = q.where(e.c.alert_id.not_in(sa.select(_need("incidents").c.incident_id)))
    if model is not None:
        q = q.where(e.c.model == model)
    if alert_id is not None:
        q = q.where(e.c.alert_id == alert_id)
    if since is not None:
        q = q.where(e.c.created_at >= since)
    out = []
    for r in conn.execute(q):
        msg = _json(r.message) or {}
        item = {"alert_id": r.alert_id, "seq": r.seq, "status": r.status, "model": r.model,
                "severity": r.severity, "reason": r.reason, "at": r.created_at, "kind": msg.get("kind"),
                "detector": msg.get("detector"), "feature": msg.get("feature"), "segment": msg.get("segment") or None,
                "summary": msg.get("summary"),
                "event_at": _event_at(msg)}
        if messages:
            item["message"] = msg
        out.append(item)
    return out[::-1]


def _event_at(msg: dict[str, Any]) -> int | None:
    """The event time (epoch ms) an announced change is about: the end of the window that fired
    it, or, for a resolution, of the window that cleared it; None when the message names no such
    window (a resolution by a new reference, a stale stream, an incident)."""
    if msg.get("status") == "firing":
        w = msg
    else:
        w = ((msg.get("evidence") or {}).get("resolution") or {}).get("clear") or {}
    end = (w.get("window") or {}).get("end_ts") if isinstance(w, dict) else None
    if isinstance(end, int | float) and not isinstance(end, bool):
        return int(end)
    return None


def alert_timeline(conn: Connection, *, model: str | None = None, since: int | None = None,
                   limit: int = 5000) -> list[dict[str, Any]]:
    """Firing episodes from the announced changes: ``start`` (fired), ``end`` (resolved, or
    None while open), the highest severity reached, the first and last summaries.

    An episode is a ``firing`` change up to the next ``resolved`` one of the same alert;
    escalations (another ``firing``) stay in the episode and raise its severity.
    ``start_event``/``end_event``: the same in event time (the end of the window that fired it,
    of the one that cleared it; None where the message names no window, or while open).
    """
    episodes: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for ev in alert_events(conn, model=model, since=since, limit=limit):
        cur = open_.get(ev["alert_id"])
        if ev["status"] == "firing":
            if cur is None:
                cur = {k: ev[k] for k in ("alert_id", "model", "kind", "detector", "feature", "segment", "severity",
                                          "summary")}
                cur.update(start=ev["at"], end=None, resolve_reason=None, start_event=ev.get("event_at"),
                           end_event=None)
                open_[ev["alert_id"]] = cur
                episodes.append(cur)
            elif ev["severity"] == "critical":
                cur["severity"] = "critical"
        elif ev["status"] == "resolved" and cur is not None:
            cur["end"] = ev["at"]
            cur["end_event"] = ev.get("event_at")
            cur["resolve_reason"] = ev["reason"]
            del open_[ev["alert_id"]]
    return episodes


def alert_counts(conn: Connection) -> list[tuple[str, str, str, str, int]]:
    """``(model, kind, severity, status, count)`` over the current alerts."""
    a = _need("alerts")
    q = (sa.select(a.c.model, a.c.kind, a.c.severity, a.c.status, sa.func.count())
         .group_by(a.c.model, a.c.kind, a.c.severity, a.c.status))
    return [(m, k, s, st, int(n)) for m, k, s, st, n in conn.execute(q)]


def firing_counts(conn: Connection) -> dict[str, int]:
    """Firing alerts per model (see :data:`ACTIVE_STATUSES`); a group alert and each of its
    members count once each, as rows of the ``alerts`` table."""
    out: dict[str, int] = {}
    for model, _k, _s, status, n in alert_counts(conn):
        if status in ACTIVE_STATUSES:
            out[model] = out.get(model, 0) + n
    return out


def stats_firing_counts(conn: Connection) -> dict[str, int]:
    """Firing alerts per model as ``driftloop stats`` counts them
    (:func:`driftloop.alerts.cli.firing_counts`): active alerts that are not a group's member,
    so a group counts once, whatever its size."""
    a = _need("alerts")
    q = (sa.select(a.c.model, sa.func.count())
         .where(a.c.status.in_(ACTIVE_STATUSES), a.c.group_id.is_(None)).group_by(a.c.model))
    return {m: int(n) for m, n in conn.execute(q)}


def open_incident_counts(conn: Connection) -> dict[str, int]:
    """Open incidents per model, as ``driftloop stats`` counts them
    (:func:`driftloop.alerts.incidents_cli.open_incident_counts`); {} without the table."""
    i = table("incidents")
    if i is None:
        return {}
    q = sa.select(i.c.model, sa.func.count()).where(i.c.status == "open").group_by(i.c.model)
    return {m: int(n) for m, n in conn.execute(q)}


# -- series on event time -------------------------------------------------------------------
def _event_end(t: sa.Table) -> Any:
    """A history row's x: the event time its window ended; the time it was judged (wall clock)
    for the rows written before the window's event time was recorded."""
    return sa.func.coalesce(t.c.window_end, t.c.ts)


def event_extent(conn: Connection, model: str) -> dict[str, int | None]:
    """``{"first", "newest"}``: the event time (epoch ms) of the first window start and of the
    newest window end the model's drift and performance history hold (None: no window yet).
    "Newest event" is the end of the newest judged window, so a replay, a backfill and a live
    stream are viewed alike, whatever the wall clock."""
    firsts, newests = [], []
    for name in ("detector_history", "performance_history"):
        t = _need(name)
        lo, hi = conn.execute(sa.select(sa.func.min(sa.func.coalesce(t.c.window_start, t.c.window_end, t.c.ts)),
                                        sa.func.max(_event_end(t))).where(t.c.model == model)).one()
        if lo is not None:
            firsts.append(int(lo))
        if hi is not None:
            newests.append(int(hi))
    return {"first": min(firsts) if firsts else None, "newest": max(newests) if newests else None}


def event_bounds(conn: Connection, model: str, *, since: int | None, until: int | None,
                 range_ms: int | None) -> dict[str, int | None]:
    """The event-time bounds a series is read with: ``since``/``until`` as given, ``range_ms``
    (> 0) raising ``since`` to ``newest - range_ms``; with the model's ``first``/``newest``."""
    ext = event_extent(conn, model)
    lo = since
    if range_ms and ext["newest"] is not None:
        rel = ext["newest"] - range_ms
        lo = rel if lo is None else max(lo, rel)
    return {"since": lo, "until": until, "first": ext["first"], "newest": ext["newest"]}


def _series(conn: Connection, t: sa.Table, cols: tuple[str, ...], model: str, conds: list[Any],
            since: int | None, until: int | None, limit: int, model_version: str | None) -> list[dict[str, Any]]:
    x = _event_end(t)
    conds = [t.c.model == model, *conds]
    if since is not None:
        conds.append(x >= since)
    if until is not None:
        conds.append(x <= until)
    if model_version is not None:   # "": the rows that name no version
        conds.append(t.c.model_version.is_(None) if not model_version else t.c.model_version == model_version)
    q = (sa.select(*[t.c[c] for c in cols], x.label("t")).where(*conds)
         .order_by(t.c.id.desc()).limit(limit))
    out = []
    for r in conn.execute(q):
        row = dict(r._mapping)
        row["t"] = int(row["t"])
        row["t_source"] = "event" if row.get("window_end") is not None else "judged"
        out.append(row)
    out.reverse()
    out.sort(key=lambda p: p["t"])   # stable: rows of one window keep their written order
    return out


DRIFT_COLS = ("ts", "window_start", "window_end", "n", "kind", "detector", "feature", "statistic", "threshold",
              "p_value", "drifting", "model_version", "seq")
PERF_COLS = ("ts", "window_start", "window_end", "n", "source", "metric", "value", "baseline", "ci_low", "ci_high",
             "p_value", "threshold", "degraded", "model_version", "seq")


def drift_series(conn: Connection, model: str, *, features: list[str] | None = None,
                 kinds: list[str] | None = None, since: int | None = None, until: int | None = None,
                 limit: int = 5000, details: bool = False, model_version: str | None = None) -> list[dict[str, Any]]:
    """Drift rows of a model on EVENT time, oldest window first: the newest ``limit`` rows (by
    when written) whose window ended within [``since``, ``until``] (event time, epoch ms). Each
    row carries ``t`` (its x: the window's end in event time, see :func:`_event_end`) and
    ``t_source`` (``event``, or ``judged`` for a row without the window's event time)."""
    t = _need("detector_history")
    conds: list[Any] = []
    if features is not None:
        conds.append(t.c.feature.in_(sorted(set(features))))
    if kinds is not None:
        conds.append(t.c.kind.in_(sorted(set(kinds))))
    cols = DRIFT_COLS + (("details",) if details else ())
    rows = _series(conn, t, cols, model, conds, since, until, limit, model_version)
    if details:
        for r in rows:
            r["details"] = _json(r["details"])
    return rows


def performance_series(conn: Connection, model: str, *, metrics: list[str] | None = None,
                       source: str | None = None, since: int | None = None, until: int | None = None,
                       limit: int = 5000, model_version: str | None = None) -> list[dict[str, Any]]:
    """Performance rows of a model (realised and estimated) on event time, as :func:`drift_series`."""
    t = _need("performance_history")
    conds: list[Any] = []
    if metrics is not None:
        conds.append(t.c.metric.in_(sorted(set(metrics))))
    if source is not None:
        conds.append(t.c.source == source)
    return _series(conn, t, PERF_COLS, model, conds, since, until, limit, model_version)


# -- registry -----------------------------------------------------------------------------------
_VERSION_COLS = ("model", "version", "status", "source", "job_id", "created_at", "task", "classes",
                 "estimator", "params", "metrics", "data_window", "reference_rows", "holdout_rows",
                 "code_version", "note")


def versions(conn: Connection, model: str | None = None) -> list[dict[str, Any]]:
    """Registered versions (artifact paths and hashes left out), by model and version."""
    v = _need("model_versions")
    cols = [v.c[c] for c in _VERSION_COLS if c in v.c]
    q = sa.select(*cols).order_by(v.c.model, v.c.version)
    if model is not None:
        q = q.where(v.c.model == model)
    return [{k: _json(val) if k in ("params", "metrics", "data_window", "classes") else val
             for k, val in r._mapping.items()} for r in conn.execute(q)]


def champion_history(conn: Connection, model: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The registry's audit trail (registered, promoted, rejected, rolled_back), oldest first."""
    h = _need("champion_history")
    q = sa.select(h).order_by(h.c.id.desc()).limit(limit)
    if model is not None:
        q = q.where(h.c.model == model)
    return [{k: _json(val) if k == "details" else val for k, val in r._mapping.items()}
            for r in conn.execute(q)][::-1]


def champions(conn: Connection) -> dict[str, int]:
    """The champion version of each model that has one."""
    v = _need("model_versions")
    q = sa.select(v.c.model, v.c.version).where(v.c.status == "champion")
    return {m: int(ver) for m, ver in conn.execute(q)}


# -- retraining ---------------------------------------------------------------------------------
_JOB_COLS = ("job_id", "model", "trigger", "reason", "status", "decision", "version", "requested_at",
             "started_at", "finished_at", "attempts", "worker", "error")


def retrain_jobs(conn: Connection, model: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Retraining jobs, newest first."""
    j = _need("retrain_jobs")
    q = sa.select(*[j.c[c] for c in _JOB_COLS if c in j.c]).order_by(j.c.requested_at.desc()).limit(limit)
    if model is not None:
        q = q.where(j.c.model == model)
    return [{k: _json(val) if k == "reason" else val for k, val in r._mapping.items()} for r in conn.execute(q)]


def retrain_job_counts(conn: Connection) -> list[tuple[str, str, str, int]]:
    """``(model, status, decision or "", count)`` over every job."""
    j = _need("retrain_jobs")
    q = sa.select(j.c.model, j.c.status, j.c.decision, sa.func.count()).group_by(j.c.model, j.c.status, j.c.decision)
    return [(m, s, d or "", int(n)) for m, s, d, n in conn.execute(q)]


def outbox_pending(conn: Connection) -> dict[str, int]:
    """Outbox rows not published yet, per topic."""
    from driftloop.core.store import outbox

    q = sa.select(outbox.c.topic, sa.func.count()).where(outbox.c.sent_at.is_(None)).group_by(outbox.c.topic)
    return {t: int(n) for t, n in conn.execute(q)}


# -- versions -----------------------------------------------------------------------------------
def traffic_share(conn: Connection, model: str, now: int, *, window_ms: int = TRAFFIC_WINDOW_MS,
                  sample: int = TRAFFIC_SAMPLE) -> dict[str, Any]:
    """The share of a model's recent predictions each version served: ``{"shares": {version:
    share}, "n": predictions counted, "since": epoch ms, "window_ms", "sample"}``.

    Recent = the newest ``sample`` predictions stored in ``examples`` whose event time is within
    ``window_ms`` of ``now``: at most ``sample`` index entries of ``ix_examples_model_pred_ts``
    and their rows are read, so the cost is bounded however busy the model is (measured on
    1,000,000 stored predictions of the last two hours: about 14 ms on SQLite for 2,000; the
    whole hour, 500,000 rows, took 4.4 s, which is why it is not counted). When the model served
    more than ``sample`` predictions in the window, the shares are those of its newest
    ``sample`` ones (a sample of the current traffic split, within about ±1 percentage point).
    A prediction stored without a version (written before versions were stamped) counts as
    version ``""``. Predictions pruned from ``examples`` (``ingest.joined_retention_s``) or
    expired unlabelled ones are not seen: keep the window well inside the retention.
    """
    e = _need("examples")
    since = now - window_ms
    newest = (sa.select(e.c.model_version).where(e.c.model == model, e.c.pred_ts >= since)
              .order_by(e.c.pred_ts.desc()).limit(sample)).subquery()
    counts = {("" if v is None else str(v)): int(n)
              for v, n in conn.execute(sa.select(newest.c.model_version, sa.func.count())
                                       .group_by(newest.c.model_version))}
    n = sum(counts.values())
    return {"shares": {v: c / n for v, c in sorted(counts.items())} if n else {}, "n": n, "since": since,
            "window_ms": window_ms, "sample": sample}
