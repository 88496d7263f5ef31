"""Data quality per window: is it the world that changed, or our pipeline?

Most drift seen in production is a broken upstream: a feature arriving null, a unit change, a
new category, a column renamed, a producer sending strings. :class:`DataQuality` judges each
window of a model's predictions against the reference (the training sample) with eight checks,
each a :class:`~detectors.base.Detection` of kind ``data_quality`` (contract v1.1) whose summary
points at the pipeline:

============================  ==================================================================
check (``detector``)          fires when (per feature, per window)
============================  ==================================================================
``missing_rate``              the share of nulls rose by at least ``min_missing_change`` above
                              the reference's (two-proportion z-test, one-sided)
``unseen_categories``         categorical: values never seen in the reference exceed the share
                              expected of a stationary stream (the reference's Good–Turing
                              missing mass) by ``min_unseen_share`` (binomial test)
``out_of_range``              numeric: values outside the reference's [min, max] exceed the
                              share expected by chance, ``2 / (m + 1)``, by
                              ``min_out_of_range_share`` (binomial test)
``constant``                  a feature that varies in the reference took one value in the whole
                              window (p-value: the reference's top value share to the power n)
``type_change``               at least ``min_type_error_share`` of the model's events were
                              refused because this feature had the wrong type (a string in a
                              numeric feature): counted by validation (the window's marks)
``schema_absent``             the key is missing (not null: absent) from at least
                              ``schema_share`` of the events
``schema_new``                events carry a key the model does not configure, in at least
                              ``schema_share`` of them (``feature`` is that key)
``duplicates``                at least ``min_duplicate_share`` of the prediction events repeated an
                              ``event_id`` already received
============================  ==================================================================

The four checks with a p-value form one family per window: their p-values are adjusted
together (Holm by default) and a check fires when its adjusted p-value is below ``alpha`` *and*
its effect reaches its threshold, as the drift detectors decide (:mod:`detectors.decision`).
The four counted checks (types, schema, duplicates) have no sampling noise (a refused event is a
fact, not an estimate); they fire on their share alone. A feature whose key is absent is not
reported again as missing: the schema finding explains its nulls.

What validation refused or the dedupe dropped never reaches the window's columns, so each
accepted event carries marks of what the pipeline saw around it (``consumers/marks.py`` makes
them; :class:`~detectors.batch.PredictionBatch` ``marks``): the events refused for a feature's
type and the duplicates dropped just before it, and its own absent and unknown keys.
:meth:`DataQuality.columns` turns them into window columns (``__dq__…``) that travel with the
event into its window, so a window's counts are the same however the stream was cut into
batches (live, replayed, or consumed again after a crash: the detector state stays exact).
Events dropped after a batch's last accepted one are carried to the next accepted one
(:meth:`DataQuality.observe_pipeline`).

>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.reference import Reference
>>> rng = np.random.default_rng(0)
>>> ref = Reference({"amount": rng.lognormal(3, 1, 5000), "country": rng.choice(["DE", "FR"], 5000)},
...                 {"amount": "numeric", "country": "categorical"}, task="regression")
>>> dq = DataQuality(ref)
>>> clean = {"amount": rng.lognormal(3, 1, 2000), "country": rng.choice(["DE", "FR"], 2000).astype(object)}
>>> dq.update(Window(0, 1, 2000), clean)
[]
>>> broken = {"amount": clean["amount"] * 1000, "country": clean["country"]}
>>> [(d.detector, d.feature) for d in dq.update(Window(1, 2, 2000), broken)]
[('out_of_range', 'amount')]
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binom, norm

from detectors import decision as dec
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.reference import Reference
from detectors.two_sample import is_missing

__all__ = ["DataQuality", "CHECKS", "PIPELINE_DEFECTS", "PREFIX"]

CHECKS = ("missing_rate", "unseen_categories", "out_of_range", "constant", "type_change", "schema_absent",
          "schema_new", "duplicates")
# checks that name a pipeline defect rather than a change in the world
PIPELINE_DEFECTS = ("missing_rate", "type_change", "schema_absent", "constant")
MAX_EXAMPLES = 5          # offending values kept as evidence, per check
MAX_REFERENCE_CATEGORIES = 100_000   # beyond this a categorical feature's unseen check is off
_MIN_COUNTED = 5          # a counted check needs at least this many events behind it
_COUNTED = ("type_change", "schema_absent", "schema_new", "duplicates")   # from the pipeline's counts


PREFIX = "__dq__"   # window columns of the marks
SEP = "\x00"        # between a feature and a refused value, and between unknown keys (never in input)


def _sum(columns: Mapping[str, np.ndarray], key: str) -> int:
    col = columns.get(PREFIX + key)
    return 0 if col is None else int(np.sum(col))


@dataclass(slots=True)
class _Finding:
    """One check of one feature in one window: its share, what the reference leads one to expect,
    the threshold the share must pass and (tested checks) the raw p-value."""

    check: str
    feature: str | None
    share: float
    expected: float
    threshold: float
    n: int
    p: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.check}:{self.feature or ''}"


def _profile(values: np.ndarray, numeric: bool) -> dict[str, Any]:
    """What the checks need of one reference column."""
    missing = is_missing(values)
    valid = values[~missing]
    m = len(valid)
    prof: dict[str, Any] = {"missing": float(missing.mean()) if len(values) else 0.0, "m": m, "rows": len(values)}
    if m == 0:
        prof.update(top_share=1.0, distinct=0)
        return prof
    uniq, counts = np.unique(valid.astype(np.float64) if numeric else valid.astype(str), return_counts=True)
    prof.update(top_share=float(counts.max() / m), distinct=int(len(uniq)))
    if numeric:
        prof.update(lo=float(valid.min()), hi=float(valid.max()), median=float(np.median(valid)))
    else:
        prof["singletons"] = int((counts == 1).sum())
        prof["categories"] = uniq.astype(object) if len(uniq) <= MAX_REFERENCE_CATEGORIES else None
    return prof


class DataQuality(Composite):
    """Window-by-window data-quality checks of one model's features against its reference.

    Parameters
    ----------
    reference : Reference
        The training sample: each feature's null share, range, categories and spread.
    alpha : float
        Family-wise level of the tested checks of one window (``1 / expected_run_time``).
    correction : {"holm", "bh", "bonferroni", "none"}
        Across the tested checks of one window.
    min_missing_change, min_unseen_share, min_out_of_range_share : float
        How far above what the reference leads one to expect a share must be to count (absolute).
    min_type_error_share, schema_share, min_duplicate_share : float
        Shares of the events behind the counted checks.
    resolve_after : int
        Clean windows before a finding resolves.
    """

    _params = ("reference", "alpha", "correction", "min_missing_change", "min_unseen_share",
               "min_out_of_range_share", "min_type_error_share", "schema_share", "min_duplicate_share",
               "resolve_after", "model", "reference_desc")

    def __init__(self, reference: Reference, *, alpha: float = 0.001, correction: str = "holm",
                 min_missing_change: float = 0.05, min_unseen_share: float = 0.01,
                 min_out_of_range_share: float = 0.1, min_type_error_share: float = 0.01,
                 schema_share: float = 0.5, min_duplicate_share: float = 0.01, resolve_after: int = 2,
                 model: str | None = None, reference_desc: str | None = None) -> None:
        if correction not in dec.CORRECTIONS:
            raise ValueError(f"correction must be one of {dec.CORRECTIONS}")
        for name, v in (("min_missing_change", min_missing_change), ("min_unseen_share", min_unseen_share),
                        ("min_out_of_range_share", min_out_of_range_share),
                        ("min_type_error_share", min_type_error_share), ("schema_share", schema_share),
                        ("min_duplicate_share", min_duplicate_share)):
            if not 0.0 < float(v) <= 1.0:
                raise ValueError(f"{name} must be a share in (0, 1], got {v}")
        self.reference = reference
        self.alpha = float(alpha)
        self.correction = correction
        self.min_missing_change = float(min_missing_change)
        self.min_unseen_share = float(min_unseen_share)
        self.min_out_of_range_share = float(min_out_of_range_share)
        self.min_type_error_share = float(min_type_error_share)
        self.schema_share = float(schema_share)
        self.min_duplicate_share = float(min_duplicate_share)
        self.resolve_after = int(resolve_after)
        self.model = model
        self.reference_desc = reference_desc if reference_desc is not None else f"{reference.n:,} training rows"
        self._types = dict(reference.feature_types)
        self._rebuild()
        self._carry: dict[str, Any] = {}   # dropped events after a batch's last accepted one: on the next
        self._book = dec.AlertBook(self.resolve_after)
        self._last: dict[str, dict[str, Any]] = {}

    _derived = ("_profiles",)   # recomputed from the reference on restore, not stored with every batch

    def _rebuild(self) -> None:
        ref = self.reference
        self._profiles = {f: _profile(np.asarray(ref.features[f]), t == "numeric") for f, t in self._types.items()}

    # ------------------------------------------------------------------ inputs
    def observe_pipeline(self, trailing: Mapping[str, Any] | None) -> None:
        """Events dropped after a batch's last accepted event (``refused``, ``refused:<feature>``,
        ``duplicates`` counts and refused ``examples``): counted on the next accepted event,
        through :meth:`columns`."""
        for key, value in (trailing or {}).items():
            if key == "examples":
                kept = self._carry.setdefault("examples", [])
                kept.extend(str(v) for v in value[: MAX_EXAMPLES - len(kept)])
            else:
                self._carry[key] = int(self._carry.get(key, 0)) + int(value)

    def columns(self, marks: Mapping[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
        """The window columns of a batch's ``n`` events' marks: every column every batch (a window
        buffer needs the same ones each time), zeros where the batch had none, and the carried
        counts on its first event."""
        marks = marks or {}
        out: dict[str, np.ndarray] = {}
        counted = ["refused", "duplicates", *(f"refused:{f}" for f, t in self._types.items() if t == "numeric"),
                   *(f"absent:{f}" for f in self._types)]
        for key in counted:
            col = marks.get(key)
            out[PREFIX + key] = np.zeros(n, np.int32) if col is None else np.asarray(col, dtype=np.int32).copy()
        for key in ("example", "unknown"):
            col = marks.get(key)
            out[PREFIX + key] = np.full(n, None, dtype=object) if col is None else np.asarray(col, dtype=object).copy()
        if n and self._carry:
            carry, self._carry = self._carry, {}
            for key, value in carry.items():
                if PREFIX + key in out and key != "examples":
                    out[PREFIX + key][0] += int(value)
            if carry.get("examples") and out[PREFIX + "example"][0] is None:
                out[PREFIX + "example"][0] = carry["examples"][0]
        return out

    def firing(self) -> list[str]:
        """Keys (``check:feature``) of the findings firing now."""
        return self._book.firing()

    def pipeline_defects(self) -> set[str]:
        """The features the last window's checks found broken by the pipeline (``PIPELINE_DEFECTS``):
        the domain classifier leaves them out of that window, so one defect pages once."""
        return {v["feature"] for v in self._last.values() if v["breach"] and v["check"] in PIPELINE_DEFECTS}

    def last(self) -> dict[str, dict[str, Any]]:
        """Every check of the last window judged, by key, with that window (a check not measured
        in it, such as a key no longer sent, is not there)."""
        return {k: dict(v) for k, v in self._last.items()}

    def update(self, window: Window, columns: Mapping[str, np.ndarray],
               model_version: str | None = None) -> list[Detection]:
        """Judge one window's ``columns`` (with the ``__dq__`` marks of :meth:`columns`, if any);
        return the detections it causes (new, escalated, resolved)."""
        before, self._last = self._last, {}        # :meth:`last`: this window's checks only
        n = int(window.n)
        found = self._counted(columns, n)
        absent = {f.feature for f in found if f.check == "schema_absent" and f.share >= f.threshold}
        found += self._tested(columns, n, absent)
        p_adj = dec.adjust_pvalues([np.nan if f.p is None else f.p for f in found], self.correction)
        out: list[Detection] = []
        seen: set[str] = set()
        for f, pa in zip(found, p_adj):
            seen.add(f.key)
            d = self._judge(f, pa, window, model_version)
            if d is not None:
                out.append(d)
        for key in self._book.firing():           # a firing check not measured this window is clean
            if key not in seen and self._book.update(key, False) == "resolve":
                out.append(self._resolved(key, before.get(key, {}), window, model_version))
        return out

    # ------------------------------------------------------------------ the checks
    def _tested(self, columns: Mapping[str, np.ndarray], n: int, absent: set[str | None]) -> list[_Finding]:
        out: list[_Finding] = []
        for name, kind in self._types.items():
            col = columns.get(name)
            values = np.asarray(col) if col is not None else (
                np.full(n, np.nan) if kind == "numeric" else np.full(n, None, dtype=object))
            missing = is_missing(values)
            prof = self._profiles[name]
            if name not in absent:
                out.append(self._missing(name, prof, float(missing.mean()) if n else 0.0, n))
            valid = values[~missing]
            if len(valid) == 0:
                continue
            for found in (self._range(name, prof, valid) if kind == "numeric" else self._unseen(name, prof, valid),
                          self._constant(name, prof, valid)):
                if found is not None:
                    out.append(found)
        return out

    def _missing(self, name: str, prof: dict[str, Any], share: float, n: int) -> _Finding:
        p0, m = prof["missing"], prof["rows"]
        pooled = (p0 * m + share * n) / max(m + n, 1)
        se = np.sqrt(pooled * (1 - pooled) * (1 / max(m, 1) + 1 / max(n, 1)))
        p = float(norm.sf((share - p0) / se)) if se > 0 else (0.0 if share > p0 else 1.0)
        return _Finding("missing_rate", name, share, p0, p0 + self.min_missing_change, n, p,
                        {"reference_missing_rate": p0, "current_missing_rate": share})

    def _range(self, name: str, prof: dict[str, Any], valid: np.ndarray) -> _Finding:
        lo, hi, m = prof.get("lo", np.nan), prof.get("hi", np.nan), prof["m"]
        outside = (valid < lo) | (valid > hi)
        k, n = int(outside.sum()), len(valid)
        expected = 2.0 / (m + 1)
        worst = valid[outside][np.argsort(-np.abs(valid[outside] - prof.get("median", 0.0)), kind="stable")]
        evidence = {"reference_range": [lo, hi], "current_range": [float(valid.min()), float(valid.max())],
                    "outside": k, "examples": [float(v) for v in worst[:MAX_EXAMPLES]]}
        med = prof.get("median")
        if k and med:
            evidence["scale"] = float(np.median(valid) / med)
        return _Finding("out_of_range", name, k / n, expected, expected + self.min_out_of_range_share, n,
                        float(binom.sf(k - 1, n, expected)) if k else 1.0, evidence)

    def _unseen(self, name: str, prof: dict[str, Any], valid: np.ndarray) -> _Finding | None:
        cats = prof.get("categories")
        if cats is None:
            return None
        new = ~np.isin(valid.astype(str), cats.astype(str))
        k, n = int(new.sum()), len(valid)
        expected = max(prof.get("singletons", 0), 1) / max(prof["m"], 1)   # Good–Turing: unseen mass
        top: list[list[Any]] = []
        if k:
            vals, counts = np.unique(valid[new].astype(str), return_counts=True)
            order = np.argsort(-counts, kind="stable")[:MAX_EXAMPLES]
            top = [[str(vals[i]), int(counts[i])] for i in order]
        return _Finding("unseen_categories", name, k / n, expected, expected + self.min_unseen_share, n,
                        float(binom.sf(k - 1, n, min(expected, 1.0))) if k else 1.0,
                        {"unseen": k, "top_unseen": top, "reference_categories": int(len(cats))})

    def _constant(self, name: str, prof: dict[str, Any], valid: np.ndarray) -> _Finding | None:
        if prof.get("distinct", 0) < 2 or len(valid) < 2:
            return None
        first = valid[0]
        if not bool(np.all(valid == first)):
            return None
        n = len(valid)
        p = float(prof["top_share"] ** n)
        value = float(first) if self._types[name] == "numeric" else str(first)
        return _Finding("constant", name, 1.0, prof["top_share"], 1.0, n, p,
                        {"value": value, "reference_distinct": prof["distinct"],
                         "reference_top_share": prof["top_share"]})

    def _counted(self, columns: Mapping[str, np.ndarray], n: int) -> list[_Finding]:
        """The checks on what validation refused, which keys arrived, and the duplicates: sums of
        the window's marks (none without them: a batch fed without marks)."""
        if PREFIX + "refused" not in columns:
            return []
        refused, dups = _sum(columns, "refused"), _sum(columns, "duplicates")
        received = n + refused + dups
        out: list[_Finding] = []
        if received >= _MIN_COUNTED:
            examples = _examples(columns.get(PREFIX + "example"))
            for name, kind in self._types.items():
                k = _sum(columns, f"refused:{name}") if kind == "numeric" else 0
                if k:
                    out.append(_Finding("type_change", name, k / received, 0.0, self.min_type_error_share, received,
                                        evidence={"refused": k, "received": received,
                                                  "examples": examples.get(name, [])}))
            out.append(_Finding("duplicates", None, dups / received, 0.0, self.min_duplicate_share, received,
                                evidence={"duplicates": dups, "received": received}))
        if n >= _MIN_COUNTED:
            new = [_Finding("schema_new", name, k / n, 0.0, self.schema_share, n,
                            evidence={"events_with_key": k, "events": n})
                   for name, k in sorted(_unknown(columns.get(PREFIX + "unknown")).items())]
            renamed_to = [f.feature for f in new if f.share >= f.threshold]
            for name in self._types:
                k = _sum(columns, f"absent:{name}")
                if k:
                    out.append(_Finding("schema_absent", name, k / n, 0.0, self.schema_share, n,
                                        evidence={"absent": k, "events": n, "new_keys": renamed_to}))
            out += new
        return out

    # ------------------------------------------------------------------ decisions
    def _judge(self, f: _Finding, pa: float, window: Window, model_version: str | None) -> Detection | None:
        tested = f.p is not None
        p_adj = float(pa) if tested and np.isfinite(pa) else None
        breach = f.share >= f.threshold and f.n > 0 and (not tested or (p_adj is not None and p_adj < self.alpha))
        severity = "critical" if breach and f.share >= max(0.5, f.threshold) else "warning"
        self._last[f.key] = {"check": f.check, "feature": f.feature, "share": f.share, "expected": f.expected,
                             "threshold": f.threshold, "p_value": f.p, "p_adjusted": p_adj, "n": f.n,
                             "breach": breach, "evidence": f.evidence,
                             "window": {"start_ts": window.start_ts, "end_ts": window.end_ts, "n": window.n}}
        before = self._book.severity(f.key)
        change = self._book.update(f.key, breach, severity)
        if change is None:
            return None
        firing = change != "resolve"
        return self._detection(f, p_adj, window, firing, severity if firing else (before or "warning"),
                               model_version)

    def _detection(self, f: _Finding, p_adj: float | None, window: Window, firing: bool, severity: str,
                   model_version: str | None) -> Detection:
        return Detection(
            kind="data_quality", detector=f.check, feature=f.feature, statistic=float(f.share), p_value=p_adj,
            threshold=float(f.threshold), window=window, firing=firing, severity=severity,  # type: ignore[arg-type]  # str, always warning or critical
            effect_size=float(f.share - f.expected), summary=self._summary(f, firing), model=self.model,
            model_version=model_version,
            evidence={"check": f.check, "expected_share": f.expected, "n": f.n, **f.evidence},
        )

    def _resolved(self, key: str, last: dict[str, Any], window: Window, model_version: str | None) -> Detection:
        check, _, feature = key.partition(":")
        return Detection(
            kind="data_quality", detector=check, feature=feature or None, statistic=0.0, p_value=None,
            threshold=float(last.get("threshold", 0.0)), window=window, firing=False, model=self.model,
            model_version=model_version, summary=f"{_subject(feature)}: the {check.replace('_', ' ')} finding "
                                                 f"was not seen again in {self.resolve_after} windows.")

    def _summary(self, f: _Finding, firing: bool) -> str:
        over = (f"of the {f.n:,} prediction events received in the window" if f.check in _COUNTED
                else f"in the last {f.n:,} events")
        if not firing:
            return f"{_subject(f.feature)}: back to normal ({_what(f)}, {over})."
        return f"{_subject(f.feature)}: {_what(f)}, {over}. {_HINTS[f.check](f)}"


