"""Views of a model's detector status for the dashboard, the API and ``/metrics`` (issue 18):
its segments and its data-quality checks.

Both come from :meth:`detectors.model_monitor.ModelMonitor.status` (the champion's full status
that :meth:`driftloop.app.api.context.Context.model_status` gives: live from the in-process
analyser, else the detector state the monitor committed), never from a history table: they are
the **last** judged window's figures.

* ``status["segments"]`` (:mod:`detectors.segments`): per segment feature, the top-N values of
  the reference plus ``other`` and ``(missing)``; fixed when the reference is loaded, so the
  number of segments (and of ``segment`` metric labels) is bounded. A segment is named
  ``feature=value`` (:func:`segment_key`, as alert messages name it).
* ``status["data_quality"]`` (:mod:`detectors.data_quality`): ``"<check>:<feature>"`` -> the
  check's share, expected share, threshold, p-values, ``breach`` and evidence.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detectors.base import segment_text

__all__ = ["segment_key", "drift_entries", "overall_view", "segments_view", "data_quality_view",
           "CHECK_ORDER", "MAX_NEW_KEYS"]

CHECK_ORDER = ("missing_rate", "unseen_categories", "out_of_range", "constant", "type_change", "schema_absent",
               "schema_new", "duplicates")
"""The checks of :mod:`detectors.data_quality`, in the order a list shows ties."""

MAX_NEW_KEYS = 5
"""``schema_new`` names keys the events carry that the model does not configure: any key a
producer sends. :func:`data_quality_view` keeps at most this many of them (breaching first,
then the most frequent), so the list and the metric series stay bounded."""


def segment_key(feature: str, value: Any) -> str:
    """A segment's name: ``feature=value``, as alert messages write it.

    >>> segment_key("country", "BR")
    'country=BR'
    """
    return segment_text({str(feature): str(value)}) or ""


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _feature_of(key: str, detector: str) -> str:
    """The feature a drift status key is about: ``amount:missing_rate`` -> ``amount``."""
    suffix = ":" + detector
    return key[: -len(suffix)] if detector and key.endswith(suffix) else key


def drift_entries(kind: str, block: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A ``data_drift`` or ``prediction_drift`` block of a status as rows, named as the drift
    history names them: ``{kind, feature, detector, effect, threshold, p_value, p_adjusted,
    drifting, n}``.

    >>> drift_entries("data_drift", {"x": {"detector": "psi", "effect": 0.3, "threshold": 0.1, "drifting": True}})
    [{'kind': 'data_drift', 'feature': 'x', 'detector': 'psi', 'effect': 0.3, 'threshold': 0.1, 'p_value': None, \
'p_adjusted': None, 'drifting': True, 'n': None}]
    """
    out = []
    for key, st in (block or {}).items():
        if not isinstance(st, Mapping):
            continue
        detector = str(st.get("detector") or "")
        out.append({"kind": kind, "feature": _feature_of(str(key), detector), "detector": detector,
                    "effect": _num(st.get("effect")), "threshold": _num(st.get("threshold")),
                    "p_value": _num(st.get("p_value")), "p_adjusted": _num(st.get("p_adjusted")),
                    "drifting": bool(st.get("drifting")), "n": st.get("n")})
    return out


