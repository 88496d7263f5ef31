"""The read-only JSON endpoints under ``/api/`` (all GET; times are epoch milliseconds)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from driftloop.app.api import queries, schemas, views
from driftloop.app.api.context import JSON, Context
from driftloop.app.api.live import monitor_snapshot
from driftloop.app.stats import collect_stats
from driftloop.core.store import now_ms
from driftloop.monitoring import history

__all__ = ["router"]

router = APIRouter(prefix="/api", default_response_class=JSON)

Limit = Annotated[int, Query(ge=1, le=100_000, description="at most this many rows (the newest)")]
Since = Annotated[int | None, Query(ge=0, description="only rows at or after this time (epoch ms)")]
Until = Annotated[int | None, Query(ge=0, description="only rows at or before this time (epoch ms)")]
EventSince = Annotated[int | None, Query(ge=0, description=(
    "EVENT time (epoch ms): only windows that ended at or after it"))]
EventUntil = Annotated[int | None, Query(ge=0, description=(
    "EVENT time (epoch ms): only windows that ended at or before it"))]
RangeMs = Annotated[int | None, Query(ge=0, description=(
    "only windows that ended within this many ms of the model's NEWEST EVENT (the end of its newest "
    "judged window, not the wall clock); 0 or absent: all"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Problem, "description": "unknown model or alert"}}
Version = Annotated[str | None, Query(max_length=128, description=(
    "only this model version's rows (each version is judged on its own); empty: the rows that name no version"))]


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _known_models(ctx: Context) -> list[str]:
    names = set(ctx.cfg.models)
    names |= {m for m in queries.read_counters(ctx.store) if not m.startswith("_")}
    return sorted(names)


def _check_model(ctx: Context, model: str) -> None:
    if model not in ctx.cfg.models and model not in _known_models(ctx):
        raise HTTPException(404, f"unknown model {model!r}")


class _Counts:
    """What :func:`collect_stats` reads of a store, through the API's non-locking reader."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def read_counters(self) -> dict[str, dict[str, int]]:
        return queries.read_counters(self.store)


def _stats(ctx: Context) -> dict[str, Any]:
    """``driftloop stats --json``: the same counters, firing alerts (a group counts once) and open
    incidents, read through the API's reader."""
    firing = queries.safe(ctx.store, queries.stats_firing_counts, {})
    incidents = queries.safe(ctx.store, queries.open_incident_counts, {})
    return collect_stats(ctx.cfg, _Counts(ctx.store), firing, incidents)  # type: ignore[arg-type]  # _Counts reads the same counters from the store (duck-typed Monitor)


def _reference(ctx: Context, name: str, champion: int | None) -> dict[str, Any]:
    """Where the detectors' reference comes from: the registry's champion, else the config's
    ``models.<name>.reference`` file, else none known."""
    if champion is not None:
        return {"source": "registry", "champion_version": champion, "path": None}
    path = getattr(ctx.cfg.models.get(name), "reference", None)
    if path:
        return {"source": "config", "champion_version": None, "path": str(path)}
    return {"source": None, "champion_version": None, "path": None}


def _summary(ctx: Context, name: str, stats: dict[str, Any], champs: dict[str, int],
             last_judged: dict[str, int]) -> dict[str, Any]:
    mcfg = ctx.cfg.models.get(name)
    row = dict(stats["models"].get(name, {}))
    firing = row.pop("firing_alerts", 0)
    incidents = row.pop("open_incidents", 0)
    row.pop("configured", None)
    status, _ = (ctx.model_status(name) if ctx.analyser is not None else (None, "none"))
    return {"name": name, "task": getattr(mcfg, "task", None),
            "features": dict(getattr(mcfg, "features", {}) or {}), "configured": mcfg is not None,
            "champion_version": champs.get(name), "reference": _reference(ctx, name, champs.get(name)),
            "counts": row, "firing_alerts": firing, "open_incidents": incidents,
            "windows_judged": (status or {}).get("windows_judged"), "last_judged_at": last_judged.get(name),
            "events": queries.safe(ctx.store, lambda c: queries.event_extent(c, name), {"first": None, "newest": None})}


def _last_judged(conn: Any) -> dict[str, int]:
    import sqlalchemy as sa

    t = history.detector_history
    return {m: int(ts) for m, ts in conn.execute(sa.select(t.c.model, sa.func.max(t.c.ts)).group_by(t.c.model))}


