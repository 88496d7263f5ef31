"""How far to move a label-free estimate towards what a window's first labels show.

A label-free estimate (:mod:`detectors.cbpe`, :mod:`detectors.dle`) is right under covariate
shift and wrong, by a bias, under concept shift. The first labelled rows of a window measure
that bias directly: the *correction* ``c`` = realised − estimated on those rows (the
difference estimator of prediction-powered inference, Angelopoulos et al., 2023: unbiased
whatever the estimator's assumptions, when the labelled rows are a fair sample of the window),
with a noise ``s`` that shrinks with the number of labelled rows. Applied whole, a correction
on a few hundred rows is noisier than a good label-free estimate; ignored, a bad label-free
estimate stays bad. :func:`learned_bias` weighs the two, empirical Bayes style:

* **With a track record** (:func:`error_prior`: the label-free errors ``realised − estimate``
  of the last fully labelled windows, at least two) the bias of this window is a priori near
  their mean ``mu`` (shrunk towards 0 by its own uncertainty, positive-part James–Stein) with
  variance ``tau²`` (their spread, plus the mean's). The posterior mean is
  ``mu + w (c − mu)`` with ``w = tau² / (tau² + s²)``: a label-free estimate that has been
  right keeps its value and a noisy correction moves it little; one that has been off by a
  steady amount is corrected by the track record even where the window's own correction is
  noisy. When the correction contradicts the track record (``|c − mu| > break_z s``: the
  concept changed since) the track record is set aside, as below.
* **Without one** (the first windows, or after a break): a correction within ``break_z``
  standard deviations of 0 is dropped (the label-free estimate is kept: it is right under
  covariate shift, and a few hundred labels cannot tell it is not), a larger one applied with
  ``w = 1 − s² / c²`` (James–Stein; at 3 standard deviations 0.89, at 5 0.96). Applying
  James–Stein from 1 standard deviation on, as before, cost up to 4 times the label-free error
  on the first window of a stream the concept had not moved yet (``bench/label_free.py``).

The band widens by the posterior's standard deviation ``sqrt(w) s``.

>>> prior = error_prior([-0.10, -0.11, -0.09, -0.10])      # steadily 0.10 too optimistic
>>> bias, w, extra = learned_bias(-0.07, 0.02, prior)       # a noisy window agrees, roughly
>>> round(bias, 3), round(w, 2)
(-0.095, 0.17)
>>> round(learned_bias(-0.002, 0.02, error_prior([0.004, -0.003, 0.001]))[0], 4)   # right so far: kept
-0.0001
>>> bias, w, extra = learned_bias(-0.10, 0.02, None)         # no track record: mostly the correction
>>> round(bias, 3), round(w, 2)
(-0.096, 0.96)
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ErrorPrior", "error_prior", "learned_bias", "track_record", "checkpoint", "in_time_order",
           "hold_early", "release_early", "RECENT_WINDOWS", "BREAK_Z", "MAX_EARLY_ROWS"]

#: fully labelled windows the track record's prior is taken from (the newest ones)
RECENT_WINDOWS = 6
#: a correction further than this many of its standard deviations from the prior breaks it
BREAK_Z = 3.0
#: labelled rows held for windows not estimated yet, at most (the oldest go first)
MAX_EARLY_ROWS = 200_000


@dataclass(frozen=True)
class ErrorPrior:
    """Where the label-free estimate's error (realised − estimate) has been lately."""

    mean: float
    var: float
    windows: int


def error_prior(errors: Sequence[float], recent: int = RECENT_WINDOWS) -> ErrorPrior | None:
    """The prior of the next window's error from the past windows' ``errors`` (oldest first;
    ``None`` with fewer than two finite ones).

    >>> error_prior([0.01])
    >>> p = error_prior([0.0, 0.2, 0.1])
    >>> round(p.mean, 3), round(p.var, 4), p.windows
    (0.067, 0.0133, 3)
    """
    e = np.asarray([x for x in errors if x is not None and np.isfinite(x)], dtype=np.float64)[-recent:]
    k = len(e)
    if k < 2:
        return None
    mu, spread = float(e.mean()), float(e.var(ddof=1))
    mean_var = spread / k
    mu *= max(0.0, 1.0 - mean_var / (mu * mu)) if mu else 0.0   # a mean within its own noise: 0
    return ErrorPrior(mu, spread + mean_var, k)


def learned_bias(correction: float, noise: float, prior: ErrorPrior | None,
                 break_z: float = BREAK_Z) -> tuple[float, float, float]:
    """``(bias, weight, extra_se)``: the bias to add to the label-free estimate, the weight
    given to this window's ``correction`` (standard deviation ``noise``), and the standard
    deviation the band gains.

    >>> learned_bias(0.03, 0.02, None)             # 1.5 standard deviations, no track record: kept
    (0.0, 0.0, 0.0)
    """
    s2 = noise * noise
    if prior is not None and abs(correction - prior.mean) <= break_z * noise:
        total = prior.var + s2
        w = prior.var / total if total > 0 else 0.0
        return prior.mean + w * (correction - prior.mean), w, float(np.sqrt(w * s2 if s2 else prior.var))
    if abs(correction) <= break_z * noise:     # within its noise, and no track record says otherwise
        return 0.0, 0.0, 0.0
    w = 1.0 - s2 / (correction * correction)
    return w * correction, w, float(np.sqrt(w) * noise)


