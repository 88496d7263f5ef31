"""The root-cause hint of an incident: one sentence ranking its evidence the way on-call reasons.

The alerts of an incident (its *leaf* alerts: a group's members, never the group itself) are
read in four steps, each one sentence part, followed by whatever else fired:

1. ``data_quality``: a broken pipeline first (kind ``data_quality``, or the ``missing_rate``
   test of the drift detectors: ``reference_missing_rate`` → ``current_missing_rate``);
2. ``inputs``: which features moved and by how much (``data_drift``, ``multivariate_drift``),
   the strongest three by their shift in reference standard deviations when the evidence gives
   it (else by the detector's own statistic, e.g. PSI), then ``+N more``;
3. ``predictions``: what that did to the outputs (``prediction_drift``): the positive rate of a
   binary classifier, a class's share, the mean prediction or score;
4. ``metrics``: what it did to performance (``performance``: realised metrics, else the
   label-free estimate; ``concept_drift``: the error stream);
5. ``other``: stale streams, detector failures and unknown kinds, in a short phrase.

Active alerts come first in each step (their numbers are today's); a resolved member may still
be named. Pure: no I/O, no clock.

>>> from detectors.base import Detection, Window
>>> from driftloop.alerts.lifecycle import AlertLifecycle, Policy
>>> drift = Detection("data_drift", "wasserstein", "Latitude", 1.6, 1e-9, 0.12, Window(0, 1, 5000),
...                   evidence={"statistics": {"wasserstein": 1.6, "psi": 0.9}})
>>> perf = Detection("performance", "accuracy", None, 0.43, 1e-9, 0.79, Window(0, 1, 1000),
...                  evidence={"baseline": 0.81, "window_n": 1000})
>>> book = AlertLifecycle(Policy(group_window_ms=0), {})
>>> _ = book.observe_many([drift, perf], "housing", "1", now=0)
>>> hint = root_cause_hint("housing", "1", list(book.states.values()))
>>> hint.text
'housing v1: inputs moved (Latitude 1.6σ); accuracy fell to 0.43 from 0.81 over 1,000 labelled predictions.'
>>> [(p["step"], len(p["alert_ids"])) for p in hint.parts]
[('inputs', 1), ('metrics', 1)]
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from driftloop.alerts.lifecycle import AlertState
from driftloop.alerts.messages import DETECTOR_LABELS, duration, model_label
from driftloop.alerts.messages import finite_number as _num

__all__ = ["Hint", "root_cause_hint", "STEPS"]

STEPS = ("data_quality", "inputs", "predictions", "metrics", "other")
_NAMED = 3            # features named before "+N more"
_METRICS_NAMED = 2    # performance metrics named before "+N more"
_RANK = {"warning": 0, "critical": 1}
# names of detectors.performance's metrics (its _NAMES) and of the label-free estimate
_METRIC_NAMES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
                 "roc_auc": "ROC AUC", "log_loss": "log loss", "mae": "MAE", "rmse": "RMSE", "r2": "R²",
                 "balanced_accuracy": "balanced accuracy", "specificity": "specificity",
                 "average_precision": "average precision", "mse": "MSE", "mape": "MAPE", "msle": "MSLE",
                 "rmsle": "RMSLE"}
_ESTIMATES = ("cbpe_", "dle_")    # label-free estimates: detectors.cbpe (classifiers), detectors.dle (regressors)


def _is_estimate(detector: str) -> bool:
    return detector.startswith(_ESTIMATES)


def _metric_name(detector: str) -> str:
    """``F1`` for ``f1``, ``estimated F1`` for ``cbpe_f1``."""
    for prefix in _ESTIMATES:
        if detector.startswith(prefix):
            return "estimated " + _METRIC_NAMES.get(detector[len(prefix):], detector[len(prefix):])
    return _METRIC_NAMES.get(detector, detector)
_MULTIVARIATE = {"pca_reconstruction": "PCA reconstruction error", "domain_classifier": "domain-classifier AUC"}
# binary positive class when no score column names it (detectors.performance.positive_class)
_POSITIVE = ("1", "True", "true", "yes", "positive")


@dataclass(frozen=True)
class Hint:
    """The sentence (``text``) and its ordered parts (JSON-ready dicts: ``step``, ``text``,
    ``alert_ids`` and the numbers used)."""

    text: str
    parts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "parts": [dict(p) for p in self.parts]}


def root_cause_hint(model: str, version: str | None, alerts: Sequence[AlertState]) -> Hint:
    """The hint of an incident of ``model`` ``version`` from its leaf ``alerts`` (active and
    resolved; group alerts are skipped)."""
    leaves = sorted((a for a in alerts if not a.is_group), key=_order)
    steps: dict[str, list[AlertState]] = {s: [] for s in STEPS}
    for a in leaves:
        steps[_step(a)].append(a)
    builders = (_data_quality, _inputs, _predictions, _metrics, _other)
    parts = [p for step, build in zip(STEPS, builders, strict=True) if steps[step] and (p := build(steps[step]))]
    for p in parts:
        segs = _segments([a for a in leaves if a.alert_id in p["alert_ids"]])
        if segs:
            p["segments"] = segs
    head = _head(model, version, leaves)
    body = "; ".join(p["text"] for p in parts) or "no evidence"
    return Hint(f"{head}: {body}.", parts)


# ---------------------------------------------------------------------- reading alerts
def _order(a: AlertState) -> tuple[int, int, float, str]:
    """Active first, then critical, then how far past its threshold (strongest first), then by id."""
    return (0 if a.active else 1, -_RANK.get(a.severity, 0), -_ratio(a), a.alert_id)


def _ratio(a: AlertState) -> float:
    d = a.detection or {}
    stat, thr = _num(d.get("statistic")), _num(d.get("threshold"))
    if stat is None or thr is None:
        return 0.0
    return abs(stat) / max(abs(thr), 1e-12)


def _step(a: AlertState) -> str:
    if a.kind == "data_quality" or a.detector == "missing_rate":
        return "data_quality"
    return {"data_drift": "inputs", "multivariate_drift": "inputs", "prediction_drift": "predictions",
            "performance": "metrics", "concept_drift": "metrics"}.get(a.kind, "other")


def _det(a: AlertState) -> dict[str, Any]:
    return a.detection or {}


def _ev(a: AlertState) -> dict[str, Any]:
    return _det(a).get("evidence") or {}


def _n(a: AlertState) -> int | None:
    """The number of events the detection rests on: ``evidence.window_n``, else ``window.n``."""
    n = _ev(a).get("window_n", (_det(a).get("window") or {}).get("n"))
    return n if isinstance(n, int) and n > 0 else None


def _fmt(v: float) -> str:
    """Two decimals; two significant digits below 0.01 (an error rate of 0.002 is not 0.00).

    >>> _fmt(0.9312), _fmt(0.0021), _fmt(0.0), _fmt(1234.5)
    ('0.93', '0.0021', '0.00', '1,234')
    """
    if 0 < abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:,.0f}"


def _label(a: AlertState) -> str:
    return DETECTOR_LABELS.get(a.detector, a.detector)


def _stat_phrase(a: AlertState) -> str:
    """The fallback: the detector's statistic with its label (``PSI 0.31``; a data-quality
    check's share of events: ``key absent 100%``)."""
    stat = _num(_det(a).get("statistic"))
    if stat is None:
        return _label(a)
    return f"{_label(a)} {stat:.0%}" if a.kind == "data_quality" else f"{_label(a)} {stat:.2g}"


