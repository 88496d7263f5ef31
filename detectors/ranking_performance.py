"""Realised performance of a ranking model on labelled windows, against its baseline.

Each labelled window (requests whose engagement is known) is scored per request with the
configured metrics (:func:`detectors.ranking_metrics.request_metrics`: NDCG@k, precision@k,
recall@k, MAP@k, MRR, hit rate@k; a request where nothing was engaged scores 0, as it counts).
A window's value is the mean over its requests, with a percentile-bootstrap interval over
requests. It pages when it is worse than the baseline by at least ``min_degradation`` and a
one-sided Welch test of the window's requests against the baseline's says so at ``alpha``,
Holm-adjusted over the metrics (one family per window, as for classifiers). Only a drop pages:
a recommender getting better pages no one.

The baseline is the reference's requests when the reference has labels (the model's own lists
on its training sample, or the served lists of a reference period), else the first labelled
window of the stream.

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.ranking_lists import encode_ranking, encode_relevance
>>> rng = np.random.default_rng(0)
>>> def requests(n, hit):   # the engaged item is at rank 1 with probability ``hit``
...     preds = [encode_ranking(["a", "b", "c"]) for _ in range(n)]
...     labels = [encode_relevance(["a"] if rng.random() < hit else ["z"]) for _ in range(n)]
...     return preds, labels
>>> perf = RankingPerformance.from_reference(*requests(4000, 0.6), metrics=["ndcg@3", "hit_rate@3"], alpha=0.001)
>>> perf.update(Window(0, 1, 2000), *requests(2000, 0.6))
[]
>>> [d.summary[:44] for d in perf.update(Window(1, 2, 2000), *requests(2000, 0.3))]
['NDCG@3 fell to 0.32 from 0.61 (95% CI 0.30–0', 'hit rate@3 fell to 0.32 from 0.61 (95% CI 0.']
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from detectors import decision as dec
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.ranking_metrics import bootstrap_mean, parse_metric, request_metrics

__all__ = ["RankingPerformance", "metric_label"]

_NAMES = {"ndcg": "NDCG", "map": "MAP", "mrr": "MRR", "precision": "precision", "recall": "recall",
          "hit_rate": "hit rate"}


def metric_label(name: str) -> str:
    """How a metric reads in a sentence: ``NDCG@10``, ``hit rate@5``, ``MRR``.

    >>> metric_label("ndcg@10"), metric_label("hit_rate@5"), metric_label("mrr")
    ('NDCG@10', 'hit rate@5', 'MRR')
    """
    base, k = parse_metric(name)
    return _NAMES[base] + (f"@{k}" if k is not None else "")


class RankingPerformance(Composite):
    """Per-window ranking metrics against a baseline, with increase-only paging.

    Parameters
    ----------
    metrics : metric names (``ndcg@10``, ``mrr``, ...)
    baseline : mapping of metric to per-request values, optional
        The baseline's requests scored (:meth:`from_reference` scores reference requests);
        none: the first judged window becomes the baseline.
    baseline_source : str
        What the baseline is, for the summaries.
    min_degradation : float
        The drop (absolute, in the metric's units) below which nothing pages.
    critical_degradation : float
        The drop at which an alert is critical.
    alpha : float
        Family-wise level per window (Holm over the metrics).
    resolve_after : int
        Windows without a breach that resolve a firing alert.
    draws : int
        Bootstrap draws for a window's interval.
    """

    _params = ("metrics", "baseline", "baseline_source", "min_degradation", "critical_degradation", "alpha",
               "resolve_after", "draws", "model", "seed")

    def __init__(self, metrics: Sequence[str], *, baseline: Mapping[str, np.ndarray] | None = None,
                 baseline_source: str = "none", min_degradation: float = 0.02, critical_degradation: float = 0.1,
                 alpha: float = 0.001, resolve_after: int = 2, draws: int = 200, model: str | None = None,
                 seed: int = 0) -> None:
        for name in metrics:
            parse_metric(name)
        self.metrics = list(metrics)
        self.baseline = {m: np.asarray(v, dtype=np.float64) for m, v in (baseline or {}).items()}
        self.baseline_source = baseline_source
        self.min_degradation = float(min_degradation)
        self.critical_degradation = float(critical_degradation)
        self.alpha = float(alpha)
        self.resolve_after = int(resolve_after)
        self.draws = int(draws)
        self.model = model
        self.seed = int(seed)
        self._book = dec.AlertBook(resolve_after)
        self._baseline = dict(self.baseline)
        self._source = baseline_source
        self._last: dict[str, Any] = {}
        self._last_window: dict[str, Any] = {}
        self._windows = 0

    @classmethod
    def from_reference(cls, predictions: Sequence[str], labels: Sequence[str], *, metrics: Sequence[str],
                       **kwargs: Any) -> RankingPerformance:
        """Judged against the reference requests ``predictions`` and their ``labels`` (none: the
        first judged window becomes the baseline)."""
        if not len(predictions):
            return cls(metrics, **kwargs)
        values = request_metrics(list(predictions), list(labels), list(metrics))
        return cls(metrics, baseline=values, baseline_source=f"{len(predictions):,} reference requests", **kwargs)

    @property
    def source(self) -> str:
        """What the baseline is (the reference, or the stream's first labelled window)."""
        return self._source

    def baseline_metrics(self) -> dict[str, float]:
        """The baseline's mean of each metric (empty until there is a baseline)."""
        return {m: float(v.mean()) for m, v in self._baseline.items() if len(v)}

    def last(self) -> dict[str, Any]:
        """The last judged window, in the shape of the classifiers' performance status (the
        statistics history reads it): ``window``, ``n`` and per metric ``value``, ``baseline``,
        ``ci``, ``p_value`` (Holm-adjusted), ``threshold`` and ``degraded``."""
        if not self._last:
            return {}
        metrics = {m: {"value": r["value"], "baseline": r["baseline"], "ci": [r.get("ci_low"), r.get("ci_high")],
                       "p_value": r.get("p_value_adjusted"), "threshold": r["baseline"] - self.min_degradation,
                       "degraded": bool(r.get("breach"))} for m, r in self._last.items()}
        return {"window": dict(self._last_window), "n": self._last_window.get("n"), "metrics": metrics}

    def update(self, window: Window, predictions: Sequence[str], labels: Sequence[str],
               version: str | None = None) -> list[Detection]:
        """Judge one labelled window; returns the alert changes (fired, escalated, resolved)."""
        values = request_metrics(list(predictions), list(labels), self.metrics)
        self._windows += 1
        self._last_window = {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": window.n}
        if not self._baseline:
            self._baseline = values
            self._source = f"the first {window.n:,} labelled requests of the stream"
            self._last = {m: {"value": float(v.mean()), "baseline": float(v.mean())} for m, v in values.items()}
            return []
        rows = [self._judge_metric(m, values[m]) for m in self.metrics]
        adjusted = dec.adjust_pvalues([r["p_value"] for r in rows], "holm")
        for r, p_adj in zip(rows, adjusted.tolist(), strict=True):
            r["p_value_adjusted"] = p_adj
            r["breach"] = bool(r["drop"] >= self.min_degradation and p_adj < self.alpha)
            self._last[r["metric"]] = r
        out: list[Detection] = []
        for r in rows:
            severity = "critical" if r["drop"] >= self.critical_degradation else "warning"
            change = self._book.update(r["metric"], r["breach"], severity)
            if change is not None:
                out.append(self._detection(r, window, change != "resolve", severity, version))
        return out

    def _judge_metric(self, metric: str, current: np.ndarray) -> dict[str, Any]:
        base = self._baseline[metric]
        value, lo, hi = bootstrap_mean(current, draws=self.draws, seed=self.seed + self._windows)
        baseline = float(base.mean())
        if np.ptp(current) == 0 and np.ptp(base) == 0:      # constant on both sides: no test to run
            p = 0.0 if value < baseline else 1.0
        else:
            p = float(stats.ttest_ind(current, base, equal_var=False, alternative="less").pvalue)
        return {"metric": metric, "value": value, "ci_low": lo, "ci_high": hi, "baseline": baseline,
                "drop": baseline - value, "p_value": p if np.isfinite(p) else 1.0, "n": int(len(current))}

    def _detection(self, r: dict[str, Any], window: Window, firing: bool, severity: str,
                   version: str | None) -> Detection:
        name = metric_label(r["metric"])
        ci = f"95% CI {r['ci_low']:.2f}–{r['ci_high']:.2f}"
        if firing:
            summary = (f"{name} fell to {r['value']:.2f} from {r['baseline']:.2f} ({ci}) over the last "
                       f"{window.n:,} labelled requests (baseline: {self._source}).")
        else:
            summary = f"{name} recovered: {r['value']:.2f} against a baseline of {r['baseline']:.2f} ({ci})."
        evidence = {"baseline": r["baseline"], "value": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                    "min_degradation": self.min_degradation, "p_value_raw": r["p_value"],
                    "baseline_source": self._source, "n": r["n"],
                    "metrics": {m: {k: v[k] for k in ("value", "baseline", "ci_low", "ci_high") if k in v}
                                for m, v in self._last.items() if m in self.metrics}}
        return Detection("performance", r["metric"], None, r["value"], r["p_value_adjusted"],
                         r["baseline"] - self.min_degradation, window, firing=firing,
                         severity=severity if firing else "warning",  # type: ignore[arg-type]  # one of SEVERITIES
                         effect_size=r["drop"], summary=summary, model=self.model, model_version=version,
                         evidence=evidence)

    def clear(self) -> list[str]:
        """Forget the firing alerts (a new reference); their keys."""
        return self._book.clear()