Estimates = Mapping[str, Mapping[str, Any]]


def track_record(windows: Iterable[tuple[Estimates, Mapping[str, float] | None, Estimates]]) -> dict[str, dict[str, Any]]:
    """How far the estimates were from the realised metrics (so on-call can see how far to
    trust the current ones): per metric the mean absolute error of the label-free estimate and
    of the learning estimate, and the windows counted. ``windows``: per fully labelled window,
    its estimates, its realised metrics and its learning estimates (``{metric: {"value": v}}``).

    >>> track_record([({"mae": {"value": 1.0}}, {"mae": 1.5}, {"mae": {"value": 1.25}}),
    ...               ({"mae": {"value": 1.0}}, {"mae": 1.3}, {})])
    {'mae': {'estimate_mae': 0.4, 'learning_mae': 0.25, 'windows': 2}}
    """
    errs: dict[str, dict[str, list[float]]] = {}
    for estimates, real, learned in windows:
        for m, e in estimates.items():
            r = (real or {}).get(m)
            if r is None or not np.isfinite(r):
                continue
            d = errs.setdefault(m, {"estimate": [], "learning": []})
            d["estimate"].append(abs(e["value"] - r))
            if m in learned:
                d["learning"].append(abs(learned[m]["value"] - r))
    return {m: {"estimate_mae": float(np.mean(d["estimate"])),
                "learning_mae": float(np.mean(d["learning"])) if d["learning"] else None,
                "windows": len(d["estimate"])} for m, d in errs.items()}


def checkpoint(n: int, labelled: int, min_labels: int, *, first: bool = False) -> int | None:
    """How many of a window's first labelled rows its learning estimate uses: every tenth of
    the window of ``n`` (at least ``min_labels`` rows), the last one ``labelled`` reached
    (``first``: the first one, kept for the track record); ``None`` before the first.

    >>> checkpoint(5000, 1234, 50), checkpoint(5000, 499, 50), checkpoint(5000, 4000, 50, first=True)
    (1000, None, 500)
    """
    n = max(int(n), 1)
    step = max(min_labels, n // 10)
    c = step if first else (min(labelled, n - 1) // step) * step
    return None if c < min_labels or c > labelled else c


def in_time_order(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A window's labelled rows in prediction-time order (``rows["ts"]``), ties broken by the
    other columns in their order (a 2-D one column by column): the same arrays whatever order
    the labels came in, so a detector's state is a function of the events, not of the batches.

    >>> in_time_order({"ts": np.array([2, 1, 1]), "y": np.array([0, 1, 0])})["y"].tolist()
    [0, 1, 0]
    """
    keys: list[np.ndarray] = []
    for k, v in rows.items():
        if k != "ts":
            keys.extend(v.T if v.ndim == 2 else [v])
    order = np.lexsort((*reversed(keys), rows["ts"]))
    return {k: v[order] for k, v in rows.items()}


def hold_early(early: Mapping[str, np.ndarray] | None, rows: Mapping[str, np.ndarray],
               newest_start: int | None) -> dict[str, np.ndarray] | None:
    """Labelled ``rows`` a window estimated later may still cover, added to ``early``.

    A label often arrives before the window of its prediction is estimated (the window is
    still filling): without this, that window never has all its labels, keeps its rows for
    good and shows realised metrics of its late-labelled rows only. Held are the rows at or
    after ``newest_start``, the start of the newest estimated window (None: none yet), in
    prediction-time order (so the state is a function of the events), at most
    :data:`MAX_EARLY_ROWS`.

    >>> early = hold_early(None, {"ts": np.array([5, 1, 9])}, newest_start=4)
    >>> early["ts"].tolist()
    [5, 9]
    >>> release_early(early, 0, 6)[0]["ts"].tolist(), release_early(early, 7, 10)[1]["ts"].tolist()
    ([5], [9])
    """
    keep = np.ones(len(rows["ts"]), dtype=bool) if newest_start is None else rows["ts"] >= newest_start
    if not keep.any():
        return None if early is None else dict(early)
    new = {k: np.asarray(v)[keep] for k, v in rows.items()}
    if early is not None:   # (columns both have: a batch without scores holds fewer)
        new = {k: np.concatenate([early[k], v]) for k, v in new.items() if k in early}
    out = in_time_order(new)
    if len(out["ts"]) > MAX_EARLY_ROWS:
        out = {k: v[-MAX_EARLY_ROWS:] for k, v in out.items()}
    return out


def release_early(early: Mapping[str, np.ndarray] | None, start: int, end: int
                  ) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None]:
    """For a window just estimated, ``[start, end]`` in prediction time: the held rows it
    covers (None: none), and those still held (the ones at or after ``start``: a sliding
    window starting later may cover them too)."""
    if early is None:
        return None, None
    ts = early["ts"]
    inside = (ts >= start) & (ts <= end)
    later = ts >= start
    covered = {k: v[inside] for k, v in early.items()} if inside.any() else None
    kept = {k: v[later] for k, v in early.items()} if later.any() else None
    return covered, kept