def _ids(alerts: Sequence[AlertState]) -> list[str]:
    return [a.alert_id for a in alerts]


def _more(shown: int, total: int) -> str:
    return f", +{total - shown} more" if total > shown else ""


def _segment(a: AlertState) -> str | None:
    seg = _ev(a).get("segment", getattr(a, "segment", None))
    return None if seg in (None, "") else str(seg)


def _segments(alerts: Sequence[AlertState]) -> list[str]:
    return list(dict.fromkeys(s for a in alerts if (s := _segment(a)) is not None))


def _head(model: str, version: str | None, alerts: Sequence[AlertState]) -> str:
    """``housing v1``, the version taken from the alerts when not given, and the segment(s)."""
    if not version:
        versions = {a.model_version for a in alerts if a.model_version}
        version = versions.pop() if len(versions) == 1 else None
    segs = _segments(alerts)
    where = f" ({'segment' if len(segs) == 1 else 'segments'} {', '.join(segs)})" if segs else ""
    return model_label(model, version) + where


# ---------------------------------------------------------------------- 1. data quality
def _data_quality(alerts: list[AlertState]) -> dict[str, Any]:
    items = [_quality_item(a) for a in alerts]
    shown = items[:_NAMED]
    text = "data quality: " + ", ".join(i["text"] for i in shown) + _more(len(shown), len(items))
    return {"step": "data_quality", "text": text, "alert_ids": _ids(alerts),
            "items": [{k: v for k, v in i.items() if k != "text"} for i in items]}