def _examples(col: np.ndarray | None) -> dict[str, list[str]]:
    """A few refused values per feature, in stream order, from the window's ``example`` marks."""
    out: dict[str, list[str]] = {}
    for v in (() if col is None else col):
        if v is not None:
            name, _, text = str(v).partition(SEP)
            kept = out.setdefault(name, [])
            if len(kept) < MAX_EXAMPLES:
                kept.append(text)
    return out


def _unknown(col: np.ndarray | None) -> dict[str, int]:
    """Events per unconfigured key, from the window's ``unknown`` marks."""
    out: dict[str, int] = {}
    for v in (() if col is None else col):
        if v is not None:
            for name in str(v).split(SEP):
                out[name] = out.get(name, 0) + 1
    return out


def _subject(feature: str | None) -> str:
    return f"feature `{feature}`" if feature else "prediction events"


def _what(f: _Finding) -> str:
    """The finding in numbers, as a person reads it."""
    e = f.evidence
    if f.check == "missing_rate":
        return f"null in {f.share:.1%} of events (reference {f.expected:.1%})"
    if f.check == "unseen_categories":
        top = ", ".join(f"{v!r} ×{c:,}" for v, c in e.get("top_unseen", [])[:3])
        return f"values never seen in training in {f.share:.1%} of events" + (f" ({top})" if top else "")
    if f.check == "out_of_range":
        lo, hi = e.get("reference_range", [None, None])
        ex = ", ".join(f"{v:.4g}" for v in e.get("examples", [])[:3])
        return (f"outside the training range [{lo:.4g}, {hi:.4g}] in {f.share:.1%} of events"
                + (f" (e.g. {ex})" if ex else ""))
    if f.check == "constant":
        return f"one value ({e.get('value')!r}) in every event, where training has {e.get('reference_distinct'):,}"
    if f.check == "type_change":
        ex = ", ".join(e.get("examples", [])[:3])
        return f"the wrong type in {f.share:.1%} of events" + (f" (e.g. {ex})" if ex else "")
    if f.check == "schema_absent":
        return f"absent (no key at all) from {f.share:.1%} of events"
    if f.check == "schema_new":
        return f"a key the model does not configure, present in {f.share:.1%} of events"
    return f"{f.share:.1%} of events repeated an event_id already received"