def _all_summaries(ctx: Context) -> list[dict[str, Any]]:
    stats = _stats(ctx)
    champs = queries.safe(ctx.store, queries.champions, {})
    judged = queries.safe(ctx.store, _last_judged, {})
    return [_summary(ctx, name, stats, champs, judged) for name in sorted(stats["models"])]


@router.get("/models", response_model=schemas.ModelList, summary="Models: counts, champion, firing alerts")
def list_models(request: Request) -> JSON:
    """Each model's overview: ``counts`` and ``firing_alerts`` / ``open_incidents`` exactly as
    ``driftloop stats --json`` gives them (a group of alerts counts once), ``champion_version``,
    ``reference`` (``source``: ``registry`` with the champion version, ``config`` with the
    configured reference's ``path``, or null), ``events`` (``first``/``newest``: event time,
    epoch ms, of the first window start and the newest window end judged)."""
    return JSON({"models": _all_summaries(_ctx(request))})


@router.get("/models/{model}", response_model=schemas.ModelDetail, responses=NOT_FOUND,
            summary="One model: counts, versions, registry history, current alerts")
def get_model(request: Request, model: str) -> JSON:
    ctx = _ctx(request)
    _check_model(ctx, model)
    summary = next((s for s in _all_summaries(ctx) if s["name"] == model), None)
    if summary is None:
        raise HTTPException(404, f"unknown model {model!r}")
    summary["versions"] = queries.safe(ctx.store, lambda c: queries.versions(c, model), [])
    summary["history"] = queries.safe(ctx.store, lambda c: queries.champion_history(c, model), [])
    summary["alerts"] = queries.safe(ctx.store, lambda c: queries.alerts_list(c, model=model, status="active"), [])
    summary.update(_live_versions(ctx, model, summary["alerts"]))
    return JSON(summary)


def _live_versions(ctx: Context, model: str, active: list[dict[str, Any]]) -> dict[str, Any]:
    """The versions the detectors judge now (the status' ``versions`` block), each with its
    share of the recent traffic and its active alerts; ``versions_capped``; ``shadows`` (the
    shadow comparisons, when the status has them); ``traffic`` (what the shares count)."""
    status, source = ctx.model_status(model)
    versions = (status or {}).get("versions") or {}
    traffic = (queries.safe(ctx.store, lambda c: queries.traffic_share(c, model, now_ms()), None)
               if versions else None)
    shares = (traffic or {}).get("shares") or {}
    firing: dict[str, int] = {}
    for a in active:   # a group counts once, as in driftloop stats
        if a.get("status") in queries.ACTIVE_STATUSES and a.get("group_id") is None:
            v = "" if a.get("model_version") is None else str(a["model_version"])
            firing[v] = firing.get(v, 0) + 1
    live = {v: {**brief, "version": v, "traffic_share": shares.get(v, 0.0) if traffic and traffic["n"] else None,
                "firing_alerts": firing.get(v, 0)}
            for v, brief in sorted(versions.items())}
    out: dict[str, Any] = {"live_versions": live, "versions_capped": dict((status or {}).get("versions_capped") or {}),
                           "status_source": source,
                           "traffic": None if traffic is None else {k: traffic[k] for k in ("n", "since", "window_ms",
                                                                                            "sample")}}
    shadows = (status or {}).get("shadows")
    if shadows:
        out["shadows"] = shadows
    return out


@router.get("/models/{model}/versions", response_model=schemas.Versions, responses=NOT_FOUND,
            summary="The model's registered versions and its promotions, rejections and rollbacks")
def get_versions(request: Request, model: str) -> JSON:
    ctx = _ctx(request)
    _check_model(ctx, model)
    versions = queries.safe(ctx.store, lambda c: queries.versions(c, model), [])
    champ = next((v["version"] for v in versions if v["status"] == "champion"), None)
    return JSON({"model": model, "champion_version": champ, "versions": versions,
                 "history": queries.safe(ctx.store, lambda c: queries.champion_history(c, model), [])})


@router.get("/models/{model}/drift", response_model=schemas.DriftHistory, responses=NOT_FOUND,
            summary="Drift statistics per feature over time, with thresholds")