def _quality_item(a: AlertState) -> dict[str, Any]:
    """A missing-rate test: ``Latitude missing values 0.0% → 35.0%``; any other: its statistic."""
    ev, name = _ev(a), a.feature or a.detector
    before, now = _num(ev.get("reference_missing_rate")), _num(ev.get("current_missing_rate"))
    item: dict[str, Any] = {"alert_id": a.alert_id, "feature": a.feature, "detector": a.detector}
    if a.detector == "missing_rate" and before is not None and now is not None:
        item.update(reference_missing_rate=before, current_missing_rate=now,
                    text=f"{name} missing values {before:.1%} → {now:.1%}")
    else:
        item.update(statistic=_num(_det(a).get("statistic")), text=f"{name} ({_stat_phrase(a)})")
    return item


# ---------------------------------------------------------------------- 2. inputs
def _inputs(alerts: list[AlertState]) -> dict[str, Any]:
    drift = [a for a in alerts if a.kind != "multivariate_drift" and a.feature]
    joint = [a for a in alerts if a not in drift]
    features = _rank_features([_feature_effect(a) for a in drift])
    shown = features[:_NAMED]
    named = [f"{f['feature']} {_effect_text(f)}" for f in shown]
    multi = [_multivariate_item(a) for a in joint]
    if named:
        inner = ", ".join(named) + _more(len(shown), len(features))
        inner += "".join(f"; {m['text']}" for m in multi)
        text = f"inputs moved ({inner})"
    else:
        tops = list(dict.fromkeys(f for m in multi for f in m["top_features"]))[:_NAMED]
        most = f"; most: {', '.join(tops)}" if tops else ""
        text = f"inputs moved jointly ({'; '.join(m['text'] for m in multi)}{most})"
    return {"step": "inputs", "text": text, "alert_ids": _ids(alerts),
            "features": features, "more": max(0, len(features) - len(shown)), "multivariate": multi}


def _sigma(ev: dict[str, Any]) -> tuple[float, str] | None:
    """The shift in reference standard deviations: ``|current_mean - reference_mean| /
    reference_std`` when the evidence has all three, else the Wasserstein distance normalised by
    the reference's standard deviation (``statistics.wasserstein``, univariate_drift's numeric
    effect), else None (categorical features)."""
    rm, cm, sd = _num(ev.get("reference_mean")), _num(ev.get("current_mean")), _num(ev.get("reference_std"))
    if rm is not None and cm is not None and sd:
        return abs(cm - rm) / abs(sd), "mean_shift"
    w = _num((ev.get("statistics") or {}).get("wasserstein"))
    return (w, "wasserstein") if w is not None else None


def _feature_effect(a: AlertState) -> dict[str, Any]:
    ev = _ev(a)
    out: dict[str, Any] = {"feature": a.feature, "alert_id": a.alert_id, "detector": a.detector,
                           "active": a.active, "statistic": _num(_det(a).get("statistic"))}
    sigma = _sigma(ev)
    if sigma is not None:
        out["sigma"], out["sigma_source"] = round(sigma[0], 4), sigma[1]
    for key in ("reference_mean", "current_mean"):
        if _num(ev.get(key)) is not None:
            out[key] = _num(ev.get(key))
    out["label"] = _label(a)
    return out


