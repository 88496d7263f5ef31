"""Drift and performance statistics over time: two tables and the function that fills them.

:class:`~detectors.model_monitor.ModelMonitor` keeps only the *last* statistics of each
detector; the dashboard and ``/api/models/{model}/drift`` need their history. After the
detectors have run on a batch, the monitor calls, inside the batch's transaction::

    record_detector_statistics(conn, model, analyser.monitors[model].version_status(version), now)

for each version the batch fed (each version's windows are numbered, and recorded, apart),
which appends one row per column and detector to ``detector_history`` when a prediction window
was judged since the last call, and one row per metric to ``performance_history`` when a
labelled window was (realised metrics) or a prediction window gave a label-free estimate
(``source="estimated"``: CBPE for classifiers, DLE for regressors).

Idempotence and crashes
    A window is recognised by the monitor's count of judged windows (``status()["windows_judged"]``,
    stored as ``seq``): a call writes only if the count differs from the ``seq`` of the model's
    newest row, so calling it after every batch, or twice for one state, records each window
    once. The rows are written in the caller's transaction: if the batch rolls back they go
    with it, and the batch consumed again records them again, once. A monitor that starts over
    (counts back to 0) keeps recording: any *different* count is a new window.
Granularity
    ``status()`` holds the last window of each stream; the monitors also log their status right
    after each window they judge (:class:`detectors.base.WindowLog`), and the analyser passes
    those statuses here before the batch's final one. So a batch that completes several windows
    (a burst of late labels, a replay's bulk, windows smaller than ``ingest.max_poll_records``)
    records every one of them, and the history is the same however the stream was cut.
Time
    ``ts`` is ``now`` of the batch (wall clock, epoch ms: when the window was judged);
    ``window_start``/``window_end`` are the event times of the window when the detectors report
    them (performance and CBPE always do; data drift when the model has a CBPE estimate for the
    same window, or when ``status()`` gives ``last_window``), else null.

Both tables are declared in :mod:`driftloop.core.tables` (``Store.create_schema()`` creates them);
this module writes and reads them.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.core.tables import detector_history, performance_history

__all__ = [
    "detector_history",
    "performance_history",
    "record_detector_statistics",
    "windows_judged",
    "read_drift_history",
    "read_performance_history",
    "latest_drift",
    "latest_performance",
]


def _num(x: Any) -> float | None:
    """A finite float or None (NaN and infinities are not JSON)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _plain(x: Any) -> Any:
    """JSON-able copy: non-finite floats become None, tuples lists, unknowns strings."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    f = _num(x)
    if f is not None or isinstance(x, float):
        return f
    return str(x)


def windows_judged(status: Mapping[str, Any]) -> tuple[int, int]:
    """``(prediction windows, labelled windows)`` judged so far, from ``ModelMonitor.status()``.

    Cheap to compare before and after a batch to know whether a window completed.

    >>> windows_judged({"windows_judged": {"predictions": 3, "labelled": 1}})
    (3, 1)
    >>> windows_judged({})
    (0, 0)
    """
    wj = status.get("windows_judged") or {}
    return int(wj.get("predictions") or 0), int(wj.get("labelled") or 0)


def _split_key(key: str, detector: str) -> str:
    """The feature a status key is about: ``amount:missing_rate`` -> ``amount``."""
    suffix = ":" + detector
    return key[: -len(suffix)] if key.endswith(suffix) else key


def _data_window(status: Mapping[str, Any], n: int | None) -> tuple[int | None, int | None]:
    """Event-time bounds of the last judged prediction window, where status() tells them."""
    lw = (status.get("last_window") or {}).get("predictions")
    if isinstance(lw, Mapping):
        return lw.get("start_ts"), lw.get("end_ts")
    last = ((status.get("cbpe") or {}).get("last")) or {}
    if last and n is not None and last.get("n") == n:
        return last.get("start_ts"), last.get("end_ts")
    return None, None


def _drift_rows(model: str, status: Mapping[str, Any], seq: int, now: int) -> list[dict[str, Any]]:
    version = status.get("model_version")
    rows: list[dict[str, Any]] = []
    n_data: int | None = None
    for kind in ("data_drift", "prediction_drift"):
        for key, st in (status.get(kind) or {}).items():
            detector = str(st.get("detector") or "")
            n_data = n_data if n_data is not None else st.get("n")
            details = {k: v for k, v in st.items()
                       if k not in ("detector", "effect", "threshold", "p_value", "drifting", "n")}
            rows.append({"kind": kind, "detector": detector, "feature": _split_key(str(key), detector),
                         "statistic": _num(st.get("effect")), "threshold": _num(st.get("threshold")),
                         "p_value": _num(st.get("p_value")), "drifting": bool(st.get("drifting")),
                         "n": st.get("n"), "details": _plain(details)})
    mv = status.get("multivariate") or {}
    pca = mv.get("pca") or {}
    if pca:
        rows.append({"kind": "multivariate_drift", "detector": "pca_reconstruction", "feature": "",
                     "statistic": _num(pca.get("reconstruction_error")),
                     "threshold": _num(pca.get("reference_error")), "p_value": _num(pca.get("p_value")),
                     "drifting": bool(pca.get("drifting")), "n": pca.get("n"),
                     "details": _plain({k: pca.get(k) for k in ("increase", "components", "top_features")})})
    dc = mv.get("domain_classifier") or {}
    if dc:
        rows.append({"kind": "multivariate_drift", "detector": "domain_classifier", "feature": "",
                     "statistic": _num(dc.get("auc")), "threshold": None, "p_value": _num(dc.get("p_value")),
                     "drifting": bool(dc.get("drifting")), "n": dc.get("n"),
                     "details": _plain({"top_features": dc.get("top_features")})})
    start, end = _data_window(status, n_data)
    for r in rows:
        r.update(model=model, seq=seq, ts=now, window_start=start, window_end=end, model_version=version)
    return rows


def _realised_rows(model: str, status: Mapping[str, Any], seq: int, now: int) -> list[dict[str, Any]]:
    last = ((status.get("performance") or {}).get("last")) or {}
    window = last.get("window") or {}
    rows = []
    for metric, m in (last.get("metrics") or {}).items():
        ci = m.get("ci") or (None, None)
        rows.append({"model": model, "source": "realised", "seq": seq, "ts": now,
                     "window_start": window.get("start_ts"), "window_end": window.get("end_ts"),
                     "n": last.get("n", window.get("n")), "metric": str(metric), "value": _num(m.get("value")),
                     "baseline": _num(m.get("baseline")), "ci_low": _num(ci[0]), "ci_high": _num(ci[1]),
                     "p_value": _num(m.get("p_value")), "threshold": _num(m.get("threshold")),
                     "degraded": bool(m.get("degraded")), "model_version": status.get("model_version")})
    return rows


def _estimated_rows(model: str, status: Mapping[str, Any], seq: int, now: int) -> list[dict[str, Any]]:
    cbpe = status.get("cbpe") or status.get("dle") or {}   # DLE (regressors) reports in CBPE's shape
    last = cbpe.get("last") or {}
    if last.get("metrics"):   # one row per estimated metric (CBPE of every classification metric)
        rows = []
        for metric, m in last["metrics"].items():
            ci = m.get("ci") or (None, None)
            rows.append({"model": model, "source": "estimated", "seq": seq, "ts": now,
                         "window_start": last.get("start_ts"), "window_end": last.get("end_ts"), "n": last.get("n"),
                         "metric": str(metric), "value": _num(m.get("value")), "baseline": _num(m.get("baseline")),
                         "ci_low": _num(ci[0]), "ci_high": _num(ci[1]), "p_value": _num(m.get("p_value")),
                         "threshold": _num(m.get("threshold")), "degraded": bool(m.get("degraded")),
                         "model_version": status.get("model_version")})
        return rows
    if not last or last.get("estimated_accuracy") is None:
        return []
    ci = last.get("ci") or (None, None)
    return [{"model": model, "source": "estimated", "seq": seq, "ts": now, "window_start": last.get("start_ts"),
             "window_end": last.get("end_ts"), "n": last.get("n"), "metric": "accuracy",
             "value": _num(last.get("estimated_accuracy")), "baseline": _num(cbpe.get("baseline_accuracy")),
             "ci_low": _num(ci[0]), "ci_high": _num(ci[1]), "p_value": _num(last.get("p_value")),
             "threshold": None, "degraded": bool(last.get("degraded")),
             "model_version": status.get("model_version")}]


def _newest(conn: Connection, table: sa.Table, model: str, *conds: Any) -> Any:
    """The newest row of a model (and ``conds``: its version, its source)."""
    q = (sa.select(table.c.seq, table.c.window_end).where(table.c.model == model, *conds)
         .order_by(table.c.id.desc()).limit(1))
    return conn.execute(q).first()


def _of_version(table: sa.Table, version: str | None) -> Any:
    return table.c.model_version.is_(None) if version is None else table.c.model_version == version


def record_detector_statistics(conn: Connection, model: str, monitor_status: Mapping[str, Any], now: int) -> int:
    """Append the statistics of the windows judged since the last call; returns rows written.

    ``monitor_status`` is ``ModelMonitor.status()`` right after the detectors ran; ``now`` the
    batch's time (epoch ms). Runs in the caller's transaction; see the module docstring.
    """
    data_seq, label_seq = windows_judged(monitor_status)
    written = 0
    version = monitor_status.get("model_version")   # each version's windows are numbered apart
    drift_v = _of_version(detector_history, version)
    perf_v = _of_version(performance_history, version)
    if data_seq > 0:
        newest = _newest(conn, detector_history, model, drift_v)
        if newest is None or newest.seq != data_seq:
            rows = _drift_rows(model, monitor_status, data_seq, now)
            if rows:
                conn.execute(detector_history.insert(), rows)
                written += len(rows)
            est = _estimated_rows(model, monitor_status, data_seq, now)
            if est:  # CBPE skips small windows: its last estimate may be an older window's
                prev = _newest(conn, performance_history, model, perf_v, performance_history.c.source == "estimated")
                if prev is None or prev.window_end is None or prev.window_end != est[0]["window_end"]:
                    conn.execute(performance_history.insert(), est)
                    written += len(est)
    if label_seq > 0:
        newest = _newest(conn, performance_history, model, perf_v, performance_history.c.source == "realised")
        if newest is None or newest.seq != label_seq:
            rows = _realised_rows(model, monitor_status, label_seq, now)
            if rows:
                conn.execute(performance_history.insert(), rows)
                written += len(rows)
    return written


# -- reading ------------------------------------------------------------------------------------
_DRIFT_COLS = ("ts", "window_start", "window_end", "n", "kind", "detector", "feature", "statistic", "threshold",
               "p_value", "drifting", "model_version", "seq")
_PERF_COLS = ("ts", "window_start", "window_end", "n", "source", "metric", "value", "baseline", "ci_low", "ci_high",
              "p_value", "threshold", "degraded", "model_version", "seq")


def _filters(table: sa.Table, model: str, since: int | None, until: int | None,
             model_version: str | None = None) -> list[Any]:
    conds = [table.c.model == model]
    if since is not None:
        conds.append(table.c.ts >= since)
    if until is not None:
        conds.append(table.c.ts <= until)
    if model_version is not None:   # "": the rows of no named version (written before versions, or none known)
        conds.append(_of_version(table, model_version or None))
    return conds


def read_drift_history(conn: Connection, model: str, *, features: Iterable[str] | None = None,
                       kinds: Iterable[str] | None = None, since: int | None = None, until: int | None = None,
                       limit: int = 5000, details: bool = False,
                       model_version: str | None = None) -> list[dict[str, Any]]:
    """Drift rows of a model, oldest first: the newest ``limit`` rows matching the filters.

    ``model_version``: only that version's rows (``""``: the rows that name no version); None:
    every version's.
    """
    cols = [detector_history.c[c] for c in _DRIFT_COLS] + ([detector_history.c.details] if details else [])
    conds = _filters(detector_history, model, since, until, model_version)
    if features is not None:
        conds.append(detector_history.c.feature.in_(sorted(set(features))))
    if kinds is not None:
        conds.append(detector_history.c.kind.in_(sorted(set(kinds))))
    q = sa.select(*cols).where(*conds).order_by(detector_history.c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)][::-1]


def read_performance_history(conn: Connection, model: str, *, metrics: Iterable[str] | None = None,
                             source: str | None = None, since: int | None = None, until: int | None = None,
                             limit: int = 5000, model_version: str | None = None) -> list[dict[str, Any]]:
    """Performance rows of a model (realised and estimated), oldest first; ``model_version`` as in
    :func:`read_drift_history`."""
    conds = _filters(performance_history, model, since, until, model_version)
    if metrics is not None:
        conds.append(performance_history.c.metric.in_(sorted(set(metrics))))
    if source is not None:
        conds.append(performance_history.c.source == source)
    q = (sa.select(*[performance_history.c[c] for c in _PERF_COLS]).where(*conds)
         .order_by(performance_history.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in conn.execute(q)][::-1]


def _latest(conn: Connection, table: sa.Table, cols: tuple[str, ...], keys: tuple[str, ...],
            model: str | None, model_version: str | None = None) -> list[dict[str, Any]]:
    """The newest row of every (model, model_version, *keys*), oldest first. Each version's
    statistics are their own: the newest row of v1 does not hide v2's, nor v2's v1's."""
    newest = sa.select(sa.func.max(table.c.id).label("id")).group_by(
        table.c.model, table.c.model_version, *[table.c[k] for k in keys])
    if model is not None:
        newest = newest.where(table.c.model == model)
    if model_version is not None:
        newest = newest.where(_of_version(table, model_version or None))
    sub = newest.subquery()
    q = sa.select(table.c.model, *[table.c[c] for c in cols]).join(sub, table.c.id == sub.c.id).order_by(table.c.id)
    return [dict(r._mapping) for r in conn.execute(q)]


def latest_drift(conn: Connection, model: str | None = None, *,
                 model_version: str | None = None) -> list[dict[str, Any]]:
    """The newest row of every (model, model_version, kind, detector, feature): what ``/metrics``
    shows when the detectors run in another process. Rows of versions no longer served are
    among them (the caller keeps the live ones); ``model_version`` as in :func:`read_drift_history`."""
    return _latest(conn, detector_history, _DRIFT_COLS, ("kind", "detector", "feature"), model, model_version)


def latest_performance(conn: Connection, model: str | None = None, *,
                       model_version: str | None = None) -> list[dict[str, Any]]:
    """The newest row of every (model, model_version, source, metric)."""
    return _latest(conn, performance_history, _PERF_COLS, ("source", "metric"), model, model_version)
