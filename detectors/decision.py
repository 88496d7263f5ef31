"""Turning statistics into decisions that stay sane at large n.

With windows of thousands of events a p-value alone fires on every harmless shift, and twenty
features tested every window fire by chance. A window-based detector here decides with three
pieces, all in this module:

1. **Effect size and significance.** A feature drifts when its multiple-testing-adjusted
   p-value is below ``alpha`` *and* its effect size (normalised Wasserstein, PSI, ...) exceeds a
   threshold. The p-value guards small windows, the effect size guards large ones.
2. **Thresholds calibrated on the reference** (:func:`calibrate_numeric`,
   :func:`calibrate_categorical`): the effect size's spread between random chunks of the
   reference (bootstrap pairs of a reference-sized and a window-sized sample drawn from the
   reference, as NannyML calibrates on reference chunks), ``mean + k * std``, with a floor
   ``min_effect`` that encodes "too small to matter". :func:`scale_threshold` carries a
   threshold calibrated at one window size to another (time windows vary in size).
3. **False alarms bounded over time.** :func:`adjust_pvalues` corrects across the features of
   a window (Holm or Benjamini–Hochberg); :func:`alpha_for_run_time` sets the per-window,
   family-wise ``alpha`` from an expected run time (ERT, Alibi Detect's notion): under no drift
   the number of windows until a false alarm is geometric with mean ``1 / alpha = ERT``.

:class:`AlertBook` keeps which alerts are firing so a detector emits only changes: a new
detection, an escalation to ``critical``, a resolution after ``resolve_after`` clean windows.

>>> import numpy as np
>>> adjust_pvalues(np.array([0.01, 0.04, 0.03, 0.5]), "holm").round(3).tolist()
[0.04, 0.09, 0.09, 0.5]
>>> alpha_for_run_time(1000)
0.001
>>> book = AlertBook(resolve_after=2)
>>> [book.update("x", b) for b in (True, True, False, False, False)]
['fire', None, None, 'resolve', None]
"""
from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from detectors import two_sample as uv
from detectors.composite import Composite

__all__ = [
    "adjust_pvalues",
    "alpha_for_run_time",
    "SQRT_SCALED",
    "LINEAR_SCALED",
    "scale_threshold",
    "calibrate_numeric",
    "calibrate_categorical",
    "AlertBook",
    "format_p",
]

CORRECTIONS = ("holm", "bh", "bonferroni", "none")
MAX_CALIBRATION_REFERENCE = 50_000
# how a statistic's null spread shrinks with the sample sizes
SQRT_SCALED = ("ks", "wasserstein", "jensenshannon")  # ~ sqrt(1/n + 1/m)
LINEAR_SCALED = ("psi",)  # ~ 1/n + 1/m (a chi-square in disguise)


def adjust_pvalues(p: Any, method: str = "holm") -> np.ndarray:
    """Multiple-testing adjusted p-values; ``NaN`` entries are not part of the family.

    ``holm``: Holm–Bonferroni step-down (family-wise error rate); ``bh``:
    Benjamini–Hochberg step-up (false discovery rate; equal to
    :func:`scipy.stats.false_discovery_control`); ``bonferroni``; ``none``.

    >>> adjust_pvalues([0.01, 0.02, float("nan")], "bh").tolist()
    [0.02, 0.02, nan]
    """
    p = np.asarray(p, dtype=np.float64)
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, not {method!r}")
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    k = len(q)
    if k == 0:
        return out
    if method == "none":
        adj = q.copy()
    elif method == "bonferroni":
        adj = np.minimum(q * k, 1.0)
    elif method == "holm":
        order = np.argsort(q, kind="stable")
        steps = q[order] * (k - np.arange(k))
        adj_sorted = np.minimum(np.maximum.accumulate(steps), 1.0)
        adj = np.empty(k)
        adj[order] = adj_sorted
    else:  # bh
        order = np.argsort(q, kind="stable")
        steps = q[order] * k / np.arange(1, k + 1)
        adj_sorted = np.minimum(np.minimum.accumulate(steps[::-1])[::-1], 1.0)
        adj = np.empty(k)
        adj[order] = adj_sorted
    out[ok] = adj
    return out