def _rank_features(effects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per feature (its first, strongest alert), active first, then by σ when every
    feature has one (comparable), else in the alerts' order (past their thresholds)."""
    seen: dict[str, dict[str, Any]] = {}
    for e in effects:
        seen.setdefault(e["feature"], e)
    out = list(seen.values())
    if all("sigma" in e for e in out):
        out.sort(key=lambda e: (not e["active"], -e["sigma"]))
    return out


def _effect_text(f: dict[str, Any]) -> str:
    if "sigma" in f:
        return f"{f['sigma']:.1f}σ"
    return f["label"] if f["statistic"] is None else f"{f['label']} {f['statistic']:.2g}"


def _multivariate_item(a: AlertState) -> dict[str, Any]:
    d, ev = _det(a), _ev(a)
    stat, rel = _num(d.get("statistic")), _num(d.get("effect_size"))
    name = _MULTIVARIATE.get(a.detector, _label(a))
    if a.detector == "pca_reconstruction" and rel is not None:
        text = f"{name} {rel:+.0%}"
    else:
        text = name if stat is None else f"{name} {stat:.2f}"
    return {"alert_id": a.alert_id, "detector": a.detector, "statistic": stat, "effect_size": rel,
            "top_features": [str(f) for f in ev.get("top_features") or []], "text": text}


# ---------------------------------------------------------------------- 3. predictions
def _predictions(alerts: list[AlertState]) -> dict[str, Any]:
    """The model's ``prediction`` first (a rate reads best), then its scores."""
    alerts = sorted(alerts, key=lambda a: (not a.active, a.feature != "prediction"))
    items = _dedupe([_prediction_item(a, alerts) for a in alerts])
    shown = items[:2]
    text = "predictions shifted (" + ", ".join(i["text"] for i in shown) + _more(len(shown), len(items)) + ")"
    return {"step": "predictions", "text": text, "alert_ids": _ids(alerts),
            "outputs": [{k: v for k, v in i.items() if k != "text"} for i in items]}


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for i in items:
        seen.setdefault(i["output"], i)
    return list(seen.values())


def _prediction_item(a: AlertState, alerts: Sequence[AlertState]) -> dict[str, Any]:
    """``positive rate 0.21 → 0.05`` (binary classes), ```b` share 0.40 → 0.10`` (multiclass),
    ``mean prediction 2.07 → 1.54`` (numeric) or ``mean score of `1` 0.30 → 0.12``; else the
    detector's statistic."""
    ev, out = _ev(a), a.feature or a.detector
    item: dict[str, Any] = {"output": out, "alert_id": a.alert_id, "detector": a.detector}
    shares = ev.get("top_changes")
    rm, cm = _num(ev.get("reference_mean")), _num(ev.get("current_mean"))
    if isinstance(shares, list) and shares:
        item.update(_share_change(shares, _score_class(alerts)))
    elif rm is not None and cm is not None:
        what = f"mean score of `{out[7:-1]}`" if out.startswith("scores[") else f"mean {out}"
        sigma = _sigma(ev)
        extra = f" ({sigma[0]:.1f}σ)" if sigma is not None else ""
        item.update(reference_mean=rm, current_mean=cm, text=f"{what} {_fmt(rm)} → {_fmt(cm)}{extra}")
    else:
        item.update(statistic=_num(_det(a).get("statistic")), text=f"{out} {_stat_phrase(a)}")
    return item


def _score_class(alerts: Sequence[AlertState]) -> str | None:
    """The positive class named by a binary classifier's one score column, ``scores[<class>]``."""
    cols = {a.feature for a in alerts if a.feature and a.feature.startswith("scores[")}
    return cols.pop()[7:-1] if len(cols) == 1 else None


def _share_change(shares: list[dict[str, Any]], positive: str | None) -> dict[str, Any]:
    """From univariate_drift's ``top_changes`` (category, reference_share, current_share)."""
    names = [str(s.get("category")) for s in shares]
    if positive is None and len(names) == 2:
        positive = next((c for c in _POSITIVE if c in names), None)
    top = next((s for s in shares if str(s.get("category")) == positive), None) if positive else None
    label = "positive rate"
    if top is None:
        top, label = shares[0], f"`{shares[0].get('category')}` share"
    before, now = float(top["reference_share"]), float(top["current_share"])
    return {"category": str(top.get("category")), "reference_share": before, "current_share": now,
            "text": f"{label} {before:.2f} → {now:.2f}"}


# ---------------------------------------------------------------------- 4. metrics
def _metrics(alerts: list[AlertState]) -> dict[str, Any]:
    perf = sorted((a for a in alerts if a.kind == "performance"), key=_degradation)
    realised = [a for a in perf if not _is_estimate(a.detector)]
    estimated = [a for a in perf if _is_estimate(a.detector)]
    concept = [a for a in alerts if a.kind == "concept_drift"]
    items = [_metric_item(a) for a in (*realised, *estimated)]
    phrases = []
    if realised:
        phrases.append(_metric_sentence(items[:len(realised)], "labelled predictions"))
    elif estimated:
        phrases.append(_metric_sentence(items[len(realised):], "predictions, before labels arrived"))
    if concept:
        phrases.append(_concept_phrase(concept, bool(phrases)))
    return {"step": "metrics", "text": ", ".join(phrases), "alert_ids": _ids(alerts), "metrics": items,
            "concept_drift": [_concept_item(a) for a in concept]}


def _degradation(a: AlertState) -> tuple[int, int, float]:
    """Active first, then critical, then the drop in units of the drop that counts
    (``effect_size`` / ``evidence.min_degradation``: comparable across metrics)."""
    drop, need = _num(_det(a).get("effect_size")), _num(_ev(a).get("min_degradation"))
    ratio = drop / need if drop is not None and need else 0.0
    return (0 if a.active else 1, -_RANK.get(a.severity, 0), -ratio)


def _metric_item(a: AlertState) -> dict[str, Any]:
    ev = _ev(a)
    base = _num(ev.get("baseline", ev.get("baseline_accuracy")))
    item: dict[str, Any] = {"metric": a.detector, "alert_id": a.alert_id, "value": _num(_det(a).get("statistic")),
                            "baseline": base, "n": _n(a), "estimated": _is_estimate(a.detector)}
    if isinstance(ev.get("versus"), dict) and ev["versus"].get("summary"):
        item["versus"] = ev["versus"]["summary"]
    return item


def _metric_sentence(items: list[dict[str, Any]], unit: str) -> str:
    """``accuracy fell to 0.43 from 0.81 over 1,000 labelled predictions``: the direction comes
    from the numbers (error metrics rise, scores fall)."""
    shown = items[:_METRICS_NAMED]
    words = []
    for i in shown:
        name = _metric_name(i["metric"])
        v, b = i["value"], i["baseline"]
        if v is None or b is None:
            words.append(f"{name} degraded" if v is None else f"{name} at {_fmt(v)}")
        else:
            words.append(f"{name} {'fell' if v < b else 'rose'} to {_fmt(v)} from {_fmt(b)}")
    n = shown[0]["n"]
    over = f" over {n:,} {unit}" if n else ""
    return " and ".join(words) + over + _more(len(shown), len(items))


def _concept_item(a: AlertState) -> dict[str, Any]:
    ev = _ev(a)
    return {"detector": a.detector, "alert_id": a.alert_id, "recent_error_rate": _num(ev.get("recent_error_rate")),
            "error_rate_before": _num(ev.get("error_rate_before")), "n": _n(a)}


def _concept_phrase(concept: list[AlertState], after_metrics: bool) -> str:
    """The error stream changed (concept drift): the numbers of the strongest detector, or only
    the detectors' names after realised or estimated metrics."""
    names = ", ".join(dict.fromkeys(_label(a) for a in concept))
    first = _concept_item(concept[0])
    now, before = first["recent_error_rate"], first["error_rate_before"]
    if after_metrics or now is None or before is None:
        return f"concept drift ({names})"
    what = "mean absolute error" if "mean absolute error" in str(_det(concept[0]).get("summary")) else "error rate"
    over = f" over {first['n']:,} labelled predictions" if first["n"] else ""
    return f"{what} {'rose' if now > before else 'fell'} to {_fmt(now)} from {_fmt(before)}{over} ({names})"


# ---------------------------------------------------------------------- 5. other
def _other(alerts: list[AlertState]) -> dict[str, Any]:
    phrases = list(dict.fromkeys(_other_phrase(a) for a in alerts))
    return {"step": "other", "text": "also " + ", ".join(phrases), "alert_ids": _ids(alerts),
            "kinds": list(dict.fromkeys(a.kind for a in alerts))}


def _other_phrase(a: AlertState) -> str:
    """Stale streams (stale.py's ``stream``/``quiet_s``), detector failures (failures.py's
    ``stage``/``error_class``), anything else by kind and statistic."""
    ev = _ev(a)
    if a.kind == "stale_stream" and ev.get("stream"):
        quiet = _num(ev.get("quiet_s"))
        return f"no {ev['stream']}" + (f" for {duration(int(quiet * 1000))}" if quiet is not None else "")
    if a.kind == "detector_failure":
        why = ": ".join(str(ev[k]) for k in ("stage", "error_class") if ev.get(k))
        return f"detectors failing ({why})" if why else "detectors failing"
    return f"{a.kind.replace('_', ' ')} ({_stat_phrase(a)})"