def get_drift(request: Request, model: str,
              feature: Annotated[list[str] | None, Query(description="only these features (repeatable)")] = None,
              kind: Annotated[list[str] | None, Query(
                  description="data_drift, prediction_drift, multivariate_drift (repeatable)")] = None,
              since: EventSince = None, until: EventUntil = None, range_ms: RangeMs = None,
              limit: Limit = 20_000,
              details: Annotated[bool, Query(description="add every statistic of each window")] = False,
              model_version: Version = None) -> JSON:
    """Drift statistics per judged window, on EVENT time.

    Each point's x is ``t``: the event time (epoch ms) its window ended (``window_start``..
    ``window_end`` is the data judged; ``ts`` is only when it was judged, wall clock). Rows
    written before windows carried their event time have ``t`` = ``ts`` and ``t_source`` =
    ``judged`` (else ``event``). Points come in ``t`` order.

    Filters, all on event time: ``since``/``until`` keep the windows that ended within them;
    ``range_ms`` keeps those that ended within ``range_ms`` of the model's newest event (the end
    of its newest judged window, drift or performance): a replay of last year's data, a
    backfill and a live stream look alike. Without ``since``, ``until`` and ``range_ms``: all.
    ``range`` in the answer: the bounds applied and the model's ``first``/``newest`` event.
    """
    ctx = _ctx(request)
    _check_model(ctx, model)
    bounds = _bounds(ctx, model, since, until, range_ms)
    points = queries.safe(ctx.store, lambda c: queries.drift_series(
        c, model, features=feature, kinds=kind, since=bounds["since"], until=until, limit=limit, details=details,
        model_version=model_version), [])
    status = ctx.version_status(model, model_version)
    return JSON({"model": model, "model_version": model_version, "range": bounds,
                 "thresholds": (status or {}).get("thresholds") or {}, "points": points})


def _bounds(ctx: Context, model: str, since: int | None, until: int | None, range_ms: int | None) -> dict[str, Any]:
    b = queries.safe(ctx.store, lambda c: queries.event_bounds(c, model, since=since, until=until, range_ms=range_ms),
                     {"since": since, "until": until, "first": None, "newest": None})
    return {**b, "range_ms": range_ms or None}


@router.get("/models/{model}/performance", response_model=schemas.PerformanceHistory, responses=NOT_FOUND,
            summary="Performance over time: realised (labels) and estimated (CBPE)")
def get_performance(request: Request, model: str,
                    metric: Annotated[list[str] | None, Query(description="only these metrics (repeatable)")] = None,
                    source: Annotated[str | None, Query(pattern="^(realised|estimated)$")] = None,
                    since: EventSince = None, until: EventUntil = None, range_ms: RangeMs = None,
                    limit: Limit = 20_000, model_version: Version = None) -> JSON:
    """Realised and estimated metrics per judged window, on EVENT time: ``t`` is the end of the
    window's predictions in event time; ``since``, ``until``, ``range_ms`` and ``range`` as for
    ``/api/models/{model}/drift`` (the same newest event, so the two line up)."""
    ctx = _ctx(request)
    _check_model(ctx, model)
    bounds = _bounds(ctx, model, since, until, range_ms)
    points = queries.safe(ctx.store, lambda c: queries.performance_series(
        c, model, metrics=metric, source=source, since=bounds["since"], until=until, limit=limit,
        model_version=model_version), [])
    return JSON({"model": model, "model_version": model_version, "range": bounds, "points": points})


@router.get("/models/{model}/status", responses=NOT_FOUND,
            summary="The detectors' last statistics (ModelMonitor.status()), live or as last committed")
def get_status(request: Request, model: str) -> JSON:
    ctx = _ctx(request)
    _check_model(ctx, model)
    status, source = ctx.model_status(model)
    if status is None:
        raise HTTPException(404, f"model {model!r} has no detector state yet")
    return JSON({"model": model, "source": source, "status": status})


def _last_status(ctx: Context, model: str, model_version: str | None) -> tuple[dict[str, Any] | None, str]:
    """The status of ``model_version`` (None: the champion's) and where it came from."""
    status, source = ctx.model_status(model)
    if model_version is not None:
        status = ctx.version_status(model, model_version)
    return status, (source if status is not None else "none")


def _window(status: dict[str, Any] | None) -> dict[str, Any]:
    lw = (status or {}).get("last_window") or {}
    return {"predictions": lw.get("predictions"), "labelled": lw.get("labelled")}


@router.get("/models/{model}/segments", response_model=schemas.SegmentsView, responses=NOT_FOUND,
            summary="The segments' last statistics: performance vs all traffic, drift, rows")