def _scale_hint(f: _Finding) -> str:
    scale = f.evidence.get("scale")
    if scale and scale > 0 and abs(np.log10(scale)) >= 1.5:
        return f" Values are about {scale:.3g}× the training median: a unit change upstream?"
    return ""


_HINTS = {
    "missing_rate": lambda f: "An upstream source, join or producer stopped filling it: fix the pipeline "
                              "before retraining on it.",
    "unseen_categories": lambda f: "A new category, or a changed encoding or spelling upstream; the model "
                                   "has never seen these values.",
    "out_of_range": lambda f: "A scale or unit change, or a corrupt source, upstream." + _scale_hint(f),
    "constant": lambda f: "A default or fill value is being sent instead of the real one: check the producer.",
    "type_change": lambda f: "The producer changed this field's type; these events were refused and "
                             "dead-lettered (see the dead-letter topic), so the model's monitoring misses them.",
    "schema_absent": lambda f: ("Renamed or dropped upstream? The model receives nulls for it."
                                + (f" New keys arrived meanwhile: {', '.join(map(repr, f.evidence['new_keys'][:3]))}."
                                   if f.evidence.get("new_keys") else "")),
    "schema_new": lambda f: "A renamed or new field upstream; driftloop ignores keys the model does not "
                            "configure.",
    "duplicates": lambda f: "A producer retrying or a topic replayed; duplicates are counted once.",
}
