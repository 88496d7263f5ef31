"""Drift of a ranking model's recommendations: which items fill the top-k slots, against the reference.

:class:`ItemDrift` watches the distribution of recommended items (issue 19, "drift for rankers").
A ranked list is one ``str`` per request (:mod:`detectors.ranking_lists`); only its first ``k``
items count (the slots people see). The categories are the reference's ``max_items`` most
recommended items, ``other`` (every other item the reference recommended in its top ``k``) and
``unseen`` (items it never did); each window's statistic is the Jensen–Shannon distance
(base 2) between the reference's and the window's shares of top-``k`` slots per category, with
PSI reported beside it.

Why the threshold is calibrated rather than read off a test: the independent units are
requests, not slots (one list's items are chosen together, so a slot-level chi-square would fire
on noise). The null spread is simulated by a seeded bootstrap over the reference's requests:
``calibration_draws`` pairs of a pseudo-reference (as many requests as the reference) and a
pseudo-window (as many requests as the window), both resampled from the reference, and the
Jensen–Shannon distance of each pair: what a window of this size shows when nothing changed.
``alpha`` (0.001 in the monitor) lies beyond what 100 draws can show, so the tail is fitted:
the squared distance (the JS divergence, to second order a quadratic form in the share
differences) is taken as ``scale · χ²_dof``, with ``dof`` computed once from the reference's
per-request covariance of the shares (:meth:`ItemDrift._null_dof`: free of noise, where the
draws' variance would be off by 15%) and ``scale`` from the draws' mean, at its upper
2-standard-error bound (the tail is steep: a mean 5% low doubles the false alarms). The threshold is the
largest of that fitted ``1 - alpha`` quantile, the draws' own ``1 - alpha`` quantile, and
``min_effect`` (JS 0.05), a floor so a large stationary stream, whose null spread shrinks with
the window, does not page on moves too small to matter.

Items the reference never showed appear in every window of a recommender with a long tail, and
compared with a reference share of 0 they would page forever. The reference's shares are
therefore Good–Turing smoothed: the share of slots whose item the reference showed exactly once
estimates the chance that a fresh slot holds a new item, and that mass moves from ``other`` to
``unseen`` (in the pseudo-windows too, where that share of the tail slots turns into new items).

A window's ``p_value`` is the fitted null's tail probability at the observed distance (the
share of draws at or above it, with +1 smoothing, is in the evidence as
``p_value_empirical``; it cannot go below ``1 / (draws + 1)``, far above ``alpha``). The
calibration depends on the window's number of requests alone and is seeded by
``(seed, size)``, so it is cached per size (windows usually have one) and a restored detector
decides exactly as the original would.

Examples
--------
>>> import numpy as np
>>> from detectors.base import Window
>>> from detectors.ranking_lists import decode_ranking, encode_ranking
>>> rng = np.random.default_rng(0)
>>> items, pop = np.array([f"i{j}" for j in range(100)]), 1 / np.arange(1, 101)
>>> def served(n):   # lists of 5 items, the popular ones more often
...     return [encode_ranking(rng.choice(items, 5, replace=False, p=pop / pop.sum())) for _ in range(n)]
>>> det = ItemDrift(served(4000), k=5, calibration_draws=50)
>>> det.update_lists(Window(0, 1, 1000), served(1000))
[]
>>> shifted = [encode_ranking(["new", *decode_ranking(s)[:4]]) for s in served(1000)]
>>> [(d.detector, d.firing, d.severity, d.evidence["unseen_share"]) for d in det.update_lists(Window(1, 2, 1000), shifted)]
[('item_shares', True, 'critical', 0.2)]
>>> det.firing()
['prediction']
>>> [d.firing for w in (2, 3) for d in det.update_lists(Window(w, w + 1, 1000), served(1000))]
[False]
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from detectors import decision as dec
from detectors import two_sample as uv
from detectors._threads import one_thread
from detectors.base import Detection, Window
from detectors.composite import Composite
from detectors.ranking_lists import ITEM_SEP

__all__ = ["ItemDrift"]

#: Calibrations kept (one per window size, oldest dropped first): count windows have one size,
#: time windows a few.
MAX_CALIBRATIONS = 8
#: Resampled request indices held in memory at once by a calibration (bounds its memory).
_CHUNK = 4_000_000
_MOVERS = 5


def _lists(values: Iterable[Any]) -> list[str]:
    """The encoded lists of a column: its ``str`` values (a missing prediction is no request)."""
    return [v for v in values if isinstance(v, str)]


def _top_items(lists: list[str], k: int) -> tuple[list[str], np.ndarray]:
    """The first ``k`` item ids of every list, flattened, and how many each list gave.

    One ``str.split`` per request, bounded at ``k`` items (a list of 100 with ``k = 10`` costs
    10 items); the items are then counted in one vectorised pass.

    >>> _top_items(["a\\x1fb\\x1fc", "", "d"], 2)
    (['a', 'b', 'd'], array([2, 0, 1]))
    """
    parts = [s.split(ITEM_SEP, k)[:k] if s else [] for s in lists]
    lens = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    return list(chain.from_iterable(parts)), lens


def _factorize(tokens: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of ``tokens`` into their distinct items (first appearance first), the items, and
    their counts."""
    codes, uniques = pd.factorize(np.asarray(tokens, dtype=object))
    uniques = np.asarray(uniques, dtype=object)
    return codes, uniques, np.bincount(codes, minlength=len(uniques))