def alpha_for_run_time(expected_run_time: float) -> float:
    """Per-decision family-wise ``alpha`` giving an expected run time (in decisions) between
    false alarms under no drift: ``1 / ERT`` (the run length is geometric)."""
    if expected_run_time < 1:
        raise ValueError("expected_run_time is a number of windows, at least 1")
    return 1.0 / float(expected_run_time)


def _scale(stat: str, n: Any, m: Any) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = 1.0 / n + 1.0 / m
    return v if stat in LINEAR_SCALED else np.sqrt(v)


def scale_threshold(stat: str, threshold: Any, n: Any, m: Any, n_cal: Any, m_cal: Any) -> np.ndarray:
    """A null threshold calibrated for sample sizes ``(n_cal, m_cal)`` carried to ``(n, m)``.

    KS, Wasserstein and Jensen–Shannon distances shrink like ``sqrt(1/n + 1/m)`` under no
    drift, PSI (a chi-square statistic over bins) like ``1/n + 1/m``.

    >>> float(scale_threshold("ks", 0.04, 1250, 20000, 5000, 20000).round(4))
    0.0738
    """
    return np.asarray(threshold, dtype=np.float64) * _scale(stat, n, m) / _scale(stat, n_cal, m_cal)


def _summary(values: np.ndarray, k: float) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: features never present
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1:])
    return {"mean": mean, "std": std, "threshold": mean + k * std}


def calibrate_numeric(
    profile: dict[str, np.ndarray],
    stat: str,
    n_cal: int,
    draws: int = 50,
    k: float = 3.0,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Null spread of a numeric effect size between reference-drawn samples.

    Each draw takes a reference-sized and an ``n_cal``-sized bootstrap sample of every
    feature's reference values (sorted uniforms index the sorted reference, so a draw costs
    a gather, not a sort) and computes ``stat`` between them. Returns per feature the
    ``mean``, ``std`` and ``threshold = mean + k * std``, with the sizes they hold for.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    rs, rv = profile["sorted"], profile["valid"]
    f, width = rs.shape
    # pseudo-references of at most 50,000 values: the threshold is then scaled to the real size
    m_cal = int(min(max(int(rv.max(initial=0)), 1), MAX_CALIBRATION_REFERENCE))
    values = np.full((draws, f), np.nan)
    if stat in ("psi", "jensenshannon"):
        ref_counts = profile["counts"].astype(np.float64)
        tot = ref_counts.sum(axis=1, keepdims=True)
        probs = np.where(tot > 0, ref_counts / np.maximum(tot, 1), 1.0 / ref_counts.shape[1])
        a = rng.multinomial(m_cal, probs, size=(draws, f))
        b = rng.multinomial(n_cal, probs, size=(draws, f))
        fn = uv.psi if stat == "psi" else uv.jensenshannon
        values = fn(a.reshape(draws * f, -1), b.reshape(draws * f, -1)).reshape(draws, f)
    elif stat in ("wasserstein", "ks"):
        offsets = (np.arange(f, dtype=np.int64) * width)[:, None]
        flat = rs.ravel()
        full_m = np.full(f, m_cal, dtype=np.int64)
        full_n = np.full(f, n_cal, dtype=np.int64)
        for d in range(draws):
            u_ref = np.sort(rng.random(m_cal))
            u_cur = np.sort(rng.random(n_cal))
            idx_ref = (u_ref[None, :] * rv[:, None]).astype(np.int64) + offsets
            idx_cur = (u_cur[None, :] * rv[:, None]).astype(np.int64) + offsets
            a = flat.take(idx_ref)
            b = flat.take(idx_cur)
            if stat == "wasserstein":
                values[d] = uv.wasserstein_sorted(a, full_m, b, full_n) / profile["std"]
            else:
                values[d] = uv.ks_statistic_sorted(a, full_m, b, full_n)
        values[:, rv == 0] = np.nan
    else:
        raise ValueError(f"cannot calibrate {stat!r}; calibrate one of wasserstein, ks, psi, jensenshannon")
    out = _summary(values, k)
    out.update({"stat": stat, "n_cal": int(n_cal), "m_cal": m_cal, "draws": int(draws), "k": float(k)})
    return out