def get_segments(request: Request, model: str, model_version: Version = None) -> JSON:
    """Per segment (``models.<name>.segments``: per feature its top-N reference values, ``other``
    and ``(missing)``: a bounded set), the last window it was judged on: ``performance`` (with
    ``vs``: all traffic's value of each metric), ``drift`` (data and prediction drift), its rows
    and the detections firing for it; ``overall``: all traffic's last window in the same shape.
    From the detectors' status (live, or as last committed); ``source`` ``none`` and no segments
    while the model has no detector state."""
    ctx = _ctx(request)
    _check_model(ctx, model)
    status, source = _last_status(ctx, model, model_version)
    configured = [s if isinstance(s, str) else str(s.get("feature"))
                  for s in getattr(ctx.cfg.models.get(model), "segments", None) or []]
    return JSON({"model": model, "model_version": (status or {}).get("model_version", model_version),
                 "source": source, "configured": configured, "window": _window(status),
                 "overall": views.overall_view(status), "segments": views.segments_view(status)})


@router.get("/models/{model}/data-quality", response_model=schemas.DataQualityView, responses=NOT_FOUND,
            summary="The data-quality checks of the last window, breaching first, with their evidence")
def get_data_quality(request: Request, model: str, model_version: Version = None) -> JSON:
    """Each check of the last judged window (``missing_rate``, ``unseen_categories``,
    ``out_of_range``, ``constant``, ``type_change``, ``schema_absent``, ``schema_new``,
    ``duplicates``; per feature): its ``share``, the share the reference leads one to
    ``expected``, the ``threshold`` it must reach, p-values, ``breach`` (this window) and
    ``firing`` (an alert-worthy finding now), and ``evidence`` (``top_unseen``, ``examples``,
    ``reference_range``, ...). Breaching first. ``breaching``: how many breach."""
    ctx = _ctx(request)
    _check_model(ctx, model)
    status, source = _last_status(ctx, model, model_version)
    checks = views.data_quality_view(status)
    return JSON({"model": model, "model_version": (status or {}).get("model_version", model_version),
                 "source": source, "window": _window(status), "breaching": sum(c["breach"] for c in checks),
                 "checks": checks})


@router.get("/alerts", response_model=schemas.AlertList, summary="Current alerts, most recently changed first")
def list_alerts(request: Request, model: str | None = None,
                status: Annotated[str | None, Query(
                    pattern="^(pending|firing|resolving|resolved|active)$",
                    description="active: firing or resolving")] = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> JSON:
    ctx = _ctx(request)
    return JSON({"alerts": queries.safe(ctx.store, lambda c: queries.alerts_list(
        c, model=model, status=status, limit=limit), [])})


@router.get("/alerts/events", response_model=schemas.AlertEvents,
            summary="Announced alert changes (what went to driftloop.alerts), oldest first")
def list_alert_events(request: Request, model: str | None = None, since: Since = None, limit: Limit = 1000) -> JSON:
    ctx = _ctx(request)
    return JSON({"events": queries.safe(ctx.store, lambda c: queries.alert_events(
        c, model=model, since=since, limit=limit), [])})


@router.get("/alerts/timeline", response_model=schemas.Timeline,
            summary="Firing episodes (fired -> resolved) for the alerts timeline")
def alert_timeline(request: Request, model: str | None = None, since: Since = None, limit: Limit = 5000) -> JSON:
    """Episodes: ``start``/``end`` when announced (wall clock; ``since`` filters on it) and
    ``start_event``/``end_event``: the event time of the window that fired it and of the one that
    cleared it (what the dashboard draws)."""
    ctx = _ctx(request)
    return JSON({"episodes": queries.safe(ctx.store, lambda c: queries.alert_timeline(
        c, model=model, since=since, limit=limit), [])})


@router.get("/alerts/{alert_id}", responses=NOT_FOUND, summary="One alert, its evidence and its history")
def get_alert(request: Request, alert_id: str) -> JSON:
    ctx = _ctx(request)
    item = queries.safe(ctx.store, lambda c: queries.alert_detail(c, alert_id), None)
    if item is None:
        raise HTTPException(404, f"unknown alert {alert_id!r}")
    return JSON(item)


@router.get("/retrain/jobs", response_model=schemas.RetrainJobs, summary="Retraining jobs, newest first")
def list_jobs(request: Request, model: str | None = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> JSON:
    ctx = _ctx(request)
    return JSON({"jobs": queries.safe(ctx.store, lambda c: queries.retrain_jobs(c, model, limit), [])})


@router.get("/stats", summary="driftloop stats --json: per-model counts, unattributed invalid events, totals")
def get_stats(request: Request) -> JSON:
    ctx = _ctx(request)
    return JSON(_stats(ctx))


@router.get("/monitor", summary="This process's consumer: batches, timings, assigned partitions, lag")
def get_monitor(request: Request) -> JSON:
    ctx = _ctx(request)
    return JSON({"in_process": ctx.monitor is not None, **monitor_snapshot(ctx.monitor)})