def _resample(per_request: np.ndarray, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Slot counts per category of ``draws`` samples of ``size`` requests drawn with
    replacement from the rows of ``per_request`` (requests x categories): ``(draws, C)``.

    A draw is a bincount of resampled request indices (their multiplicities) times the
    per-request counts, so its cost is ``size + requests``, never one Python step per slot.
    """
    m, c = per_request.shape
    out = np.zeros((draws, c))
    if size <= 0 or m == 0:
        return out
    step = max(1, _CHUNK // max(size, m))
    with one_thread():
        for start in range(0, draws, step):
            d = min(step, draws - start)
            idx = rng.integers(0, m, size=(d, size)) + (np.arange(d, dtype=np.int64) * m)[:, None]
            weights = np.bincount(idx.ravel(), minlength=d * m).reshape(d, m)
            out[start:start + d] = weights.astype(np.float64) @ per_request
    return out


def _pct(x: float) -> str:
    """A share as a person reads it: ``18%``, ``0.4%``, ``<0.1%``, ``0%``."""
    if x == 0:
        return "0%"
    if x < 0.001:
        return "<0.1%"
    return f"{x:.1%}" if x < 0.01 else f"{x:.0%}"


def _pair(value: float, threshold: float) -> tuple[str, str]:
    """Two numbers printed with enough digits to tell them apart (``0.052`` vs ``0.050``)."""
    for digits in (2, 3, 4):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b:
            return a, b
    return a, b


class ItemDrift(Composite):
    """Drift of the recommended items' shares of the top-``k`` slots against the reference.

    A window detector (:class:`~detectors.base.WindowDetector`): :meth:`update` takes the
    window's columns and reads the encoded ranked lists from ``column``; :meth:`update_lists`
    takes the lists themselves. Each returns the detections the window causes: a new alert
    (``firing=True``), an escalation to ``critical``, or a resolution (``firing=False``) after
    ``resolve_after`` windows without drift; a window that keeps drifting says nothing new.
    A window with no recommended item (no request, or only empty lists) is not judged.

    Parameters
    ----------
    reference : sequence of str
        The reference's served lists, encoded (:func:`detectors.ranking_lists.encode_ranking`),
        one per request. Only their first ``k`` items are kept (nothing else is used): the
        catalogue is the items the reference recommended in its top ``k``.
    k : int
        Top slots of each list that count (a list shorter than ``k`` fills fewer).
    max_items : int
        The reference's most recommended items that are categories of their own; the rest of
        its catalogue is ``other``, items outside it ``unseen``.
    alpha : float
        False-alarm rate per window (the monitor's ``1 / expected_run_time``, 0.001).
    min_effect : float
        Jensen–Shannon distance (base 2) below which nothing fires, whatever the calibration
        (0.05: about PSI 0.014, roughly one point of slot share moved between two items of 4%).
    calibration_draws : int
        Bootstrap pairs simulated per window size.
    calibration_requests : int
        Reference requests kept (a seeded sample) to resample from; the pseudo-references
        still have the reference's full size.
    resolve_after : int
        Windows without drift before a firing alert resolves.
    column : str
        The window column holding the lists (the model's ``prediction``); the detections'
        ``feature`` and the alert key.
    reference_desc : str, optional
        How summaries name the reference ("20,000 requests" by default).
    model : str, optional
        Put on the detections.
    seed : int
        Seed of the calibration's sample and draws.
    """

    _params = ("reference", "k", "max_items", "alpha", "min_effect", "calibration_draws", "calibration_requests",
               "resolve_after", "column", "reference_desc", "model", "seed")
    #: recomputed from the reference on restore (:meth:`_rebuild`), not stored
    _derived = ("_items", "_item_slots", "_index", "_unseen", "_thin", "_ref_counts", "_per_request", "_dof",
                "_ref_draws")

    def __init__(
        self,
        reference: Iterable[str],
        k: int = 10,
        max_items: int = 50,
        alpha: float = 0.001,
        min_effect: float = 0.05,
        calibration_draws: int = 100,
        calibration_requests: int = 20_000,
        resolve_after: int = 2,
        column: str = "prediction",
        reference_desc: str | None = None,
        model: str | None = None,
        seed: int = 0,
    ) -> None:
        if k < 1 or max_items < 1:
            raise ValueError("k and max_items must be at least 1")
        if not 0 < alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if calibration_draws < 1 or calibration_requests < 1:
            raise ValueError("calibration_draws and calibration_requests must be at least 1")
        self.k = int(k)
        lists = _lists(reference)
        # the lists cut to their top k: all that is used, and the state a snapshot stores
        self.reference = np.array([ITEM_SEP.join(s.split(ITEM_SEP, self.k)[:self.k]) for s in lists], dtype=object)
        self.max_items = int(max_items)
        self.alpha = float(alpha)
        self.min_effect = float(min_effect)
        self.calibration_draws = int(calibration_draws)
        self.calibration_requests = int(calibration_requests)
        self.resolve_after = int(resolve_after)
        self.column = column
        self.reference_desc = reference_desc if reference_desc is not None else f"{len(lists):,} requests"
        self.model = model
        self.seed = int(seed)
        self._rebuild()
        if not len(self._items):
            raise ValueError("the reference recommends no item: every list is empty")
        self._book = dec.AlertBook(self.resolve_after)
        self._cal: dict[int, dict[str, Any]] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._windows = 0

    # ------------------------------------------------------------------ the reference
    def _rebuild(self) -> None:
        """The reference's profile: its catalogue by popularity (most recommended first, ties
        by id), slot counts per category (Good–Turing smoothed), the per-request counts the
        calibration resamples, the null's degrees of freedom, and the pseudo-references' counts
        (seeded, so identical after a restore)."""
        tokens, lens = _top_items(list(self.reference), self.k)
        codes, uniques, counts = _factorize(tokens)
        by_id = np.argsort(uniques.astype(str), kind="stable")
        order = by_id[np.argsort(-counts[by_id], kind="stable")]
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        self._items = uniques[order]
        self._item_slots = counts[order]
        self._index = pd.Index(self._items)
        top = self._top
        cat = np.minimum(rank, top)[codes]  # category of each reference slot: its rank, or other
        raw = np.bincount(cat, minlength=top + 2).astype(np.float64)
        slots = max(float(raw.sum()), 1.0)
        # Good–Turing: the chance that a fresh slot holds an item the reference never showed is
        # about the share of slots whose item the reference showed once; that mass moves from
        # other to unseen (only the tail, never a top item, can be unseen)
        self._unseen = min(float(np.count_nonzero(self._item_slots == 1)) / slots, float(raw[top]) / slots)
        self._thin = self._unseen * slots / float(raw[top]) if raw[top] > 0 else 0.0
        self._ref_counts = self._smooth(raw[None, :])[0]

        rng = np.random.default_rng([self.seed, 0])
        m = len(self.reference)
        request = np.repeat(np.arange(m, dtype=np.int64), lens)
        if m > self.calibration_requests:
            keep = np.full(m, -1, dtype=np.int64)
            keep[np.sort(rng.choice(m, self.calibration_requests, replace=False))] = np.arange(self.calibration_requests)
            request = keep[request]
            cat, request = cat[request >= 0], request[request >= 0]
            m_s = self.calibration_requests
        else:
            m_s = m
        c = top + 2
        self._per_request = np.bincount(request * c + cat, minlength=m_s * c).reshape(m_s, c).astype(np.float64)
        self._dof = self._null_dof()
        self._ref_draws = self._smooth(_resample(self._per_request, m, self.calibration_draws, rng))

    @property
    def _top(self) -> int:
        """How many items are categories of their own (the rest: ``other``, then ``unseen``)."""
        return min(self.max_items, len(self._items))

    def _smooth(self, counts: np.ndarray) -> np.ndarray:
        """Reference-side counts (rows) with the Good–Turing unseen mass moved out of ``other``."""
        out = counts.copy()
        top = self._top
        out[:, top + 1] = counts[:, top] * self._thin
        out[:, top] = counts[:, top] * (1.0 - self._thin)
        return out

    def _null_dof(self) -> float:
        """Effective degrees of freedom of the JS divergence under no drift.

        To second order the divergence (base 2) is the quadratic form ``Σ_c Δ_c² / (8 ln 2 p_c)``
        of the share differences ``Δ``, whose covariance is the per-request covariance of the
        slot shares (the delta method for a ratio of sums over requests, the units that are
        independent) plus the binomial noise of new items taking tail slots; a quadratic form
        ``Σ λ_i χ²_1`` is matched by ``scale · χ²_dof`` with ``dof = (Σ λ)² / Σ λ²``
        (Satterthwaite). NaN when the shares cannot vary (a single category).
        """
        per = self._per_request
        length = per.sum(axis=1)
        mean_len = float(length.mean()) if len(length) else 0.0
        if mean_len == 0:
            return float("nan")
        y = self._smooth(per)
        share = y.sum(axis=0) / length.sum()
        z = (y - np.outer(length, share)) / mean_len
        with one_thread():
            cov = z.T @ z / len(z)
        top, r = self._top, self._thin
        noise = r * (1 - r) * float(per[:, top].mean()) / mean_len**2
        cov[top:, top:] += noise * np.array([[1.0, -1.0], [-1.0, 1.0]])
        ok = share > 0
        a = 1.0 / np.sqrt(share[ok])
        mat = cov[np.ix_(ok, ok)] * a[:, None] * a[None, :]
        tr, tr2 = float(np.trace(mat)), float(np.sum(mat * mat))
        return tr * tr / tr2 if tr > 0 and tr2 > 0 else float("nan")

    # ------------------------------------------------------------------ calibration
    def _calibration(self, n: int) -> dict[str, Any]:
        """The null distances of windows of ``n`` requests, and the threshold they give (cached)."""
        cal = self._cal.get(n)
        if cal is not None:
            return cal
        rng = np.random.default_rng([self.seed, 1, n])
        windows = _resample(self._per_request, n, self.calibration_draws, rng)
        top = self._top
        if self._thin > 0:   # new items take tail slots, as Good–Turing expects
            new = rng.binomial(windows[:, top].astype(np.int64), self._thin)
            windows[:, top] -= new
            windows[:, top + 1] += new
        js = uv.jensenshannon(self._ref_draws, windows)
        js = np.sort(js[np.isfinite(js)])
        empirical = float(np.quantile(js, 1 - self.alpha)) if len(js) else 0.0
        scale = fitted = float("nan")
        if len(js) >= 2 and np.isfinite(self._dof):
            div = js**2
            # the mean at its upper 2-standard-error bound: the draws estimate it to a few per
            # cent, and at alpha = 0.001 the tail is steep enough for that to double the false alarms
            mean = float(div.mean()) + 2 * float(div.std(ddof=1)) / np.sqrt(len(div))
            if mean > 0:
                scale = mean / self._dof
                fitted = float(np.sqrt(scale * stats.chi2.isf(self.alpha, self._dof)))
        cal = {"n": int(n), "threshold": float(np.fmax(fitted, empirical)), "fitted": fitted,
               "empirical": empirical, "scale": scale, "draws": js}
        if len(self._cal) >= MAX_CALIBRATIONS:
            del self._cal[next(iter(self._cal))]
        self._cal[n] = cal
        return cal

    def threshold(self, n: int) -> float:
        """The Jensen–Shannon distance a window of ``n`` requests must exceed to drift."""
        return max(self.min_effect, self._calibration(int(n))["threshold"])

    # ------------------------------------------------------------------ info
    def firing(self) -> list[str]:
        """Keys of the alerts firing now (``column``, or nothing)."""
        return self._book.firing()

    def last(self) -> dict[str, Any]:
        """Statistics of the last window judged, under ``column`` (for stats pages)."""
        return {k: dict(v) for k, v in self._last.items()}

    # ------------------------------------------------------------------ update
    def update(self, window: Window, columns: Mapping[str, np.ndarray], model_version: str | None = None) -> list[Detection]:
        """Judge one window; its lists are ``columns[column]`` (absent: no request)."""
        col = columns.get(self.column)
        return self.update_lists(window, [] if col is None else col, model_version)

    def update_lists(self, window: Window, lists: Iterable[str], model_version: str | None = None) -> list[Detection]:
        """Judge one window of encoded ranked lists (one per request); return the detections
        it causes (new, escalated or resolved alerts)."""
        self._windows += 1
        reqs = _lists(lists)
        tokens, lens = _top_items(reqs, self.k)
        if not tokens:
            self._last[self.column] = {"n": len(reqs), "slots": 0, "judged": False}
            return []
        res = self._shares(tokens)
        n = len(reqs)
        cal = self._calibration(n)
        thr = max(self.min_effect, cal["threshold"])
        js = res["js"]
        breach = bool(js > thr)
        severity = "critical" if breach and js >= 2 * thr else "warning"
        p = float(stats.chi2.sf(js**2 / cal["scale"], self._dof)) if np.isfinite(cal["scale"]) else None
        p_emp = float((1 + np.count_nonzero(cal["draws"] >= js)) / (len(cal["draws"]) + 1))
        res.update(n=n, threshold=thr, p_value=p, p_value_empirical=p_emp, calibrated_threshold=cal["threshold"],
                   empty_lists=float(np.mean(lens == 0)))
        self._last[self.column] = {   # the shape of UnivariateDrift.last() (the statistics history reads it)
            "detector": "item_shares", "effect": js,
            "judged": True, "n": n, "slots": res["slots"], "jensenshannon": js, "psi": res["psi"], "threshold": thr,
            "p_value": p, "unseen_share": res["unseen_share"], "other_share": res["other_share"], "drifting": breach,
        }
        before = self._book.severity(self.column)
        change = self._book.update(self.column, breach, severity)
        if change is None:
            return []
        firing = change != "resolve"
        sev = severity if firing else (before or "warning")
        return [self._detection(res, window, firing, sev, model_version)]

    def _shares(self, tokens: list[str]) -> dict[str, Any]:
        """The window's slot shares per category, the statistics, and the items that moved most."""
        codes, uniques, counts = _factorize(tokens)
        pos = self._index.get_indexer(uniques)  # rank in the reference's catalogue, -1: unseen
        top = self._top
        cur = np.bincount(np.where(pos < 0, top + 1, np.minimum(pos, top)), weights=counts, minlength=top + 2)
        ref = self._ref_counts
        slots, ref_slots = float(cur.sum()), float(ref.sum())
        unseen = pos < 0
        new_order = np.argsort(-counts[unseen], kind="stable")[:_MOVERS]
        return {
            "js": float(uv.jensenshannon(ref, cur)[0]),
            "psi": float(uv.psi(ref, cur)[0]),
            "slots": int(slots),
            "unseen_share": float(cur[top + 1] / slots),
            "other_share": float(cur[top] / slots),
            "reference_other_share": float((ref[top] + ref[top + 1]) / ref_slots),
            "top_movers": self._movers(uniques, counts / slots, pos),
            "top_unseen": [{"item": str(uniques[unseen][j]), "current_share": float(counts[unseen][j] / slots)}
                           for j in new_order],
        }

    def _movers(self, uniques: np.ndarray, shares: np.ndarray, pos: np.ndarray) -> list[dict[str, Any]]:
        """The items whose share of slots changed most: the window's items and the reference's
        top items the window no longer shows (their share fell to 0)."""
        ref_slots = float(self._item_slots.sum())
        ref_share = np.where(pos >= 0, self._item_slots[np.maximum(pos, 0)] / ref_slots, 0.0)
        shown = np.zeros(self._top, dtype=bool)
        shown[pos[(pos >= 0) & (pos < self._top)]] = True
        gone = np.flatnonzero(~shown)
        items = np.concatenate([uniques, self._items[gone]])
        before = np.concatenate([ref_share, self._item_slots[gone] / ref_slots])
        after = np.concatenate([shares, np.zeros(len(gone))])
        order = np.argsort(-np.abs(after - before), kind="stable")[:_MOVERS]
        return [{"item": str(items[j]), "reference_share": float(before[j]), "current_share": float(after[j])}
                for j in order]

    # ------------------------------------------------------------------ detections
    def _detection(self, res: dict[str, Any], window: Window, firing: bool, severity: str,
                   model_version: str | None) -> Detection:
        return Detection(
            kind="prediction_drift",
            detector="item_shares",
            feature=self.column,
            statistic=res["js"],
            p_value=res["p_value"],
            threshold=res["threshold"],
            window=window,
            firing=firing,
            severity=severity,  # type: ignore[arg-type]  # one of SEVERITIES, from the AlertBook
            effect_size=res["js"],
            summary=self._summary(res, firing),
            model=self.model,
            model_version=model_version,
            evidence=self._evidence(res),
        )

    def _summary(self, res: dict[str, Any], firing: bool) -> str:
        """One sentence: how far the items moved, which items, how many slots hold new items."""
        js, thr = _pair(res["js"], res["threshold"])
        over = f"over the last {res['n']:,} requests (reference: {self.reference_desc})"
        if not firing:
            return f"recommended items are back to the reference's mix (Jensen–Shannon {js}, threshold {thr}) {over}."
        movers = []
        for i, mv in enumerate(res["top_movers"][:3]):
            of = f" of top-{self.k} slots" if i == 0 else ""
            was = "new" if mv["reference_share"] == 0 else f"was {_pct(mv['reference_share'])}"
            movers.append(f"`{mv['item']}` {_pct(mv['current_share'])}{of} ({was})")
        text = f"recommended items moved (Jensen–Shannon {js} > {thr}): {', '.join(movers)}"
        if res["unseen_share"] - self._unseen >= 0.005:
            expected = f" ({_pct(self._unseen)} expected)" if self._unseen > 0 else ""
            text += f"; {_pct(res['unseen_share'])} of slots hold items unseen in the reference{expected}"
        return f"{text}, {over}."

    def _evidence(self, res: dict[str, Any]) -> dict[str, Any]:
        return {
            "test": "Jensen–Shannon distance of top-k slot shares, threshold from a request bootstrap of the reference",
            "statistics": {"jensenshannon": res["js"], "psi": res["psi"]},
            "psi": res["psi"],
            "top_movers": res["top_movers"],
            "top_unseen": res["top_unseen"],
            "unseen_share": res["unseen_share"],
            "expected_unseen_share": self._unseen,
            "other_share": res["other_share"],
            "reference_other_share": res["reference_other_share"],
            "empty_lists": res["empty_lists"],
            "k": self.k,
            "max_items": self._top,
            "alpha": self.alpha,
            "threshold_floor": self.min_effect,
            "calibrated_threshold": res["calibrated_threshold"],
            "calibration_draws": self.calibration_draws,
            "p_value_empirical": res["p_value_empirical"],
            "reference_n": len(self.reference),
            "reference_slots": int(self._item_slots.sum()),
            "reference": self.reference_desc,
            "window_n": res["n"],
            "window_slots": res["slots"],
        }