def _metrics(perf: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {str(k): dict(v) for k, v in ((perf or {}).get("metrics") or {}).items() if isinstance(v, Mapping)}


def overall_view(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """All traffic's last window, in the shape of a segment: what a segment is compared with."""
    s = status or {}
    perf = (s.get("performance") or {}).get("last") or None
    drift = drift_entries("data_drift", s.get("data_drift")) + drift_entries("prediction_drift", s.get("prediction_drift"))
    return {"segment": None, "feature": None, "value": None, "label": "all traffic",
            "rows": {"predictions": s.get("predictions"), "labelled": s.get("labelled")},
            "drift": drift, "performance": perf,
            "drifting": sorted({d["feature"] for d in drift if d["drifting"]}),
            "degraded": sorted(m for m, v in _metrics(perf).items() if v.get("degraded"))}


def segments_view(status: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every segment of the status, in the status' order (per feature: the top-N values by
    reference frequency, then ``other``, then ``(missing)``), each with ``segment``
    (``feature=value``), its rows, judgements, ``drift`` rows (:func:`drift_entries`; empty
    while it has none), ``performance`` (its last labelled window, or None), ``vs`` (per
    metric: all traffic's value of the last window) and the detections ``firing`` for it."""
    s = status or {}
    firing = [f for f in (s.get("firing") or []) if isinstance(f, Mapping) and f.get("segment")]
    overall = _metrics((s.get("performance") or {}).get("last"))
    out: list[dict[str, Any]] = []
    for feature, slots in (s.get("segments") or {}).items():
        for slot in slots or []:
            if not isinstance(slot, Mapping):
                continue
            value = str(slot.get("label"))
            where = {str(feature): value}
            drift = (drift_entries("data_drift", slot.get("data_drift"))
                     + drift_entries("prediction_drift", slot.get("prediction_drift")))
            perf = slot.get("performance") or None
            metrics = _metrics(perf)
            out.append({
                "segment": segment_key(feature, value), "feature": str(feature), "value": value,
                "label": value, "reference_rows": slot.get("reference_rows"), "span": slot.get("span"),
                "rows": slot.get("rows"), "judged": slot.get("judged"), "pending": slot.get("pending"),
                "drift": drift, "performance": perf,
                "vs": {m: _num(overall.get(m, {}).get("value")) for m in metrics},
                "drifting": sorted({d["feature"] for d in drift if d["drifting"]}),
                "degraded": sorted(m for m, v in metrics.items() if v.get("degraded")),
                "firing": [dict(f) for f in firing if dict(f["segment"]) == where],
            })
    return out


def _ratio(c: Mapping[str, Any]) -> float:
    share, thr = _num(c.get("share")) or 0.0, _num(c.get("threshold"))
    return share / thr if thr else share


def _order(c: Mapping[str, Any]) -> tuple[Any, ...]:
    check = str(c.get("check") or "")
    rank = CHECK_ORDER.index(check) if check in CHECK_ORDER else len(CHECK_ORDER)
    return (not c.get("breach"), not c.get("firing"), -_ratio(c), rank, str(c.get("feature") or ""))


def data_quality_view(status: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The data-quality checks of the last window, breaching first, then the ones still firing
    (not breaching this window, within their resolve-after), then by how far their share is
    towards its threshold; ties in :data:`CHECK_ORDER` and by feature. Each is the status'
    entry with ``key`` (``check:feature``) and ``firing`` (an alert-worthy finding of the
    detectors now). At most :data:`MAX_NEW_KEYS` ``schema_new`` entries are kept.

    >>> st = {"data_quality": {"missing_rate:x": {"check": "missing_rate", "feature": "x", "share": 0.0,
    ...                                           "threshold": 0.05, "breach": False},
    ...                        "out_of_range:x": {"check": "out_of_range", "feature": "x", "share": 0.3,
    ...                                           "threshold": 0.1, "breach": True}}}
    >>> [c["key"] for c in data_quality_view(st)]
    ['out_of_range:x', 'missing_rate:x']
    """
    s = status or {}
    firing = {(f.get("detector"), f.get("feature") or None) for f in (s.get("firing") or [])
              if isinstance(f, Mapping) and f.get("kind") == "data_quality" and not f.get("segment")}
    checks = []
    for key, c in (s.get("data_quality") or {}).items():
        if not isinstance(c, Mapping):
            continue
        item = dict(c)
        item["key"] = str(key)
        item.setdefault("check", str(key).partition(":")[0])
        item.setdefault("feature", str(key).partition(":")[2] or None)
        item["breach"] = bool(item.get("breach"))
        item["firing"] = (item["check"], item.get("feature") or None) in firing
        item["evidence"] = dict(item.get("evidence") or {})
        checks.append(item)
    checks.sort(key=_order)
    new = [c for c in checks if c["check"] == "schema_new"][MAX_NEW_KEYS:]
    dropped = {id(c) for c in new}
    return [c for c in checks if id(c) not in dropped]
