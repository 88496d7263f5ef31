"""``/metrics``: Prometheus exposition of the store's figures and the live monitor's.

Every figure is read at scrape time (a custom collector, no global registry): counters from the
store's ``counters`` table (durable, so they never go back on a restart), the newest detector
and performance statistics from :mod:`driftloop.monitoring.history`, alerts and retraining jobs from
their tables, and the in-process monitor's batch timings and consumer lag when there is one.

Metric names (labels in braces):

==========================================  =======  ==============================================
``driftloop_events_total``                  counter  {model, stream}: predictions / labels accepted
``driftloop_events_invalid_total``          counter  {model}: dead-lettered (``_unattributed``: no model)
``driftloop_events_joined_total``           counter  {model}: labels joined to their prediction
``driftloop_events_duplicate_total``        counter  {model}: repeated event ids, counted once
``driftloop_events_expired_total``          counter  {model, half}: halves that waited past their TTL
``driftloop_labels_pending``                gauge    {model}: labels waiting for their prediction
``driftloop_drift_statistic``               gauge    {model, kind, detector, feature}: last window's effect size
``driftloop_drift_threshold``               gauge    {model, kind, detector, feature}: effect size that counts as drift
``driftloop_drift_p_value``                 gauge    {model, kind, detector, feature}
``driftloop_drift_detected``                gauge    {model, kind, detector, feature}: 1 if the last window drifted
``driftloop_drift_window_end_timestamp_seconds`` gauge {model}: when the last window was judged
``driftloop_performance``                   gauge    {model, source, metric}: realised / estimated value
``driftloop_performance_baseline``          gauge    {model, source, metric}
``driftloop_performance_degraded``          gauge    {model, source, metric}
``driftloop_alerts``                        gauge    {model, kind, severity, status}: current alerts
``driftloop_alerts_firing``                 gauge    {model, severity}: firing or within the hold-down
``driftloop_retrain_jobs``                  gauge    {model, status, decision}: jobs so far
``driftloop_model_champion_version``        gauge    {model}
``driftloop_outbox_pending``                gauge    {topic}: messages committed, not published yet
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
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from driftloop.app.api import queries
from driftloop.app.api.live import monitor_snapshot
from driftloop.core.store import UNATTRIBUTED, Store
from driftloop.monitoring import history

__all__ = ["DriftloopCollector", "make_registry"]

log = logging.getLogger(__name__)

_DRIFT_LABELS = ["model", "kind", "detector", "feature"]
_PERF_LABELS = ["model", "source", "metric"]


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


class DriftloopCollector(Collector):
    """Collects every driftloop metric from the store (and the monitor, if given) per scrape."""

    def __init__(self, cfg: Any, store: Store, monitor: Any = None) -> None:
        self.cfg = cfg
        self.store = store
        self.monitor = monitor
        self.errors: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        for name, part in (("counters", self._counters), ("drift", self._drift), ("performance", self._performance),
                           ("alerts", self._alerts), ("registry", self._registry), ("outbox", self._outbox),
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
            labels = [r["model"], r["kind"], r["detector"], r["feature"]]
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
        val = GaugeMetricFamily("driftloop_performance", "Last window's metric: realised (labels) or estimated (CBPE).",
                                labels=_PERF_LABELS)
        base = GaugeMetricFamily("driftloop_performance_baseline", "The metric's baseline (reference).",
                                 labels=_PERF_LABELS)
        deg = GaugeMetricFamily("driftloop_performance_degraded", "1 if the last window is significantly worse.",
                                labels=_PERF_LABELS)
        for r in rows:
            labels = [r["model"], r["source"], r["metric"]]
            val.add_metric(labels, _f(r["value"]))
            if r["baseline"] is not None:
                base.add_metric(labels, r["baseline"])
            deg.add_metric(labels, 1.0 if r["degraded"] else 0.0)
        yield from (val, base, deg)

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
        quarantined = list(getattr(getattr(self.monitor, "analyser", None), "quarantined_models", []) or [])
        q = GaugeMetricFamily("driftloop_model_quarantined", "1 while the model's detectors are quarantined "
                              "(they raised; its events are still counted).", labels=["model"])
        for m in sorted(set(self.cfg.models) | set(quarantined)):
            q.add_metric([m], 1.0 if m in quarantined else 0.0)
        yield q


def make_registry(cfg: Any, store: Store, monitor: Any = None) -> CollectorRegistry:
    """A registry holding only driftloop's collector (no process or platform collectors:
    several apps in one process, e.g. tests, must not clash)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DriftloopCollector(cfg, store, monitor))
    return reg
