"""``/metrics``: Prometheus exposition of the store's figures and the live monitor's.

Every figure is read at scrape time (a custom collector, no global registry): counters from the
store's ``counters`` table (durable, so they never go back on a restart), the newest detector
and performance statistics from :mod:`driftloop.monitoring.history`, alerts and retraining jobs from
their tables, and the in-process monitor's batch timings and consumer lag when there is one.

Model versions (issue 14): each version served is judged on its own, so every statistic of the
detectors carries ``model_version`` (``""``: rows that name no version). Only **live** versions
have series: those in the model's :class:`detectors.versions.VersionedMonitor` status
(``versions``), read through ``status_of`` (:meth:`driftloop.app.api.context.Context.model_status`:
the in-process analyser's monitors, else the detector state the monitor committed, deserialised
once per change of that state). A retired version's series disappear at the next scrape; a
capped version never has any (it is counted in ``driftloop_versions_capped``). Without a status
(no detector state yet), or one naming no version, each model shows its newest version's rows.
The per-version figures (predictions, phase) come from the same status; the traffic share from
``examples`` (:func:`driftloop.app.api.queries.traffic_share`: the newest 2,000 predictions of
the last hour, a bounded read). The shadow comparison gauges read the status' ``shadows``
(``ShadowComparison.report()`` per shadow version) and are absent while there is none.

Segments and data quality (issue 18) come from the same status (the champion's: the top level of
:meth:`~detectors.versions.VersionedMonitor.status`; :mod:`driftloop.app.api.views`). ``segment``
is ``feature=value`` (``country=BR``, ``country=other``, ``country=(missing)``): only the
segments in the status, i.e. per segment feature its top-N reference values, ``other`` and
``(missing)``, fixed when the reference is loaded, so the label's cardinality is bounded by the
configuration (``segment_top``), never by the traffic. A segment not judged yet has no
performance or drift series. Data quality has one series per check and feature of the last
window (``feature`` ``""`` for ``duplicates``); ``schema_new`` names unconfigured keys the events
carry, at most :data:`~driftloop.app.api.views.MAX_NEW_KEYS` of them.

Cost per scrape and configured model (measured, SQLite, 2 busy cores): the traffic share reads
at most 2,000 index entries and rows, about 14 ms with 1,000,000 stored predictions (PostgreSQL:
12-16 ms, an ``Index Scan Backward`` on ``ix_examples_model_pred_ts`` once the table has
statistics); counting the whole hour instead took 4.4 s there. Outside the monitor's process the
status comes from the committed state, deserialised again only when it changed: about 45 ms for
a 220 kB state (the in-process analyser's status costs no read).

Metric names (labels in braces):

==========================================  =======  ==============================================
``driftloop_events_total``                  counter  {model, stream}: predictions / labels accepted
``driftloop_events_invalid_total``          counter  {model}: dead-lettered (``_unattributed``: no model)
``driftloop_events_joined_total``           counter  {model}: labels joined to their prediction
``driftloop_events_duplicate_total``        counter  {model}: repeated event ids, counted once
``driftloop_events_expired_total``          counter  {model, half}: halves that waited past their TTL
``driftloop_labels_pending``                gauge    {model}: labels waiting for their prediction
``driftloop_drift_statistic``               gauge    {model, model_version, kind, detector, feature}: last window's effect size
``driftloop_drift_threshold``               gauge    {model, model_version, kind, detector, feature}: effect size that counts as drift
``driftloop_drift_p_value``                 gauge    {model, model_version, kind, detector, feature}
``driftloop_drift_detected``                gauge    {model, model_version, kind, detector, feature}: 1 if the last window drifted
``driftloop_drift_window_end_timestamp_seconds`` gauge {model}: when the model's last window was judged (any live version)
``driftloop_performance``                   gauge    {model, model_version, source, metric}: realised / estimated value
``driftloop_performance_baseline``          gauge    {model, model_version, source, metric}
``driftloop_performance_degraded``          gauge    {model, model_version, source, metric}
``driftloop_segment_rows``                  gauge    {model, model_version, segment, stream}: rows the segment took (predictions / labelled)
``driftloop_segment_performance``           gauge    {model, model_version, segment, metric}: the segment's last realised value
``driftloop_segment_performance_baseline``  gauge    {model, model_version, segment, metric}: the segment's reference value
``driftloop_segment_performance_degraded``  gauge    {model, model_version, segment, metric}: 1 if significantly worse
``driftloop_segment_drift_statistic``       gauge    {model, model_version, segment, kind, detector, feature}: effect size
``driftloop_segment_drift_threshold``       gauge    {model, model_version, segment, kind, detector, feature}
``driftloop_segment_drift_detected``        gauge    {model, model_version, segment, kind, detector, feature}: 1 if drifting
``driftloop_data_quality_share``            gauge    {model, model_version, check, feature}: last window's share (nulls, unseen, ...)
``driftloop_data_quality_threshold``        gauge    {model, model_version, check, feature}: the share that counts as a breach
``driftloop_data_quality_breach``           gauge    {model, model_version, check, feature}: 1 if the last window breached
``driftloop_ranking_label_free``            gauge    {model, model_version, metric}: a ranking model's last window, on predictions alone
``driftloop_ranking_label_free_reference``  gauge    {model, model_version, metric}: the same on the reference's lists
``driftloop_version_live``                  gauge    {model, model_version, phase}: 1 per live version (phase serving / draining)
``driftloop_version_predictions``           gauge    {model, model_version}: predictions its detectors took (since its monitor started)
``driftloop_version_labelled``              gauge    {model, model_version}: labelled predictions its detectors took
``driftloop_version_traffic_share``         gauge    {model, model_version}: share of the model's newest predictions (last hour, at most 2,000)
``driftloop_versions_capped``               gauge    {model}: versions refused a monitor by ``versions.max_live`` (their events not judged)
``driftloop_shadow_labelled``               gauge    {model, model_version, served_version}: labelled requests both answered
``driftloop_shadow_metric``                 gauge    {model, model_version, served_version, metric, side}: side served / shadow
``driftloop_shadow_p_value``                gauge    {model, model_version, served_version, metric}: paired test (McNemar / paired t)
``driftloop_shadow_verdict``                gauge    {model, model_version, served_version}: 1 better, -1 worse, 0 not decided
``driftloop_alerts``                        gauge    {model, kind, severity, status}: current alerts
``driftloop_alerts_firing``                 gauge    {model, severity}: firing or within the hold-down
``driftloop_retrain_jobs``                  gauge    {model, status, decision}: jobs so far
``driftloop_model_champion_version``        gauge    {model}
``driftloop_outbox_pending``                gauge    {topic}: messages committed, not published yet
``driftloop_analysis_backlog_events``       gauge    {}: events committed, not judged yet (``analysis.mode: apart``)
``driftloop_analysis_backlog_entries``      gauge    {}: journal entries (one per model and batch) waiting
``driftloop_analysis_lag_seconds``          gauge    {}: age of the oldest entry waiting (0: none)
``driftloop_analysis_backpressure``         gauge    {}: 1 while ingestion is paused for the backlog
``driftloop_consumer_lag``                  gauge    {topic, partition}: messages behind (in-process monitor)
``driftloop_consumer_assigned_partitions``  gauge    {}
``driftloop_batches_total``                 counter  {}: batches committed by this process
``driftloop_batches_fenced_total``          counter  {}
``driftloop_records_total``                 counter  {}: Kafka records consumed by this process
``driftloop_batch_duration_seconds``        summary  {}: prepare + commit of each batch (_count, _sum)
``driftloop_batch_phase_seconds_total``     counter  {phase}: poll, prepare, commit, outbox
``driftloop_batch_last_duration_seconds``   gauge    {}
``driftloop_model_quarantined``             gauge    {model}: 1 while its detectors are quarantined (in-process monitor)
``driftloop_scrape_errors_total``           counter  {part}: parts of a scrape that failed
==========================================  =======  ==============================================
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from driftloop.app.api import queries, views
from driftloop.app.api.live import monitor_snapshot
from driftloop.core.store import UNATTRIBUTED, Store, now_ms
from driftloop.monitoring import history
from driftloop.monitoring.journal import backlog

__all__ = ["DriftloopCollector", "make_registry"]

log = logging.getLogger(__name__)

_DRIFT_LABELS = ["model", "model_version", "kind", "detector", "feature"]
_PERF_LABELS = ["model", "model_version", "source", "metric"]
_SHADOW_LABELS = ["model", "model_version", "served_version"]

StatusOf = Callable[[str], tuple[dict[str, Any] | None, str]]
"""``model -> (VersionedMonitor.status() or None, source)``: :meth:`Context.model_status`."""


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _label(version: Any) -> str:
    """A ``model_version`` label: ``""`` for none."""
    return "" if version is None else str(version)


def live_versions(status: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """The ``versions`` block of a :class:`~detectors.versions.VersionedMonitor` status (version ->
    its brief), or None when the status names no version (none yet, or a state written before
    versions had monitors of their own)."""
    versions = (status or {}).get("versions")
    if not isinstance(versions, dict) or not versions or set(versions) <= {""}:
        return None
    return versions


def keep_live(rows: Iterable[dict[str, Any]], live: dict[str, set[str] | None]) -> list[dict[str, Any]]:
    """The history rows (oldest first) of each model's live versions (``live[model]``); for a
    model without a live set, those of the version of its newest row (one version, as before
    versions were judged apart).

    >>> rows = [{"model": "m", "model_version": "1"}, {"model": "m", "model_version": "2"}]
    >>> [r["model_version"] for r in keep_live(rows, {})]
    ['2']
    >>> [r["model_version"] for r in keep_live(rows, {"m": {"1", "2"}})]
    ['1', '2']
    """
    rows = list(rows)
    newest = {r["model"]: _label(r["model_version"]) for r in rows}
    return [r for r in rows if _label(r["model_version"]) in (live.get(r["model"]) or {newest[r["model"]]})]


class DriftloopCollector(Collector):
    """Collects every driftloop metric from the store (and the monitor, if given) per scrape."""

    def __init__(self, cfg: Any, store: Store, monitor: Any = None, status_of: StatusOf | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.monitor = monitor
        self.status_of = status_of
        self.errors: dict[str, int] = {}
        self._statuses: dict[str, dict[str, Any] | None] = {}

    def collect(self) -> Iterator[Metric]:
        self._statuses = {}     # each model's status is read once per scrape
        for name, part in (("counters", self._counters), ("drift", self._drift), ("performance", self._performance),
                           ("versions", self._versions), ("segments", self._segments),
                           ("data_quality", self._data_quality), ("label_free", self._label_free),
                           ("shadows", self._shadows), ("alerts", self._alerts),
                           ("registry", self._registry), ("outbox", self._outbox), ("analysis", self._analysis),
                           ("monitor", self._monitor)):
            try:
                yield from list(part())
            except Exception:  # one broken part must not empty the whole scrape
                log.exception("metrics: %s failed", name)
                self.errors[name] = self.errors.get(name, 0) + 1
        err = CounterMetricFamily("driftloop_scrape_errors", "Parts of a /metrics scrape that failed.",
                                  labels=["part"])
        for name, n in sorted(self.errors.items()):
            err.add_metric([name], n)
        yield err

    # -- versions ----------------------------------------------------------------------------
    def _status(self, model: str) -> dict[str, Any] | None:
        if model not in self._statuses:
            status = None
            if self.status_of is not None:
                try:
                    status = self.status_of(model)[0]
                except Exception:  # an unreadable status: the model shows its newest version
                    log.exception("metrics: status of %s failed", model)
            self._statuses[model] = status
        return self._statuses[model]

    def _live(self, models: Iterable[str]) -> dict[str, set[str] | None]:
        out: dict[str, set[str] | None] = {}
        for m in set(models):
            versions = live_versions(self._status(m))
            out[m] = None if versions is None else set(versions)
        return out

    def _models(self) -> list[str]:
        return sorted(set(self.cfg.models))

    # -- parts -------------------------------------------------------------------------------
    def _counters(self) -> Iterator[Metric]:
        counts = queries.read_counters(self.store)
        models = sorted(set(self.cfg.models) | {m for m in counts if m != UNATTRIBUTED})
        events = CounterMetricFamily("driftloop_events", "Events accepted, per model and stream.",
                                     labels=["model", "stream"])
        invalid = CounterMetricFamily("driftloop_events_invalid",
                                      "Invalid events (dead-lettered); model _unattributed when unreadable.",
                                      labels=["model"])
        joined = CounterMetricFamily("driftloop_events_joined", "Labels joined to their prediction.", labels=["model"])
        dup = CounterMetricFamily("driftloop_events_duplicate", "Repeated event ids (counted once).", labels=["model"])
        expired = CounterMetricFamily("driftloop_events_expired", "Halves dropped after waiting past their TTL.",
                                      labels=["model", "half"])
        pending = GaugeMetricFamily("driftloop_labels_pending", "Labels waiting for their prediction.",
                                    labels=["model"])
        for m in models:
            c = counts.get(m, {})
            events.add_metric([m, "predictions"], c.get("predictions", 0))
            events.add_metric([m, "labels"], c.get("labels", 0))
            invalid.add_metric([m], c.get("invalid", 0))
            joined.add_metric([m], c.get("joined", 0))
            dup.add_metric([m], c.get("duplicates", 0))
            expired.add_metric([m, "prediction"], c.get("expired_predictions", 0))
            expired.add_metric([m, "label"], c.get("expired_labels", 0))
            pending.add_metric([m], max(0, c.get("labels", 0) - c.get("joined", 0) - c.get("expired_labels", 0)))
        invalid.add_metric([UNATTRIBUTED], counts.get(UNATTRIBUTED, {}).get("invalid", 0))
        yield from (events, invalid, joined, dup, expired, pending)

    def _drift(self) -> Iterator[Metric]:
        rows = queries.safe(self.store, history.latest_drift, [])
        rows = keep_live(rows, self._live(r["model"] for r in rows))
        stat = GaugeMetricFamily("driftloop_drift_statistic", "Effect size of the last judged window.",
                                 labels=_DRIFT_LABELS)
        thr = GaugeMetricFamily("driftloop_drift_threshold", "Effect size that counts as drift.", labels=_DRIFT_LABELS)
        pv = GaugeMetricFamily("driftloop_drift_p_value", "p-value of the last judged window's test.",
                               labels=_DRIFT_LABELS)
        det = GaugeMetricFamily("driftloop_drift_detected", "1 if the last judged window drifted.",
                                labels=_DRIFT_LABELS)
        judged = GaugeMetricFamily("driftloop_drift_window_end_timestamp_seconds",
                                   "When the model's last window was judged (Unix time).", labels=["model"])
        last_ts: dict[str, int] = {}
        for r in rows:
            labels = [r["model"], _label(r["model_version"]), r["kind"], r["detector"], r["feature"]]
            stat.add_metric(labels, _f(r["statistic"]))
            if r["threshold"] is not None:
                thr.add_metric(labels, r["threshold"])
            if r["p_value"] is not None:
                pv.add_metric(labels, r["p_value"])
            det.add_metric(labels, 1.0 if r["drifting"] else 0.0)
            last_ts[r["model"]] = max(last_ts.get(r["model"], 0), int(r["ts"]))
        for m, ts in sorted(last_ts.items()):
            judged.add_metric([m], ts / 1000.0)
        yield from (stat, thr, pv, det, judged)

    def _performance(self) -> Iterator[Metric]:
        rows = queries.safe(self.store, history.latest_performance, [])
        rows = keep_live(rows, self._live(r["model"] for r in rows))
        val = GaugeMetricFamily("driftloop_performance", "Last window's metric: realised (labels) or estimated (CBPE).",
                                labels=_PERF_LABELS)
        base = GaugeMetricFamily("driftloop_performance_baseline", "The metric's baseline (reference).",
                                 labels=_PERF_LABELS)
        deg = GaugeMetricFamily("driftloop_performance_degraded", "1 if the last window is significantly worse.",
                                labels=_PERF_LABELS)
        for r in rows:
            labels = [r["model"], _label(r["model_version"]), r["source"], r["metric"]]
            val.add_metric(labels, _f(r["value"]))
            if r["baseline"] is not None:
                base.add_metric(labels, r["baseline"])
            deg.add_metric(labels, 1.0 if r["degraded"] else 0.0)
        yield from (val, base, deg)

    def _versions(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("driftloop_version_live", "1 per live model version (its own detectors); "
                                 "phase serving or draining (the old champion's late labels).",
                                 labels=["model", "model_version", "phase"])
        preds = GaugeMetricFamily("driftloop_version_predictions", "Predictions the version's detectors took "
                                  "(since its monitor started).", labels=["model", "model_version"])
        labelled = GaugeMetricFamily("driftloop_version_labelled", "Labelled predictions the version's detectors "
                                     "took.", labels=["model", "model_version"])
        share = GaugeMetricFamily("driftloop_version_traffic_share", "Share of the model's newest predictions the "
                                  "version served (last hour by event time, at most the newest 2000).",
                                  labels=["model", "model_version"])
        capped = GaugeMetricFamily("driftloop_versions_capped", "Versions refused a monitor by versions.max_live "
                                   "(their events are counted, not judged).", labels=["model"])
        now = now_ms()
        for m in self._models():
            status = self._status(m)
            if status is None:
                continue
            versions = status.get("versions") or {}
            for v, brief in sorted(versions.items()):
                live.add_metric([m, v, str(brief.get("phase") or "serving")], 1.0)
                preds.add_metric([m, v], _f(brief.get("predictions")))
                labelled.add_metric([m, v], _f(brief.get("labelled")))
            capped.add_metric([m], float(len(status.get("versions_capped") or {})))
            if versions:
                traffic = queries.safe(self.store, partial(queries.traffic_share, model=m, now=now), None)
                shares = (traffic or {}).get("shares") or {}
                if shares:
                    for v in sorted(versions):
                        share.add_metric([m, v], shares.get(v, 0.0))
        yield from (live, preds, labelled, share, capped)

    def _champion_statuses(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """``(model, version label, status)`` of each model with a stored status (its champion's)."""
        for m in self._models():
            status = self._status(m)
            if status:
                yield m, _label(status.get("model_version")), status

    def _segments(self) -> Iterator[Metric]:
        """Each segment's last statistics (the champion's status): bounded, see the module's docstring."""
        seg = [*_PERF_LABELS[:2], "segment"]
        rows = GaugeMetricFamily("driftloop_segment_rows", "Rows the segment took since its reference was loaded "
                                 "(stream predictions or labelled).", labels=[*seg, "stream"])
        val = GaugeMetricFamily("driftloop_segment_performance", "The segment's last realised metric (its last "
                                "labelled window).", labels=[*seg, "metric"])
        base = GaugeMetricFamily("driftloop_segment_performance_baseline", "The segment's metric on the reference.",
                                 labels=[*seg, "metric"])
        deg = GaugeMetricFamily("driftloop_segment_performance_degraded", "1 if the segment's last labelled window is "
                                "significantly worse (adjusted with all traffic's tests).", labels=[*seg, "metric"])
        dlabels = [*seg, "kind", "detector", "feature"]
        stat = GaugeMetricFamily("driftloop_segment_drift_statistic", "Effect size of the segment's last judged "
                                 "window.", labels=dlabels)
        thr = GaugeMetricFamily("driftloop_segment_drift_threshold", "Effect size that counts as drift.",
                                labels=dlabels)
        det = GaugeMetricFamily("driftloop_segment_drift_detected", "1 if the segment's last judged window drifted.",
                                labels=dlabels)
        for m, version, status in self._champion_statuses():
            for s in views.segments_view(status):
                labels = [m, version, s["segment"]]
                for stream in ("predictions", "labelled"):
                    n = (s.get("rows") or {}).get(stream)
                    if n is not None:
                        rows.add_metric([*labels, stream], float(n))
                for metric, v in sorted(((s.get("performance") or {}).get("metrics") or {}).items()):
                    val.add_metric([*labels, metric], _f(v.get("value")))
                    if v.get("baseline") is not None:
                        base.add_metric([*labels, metric], _f(v["baseline"]))
                    deg.add_metric([*labels, metric], 1.0 if v.get("degraded") else 0.0)
                for d in s["drift"]:
                    dl = [*labels, d["kind"], d["detector"], d["feature"]]
                    stat.add_metric(dl, _f(d["effect"]))
                    if d["threshold"] is not None:
                        thr.add_metric(dl, d["threshold"])
                    det.add_metric(dl, 1.0 if d["drifting"] else 0.0)
        yield from (rows, val, base, deg, stat, thr, det)

    def _data_quality(self) -> Iterator[Metric]:
        """The data-quality checks of each model's last window (the champion's status)."""
        dq = [*_PERF_LABELS[:2], "check", "feature"]
        share = GaugeMetricFamily("driftloop_data_quality_share", "Last window's share of the check (nulls, unseen "
                                  "categories, out of range, refused types, absent or new keys, duplicates).",
                                  labels=dq)
        thr = GaugeMetricFamily("driftloop_data_quality_threshold", "The share that counts as a breach.", labels=dq)
        breach = GaugeMetricFamily("driftloop_data_quality_breach", "1 if the last window breached the check.",
                                   labels=dq)
        for m, version, status in self._champion_statuses():
            for c in views.data_quality_view(status):
                labels = [m, version, str(c["check"]), str(c.get("feature") or "")]
                share.add_metric(labels, _f(c.get("share")))
                if c.get("threshold") is not None:
                    thr.add_metric(labels, _f(c["threshold"]))
                breach.add_metric(labels, 1.0 if c["breach"] else 0.0)
        yield from (share, thr, breach)

    def _label_free(self) -> Iterator[Metric]:
        """A ranking model's label-free metrics of its last window beside the reference's
        (coverage, Gini, top items' share, mean popularity, novelty, list length, unseen share)."""
        labels = [*_PERF_LABELS[:2], "metric"]
        last = GaugeMetricFamily("driftloop_ranking_label_free", "A ranking model's last window, on predictions "
                                 "alone (no labels needed).", labels=labels)
        ref = GaugeMetricFamily("driftloop_ranking_label_free_reference", "The same metric on the reference's lists.",
                                labels=labels)
        for m, version, status in self._champion_statuses():
            lf = status.get("label_free") or {}
            for family, values in ((last, lf.get("last") or {}), (ref, lf.get("reference") or {})):
                for metric, v in sorted(values.items()):
                    if isinstance(v, int | float) and metric != "n":
                        family.add_metric([m, version, metric], _f(v))
        yield from (last, ref)

    def _shadows(self) -> Iterator[Metric]:
        n = GaugeMetricFamily("driftloop_shadow_labelled", "Labelled requests the served version and the shadow "
                              "both answered.", labels=_SHADOW_LABELS)
        metric = GaugeMetricFamily("driftloop_shadow_metric", "The metric of each side on the same labelled "
                                   "requests (side served or shadow).", labels=[*_SHADOW_LABELS, "metric", "side"])
        pv = GaugeMetricFamily("driftloop_shadow_p_value", "Two-sided p-value of the paired test (McNemar; paired t "
                               "for regression).", labels=[*_SHADOW_LABELS, "metric"])
        verdict = GaugeMetricFamily("driftloop_shadow_verdict", "1: the shadow is significantly better, -1: worse, "
                                    "0: not decided.", labels=_SHADOW_LABELS)
        for m in self._models():
            shadows = (self._status(m) or {}).get("shadows") or {}
            for sv, rep in sorted(shadows.items()):
                if not isinstance(rep, dict):
                    continue
                labels = [m, _label(rep.get("shadow_version") or sv), _label(rep.get("served_version"))]
                name = str(rep.get("metric") or "")
                n.add_metric(labels, _f(rep.get("n")))
                metric.add_metric([*labels, name, "served"], _f(rep.get("served_metric")))
                metric.add_metric([*labels, name, "shadow"], _f(rep.get("shadow_metric")))
                if rep.get("p_value") is not None:
                    pv.add_metric([*labels, name], float(rep["p_value"]))
                verdict.add_metric(labels, 1.0 if rep.get("better") else -1.0 if rep.get("worse") else 0.0)
        yield from (n, metric, pv, verdict)

    def _alerts(self) -> Iterator[Metric]:
        rows = queries.safe(self.store, queries.alert_counts, [])
        allm = GaugeMetricFamily("driftloop_alerts", "Current alerts by status.",
                                 labels=["model", "kind", "severity", "status"])
        firing = GaugeMetricFamily("driftloop_alerts_firing", "Alerts firing (or in their hold-down).",
                                   labels=["model", "severity"])
        fsum: dict[tuple[str, str], int] = {(m, s): 0 for m in self.cfg.models for s in ("warning", "critical")}
        for model, kind, severity, status, n in rows:
            allm.add_metric([model, kind, severity, status], n)
            if status in queries.ACTIVE_STATUSES:
                fsum[(model, severity)] = fsum.get((model, severity), 0) + n
        for (model, severity), n in sorted(fsum.items()):
            firing.add_metric([model, severity], n)
        yield from (allm, firing)

    def _registry(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("driftloop_retrain_jobs", "Retraining jobs so far, by status and decision.",
                                 labels=["model", "status", "decision"])
        for model, status, decision, n in queries.safe(self.store, queries.retrain_job_counts, []):
            jobs.add_metric([model, status, decision], n)
        champ = GaugeMetricFamily("driftloop_model_champion_version", "The champion's version number.",
                                  labels=["model"])
        for model, version in sorted(queries.safe(self.store, queries.champions, {}).items()):
            champ.add_metric([model], version)
        yield from (jobs, champ)

    def _outbox(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("driftloop_outbox_pending", "Messages committed but not published yet.",
                              labels=["topic"])
        for topic, n in sorted(queries.safe(self.store, queries.outbox_pending, {}).items()):
            g.add_metric([topic], n)
        yield g

    def _analysis(self) -> Iterator[Metric]:
        """The analysis journal (``analysis.mode: apart``; empty inline): what waits to be judged."""
        waiting = queries.safe(self.store, backlog, None)
        if waiting is None:
            return
        yield GaugeMetricFamily("driftloop_analysis_backlog_events", "Events committed by ingestion and not "
                                "judged by the detectors yet (analysis.mode: apart).", value=waiting.events)
        yield GaugeMetricFamily("driftloop_analysis_backlog_entries", "Journal entries (one per model and batch) "
                                "waiting to be judged.", value=waiting.entries)
        age = 0.0 if waiting.oldest_ms is None else max(0.0, (now_ms() - waiting.oldest_ms) / 1000.0)
        yield GaugeMetricFamily("driftloop_analysis_lag_seconds", "Age of the oldest journal entry not judged yet "
                                "(0 when none waits).", value=age)
        paused = getattr(self.monitor, "analysis_paused_since", None)
        yield GaugeMetricFamily("driftloop_analysis_backpressure", "1 while ingestion is paused because the "
                                "analysis backlog is over analysis.max_backlog_events.", value=0.0 if paused is None else 1.0)

    def _monitor(self) -> Iterator[Metric]:
        if self.monitor is None:
            return
        s = monitor_snapshot(self.monitor)
        lag = GaugeMetricFamily("driftloop_consumer_lag", "Messages behind the partition's end (as of the last poll).",
                                labels=["topic", "partition"])
        for item in s.get("lag", []):
            lag.add_metric([item["topic"], str(item["partition"])], item["lag"])
        yield lag
        yield GaugeMetricFamily("driftloop_consumer_assigned_partitions", "Partitions assigned to this monitor.",
                                value=len(s.get("assigned", [])))
        yield CounterMetricFamily("driftloop_batches", "Batches committed by this process.",
                                  value=s.get("batches", 0))
        yield CounterMetricFamily("driftloop_batches_fenced", "Batches rolled back because another consumer "
                                  "took their partitions.", value=s.get("fenced", 0))
        yield CounterMetricFamily("driftloop_records", "Kafka records consumed by this process.",
                                  value=s.get("records", 0))
        yield SummaryMetricFamily("driftloop_batch_duration_seconds", "Decode, validate, join, detect and commit "
                                  "of one batch.", count_value=s.get("batches", 0),
                                  sum_value=s.get("prepare_s", 0.0) + s.get("commit_s", 0.0))
        phases = CounterMetricFamily("driftloop_batch_phase_seconds", "Time spent per phase of the loop.",
                                     labels=["phase"])
        for phase in ("poll", "prepare", "commit", "outbox"):
            phases.add_metric([phase], s.get(f"{phase}_s", 0.0))
        yield phases
        yield GaugeMetricFamily("driftloop_batch_last_duration_seconds", "The last batch's duration.",
                                value=s.get("last_batch_ms", 0.0) / 1000.0)
        analyser = getattr(self.monitor, "analyser", None)
        if not hasattr(analyser, "quarantined_models"):
            return      # analysis.mode apart: the judging process knows; its detector_failure alerts say it
        quarantined = list(getattr(analyser, "quarantined_models", None) or [])
        q = GaugeMetricFamily("driftloop_model_quarantined", "1 while the model's detectors are quarantined "
                              "(they raised; its events are still counted).", labels=["model"])
        for m in sorted(set(self.cfg.models) | set(quarantined)):
            q.add_metric([m], 1.0 if m in quarantined else 0.0)
        yield q


def make_registry(cfg: Any, store: Store, monitor: Any = None, status_of: StatusOf | None = None) -> CollectorRegistry:
    """A registry holding only driftloop's collector (no process or platform collectors:
    several apps in one process, e.g. tests, must not clash). ``status_of``: each model's
    detector status (for the per-version figures); without it every model shows its newest
    version's statistics and no per-version gauge."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DriftloopCollector(cfg, store, monitor, status_of))
    return reg