def calibrate_categorical(
    profile: dict[str, Any],
    stat: str,
    n_cal: int,
    draws: int = 50,
    k: float = 3.0,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Null spread of a categorical effect size (``psi`` or ``jensenshannon``) between
    multinomial draws of a reference-sized and an ``n_cal``-sized sample of the reference's
    category frequencies."""
    if stat not in ("psi", "jensenshannon"):
        raise ValueError(f"cannot calibrate {stat!r} for categories; use psi or jensenshannon")
    rng = np.random.default_rng(0) if rng is None else rng
    counts = profile["counts"].astype(np.float64)
    f = counts.shape[0]
    tot = counts.sum(axis=1, keepdims=True)
    m_cal = int(max(int(tot.max(initial=0)), 1))
    probs = np.where(tot > 0, counts / np.maximum(tot, 1), 1.0 / counts.shape[1])
    a = rng.multinomial(m_cal, probs, size=(draws, f))
    b = rng.multinomial(n_cal, probs, size=(draws, f))
    fn = uv.psi if stat == "psi" else uv.jensenshannon
    values = fn(a.reshape(draws * f, -1), b.reshape(draws * f, -1)).reshape(draws, f)
    out = _summary(values, k)
    out.update({"stat": stat, "n_cal": int(n_cal), "m_cal": m_cal, "draws": int(draws), "k": float(k)})
    return out


def format_p(p: float | None) -> str:
    """``p<1e-6`` / ``p=0.0032`` / ``p n/a``: the p-value as a person reads it."""
    if p is None or not np.isfinite(p):
        return "p n/a"
    if p < 1e-6:
        return "p<1e-6"
    return f"p={p:.2g}"


Transition = Literal["fire", "escalate", "resolve"]


class AlertBook(Composite):
    """Which alerts are firing, so that detectors emit changes only.

    ``update(key, breach, severity)`` returns ``"fire"`` when ``key`` starts breaching,
    ``"escalate"`` when a firing warning becomes critical, ``"resolve"`` after
    ``resolve_after`` consecutive windows without a breach, else ``None``.

    Parameters
    ----------
    resolve_after : int
        Clean windows needed to resolve (hysteresis against flapping).

    Examples
    --------
    >>> book = AlertBook(resolve_after=1)
    >>> book.update("a", True), book.update("a", True, "critical"), book.firing()
    ('fire', 'escalate', ['a'])
    >>> book.update("a", False), book.firing()
    ('resolve', [])
    """

    _params = ("resolve_after",)

    def __init__(self, resolve_after: int = 2) -> None:
        if resolve_after < 1:
            raise ValueError("resolve_after must be at least 1")
        self.resolve_after = int(resolve_after)
        self._states: dict[str, dict[str, Any]] = {}

    def update(self, key: str, breach: bool, severity: str = "warning") -> Transition | None:
        st = self._states.get(key)
        if breach:
            if st is None:
                self._states[key] = {"severity": severity, "clear": 0}
                return "fire"
            st["clear"] = 0
            if severity == "critical" and st["severity"] != "critical":
                st["severity"] = "critical"
                return "escalate"
            return None
        if st is None:
            return None
        st["clear"] += 1
        if st["clear"] >= self.resolve_after:
            del self._states[key]
            return "resolve"
        return None

    def severity(self, key: str) -> str | None:
        st = self._states.get(key)
        return None if st is None else st["severity"]

    def firing(self) -> list[str]:
        return list(self._states)

    def clear(self) -> list[str]:
        """Forget every firing alert; return their keys (the caller emits resolutions)."""
        keys = list(self._states)
        self._states = {}
        return keys
