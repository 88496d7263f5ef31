"""Ranking metrics per request and per window (with bootstrap intervals), and label-free metrics of
what a ranker serves.

Inputs are the text columns of :mod:`detectors.ranking_lists`: a prediction is the ranked list
shown (item ids joined by ``ITEM_SEP``, best first), a label the items engaged with, each with an
optional graded relevance (``item`` alone is relevance 1). The empty label is a request where
nothing was engaged: it is valid and it **counts** — every metric is 0 for it (scikit-learn's
:func:`~sklearn.metrics.ndcg_score` convention for all-zero relevance), so a ranker whose users stop
engaging is seen to get worse. Lists hold distinct items (validation refuses repeats; were an item
shown twice, the labelled metrics would count its first rank only).

Metrics with labels (one value per request; a window's value is the mean over its requests).
For a request with relevances ``rel(i)`` (0 for an item not in the label), shown list
``L = (i_1, i_2, ...)`` and relevant set ``R = {i : rel(i) > 0}`` (labelled items that were not
shown are in ``R`` too; relevance 0 is not relevant); ``hits@k = |R ∩ {i_1..i_k}|``:

=============  =====================================================================================
precision@k    ``hits@k / k`` — divided by ``k`` even when the list is shorter than ``k``
recall@k       ``hits@k / |R|``; 0 when ``R`` is empty
ndcg@k         ``DCG@k / IDCG@k``, ``DCG@k = sum_{r<=min(k,|L|)} rel(i_r) / log2(r + 1)`` (linear
               gain); ``IDCG@k`` the same sum over the request's labelled relevances sorted in
               decreasing order (all of them, shown or not), cut at ``k``; 0 when ``IDCG@k = 0``
map@k          ``sum_{r<=k, i_r in R} precision@r / min(k, |R|)``; 0 when ``R`` is empty
mrr, mrr@k     ``1 / r`` for the first rank ``r`` (``<= k``) holding a relevant item; 0 if none
hit_rate@k     1 if ``hits@k > 0`` else 0
=============  =====================================================================================

Metric names are ``base@k`` (:func:`parse_metric`); only ``mrr`` may go without ``@k`` (whole
list). :func:`window_metrics` adds a percentile bootstrap interval over requests
(:func:`bootstrap_mean`).

Label-free metrics (:func:`label_free_metrics`), on the predictions alone, against an
:class:`ItemReference` built from the reference's served lists. With ``c(i)`` the number of
top-k slots of the window holding item ``i``, ``S = sum c(i)`` the number of slots, ``C`` the
reference catalogue, ``U`` the window's items not in ``C`` (unseen) and ``p(i)`` the reference
popularity of ``i`` (share of reference requests whose top-k list shows it; 0 for unseen items):

===============  ===================================================================================
coverage         ``|{i in C : c(i) > 0}| / |C|`` (unseen items are not part of the catalogue; they
                 are counted by ``unseen_share``)
gini             Gini coefficient of the counts ``x`` over ``C ∪ U`` (never-recommended catalogue
                 items count 0, unseen items are extra entries): with ``x`` sorted increasing and
                 ``n = |C ∪ U|``, ``sum_j (2j - n - 1) x_j / (n sum_j x_j)``; 0 equal, near 1
                 concentrated on one item
top_share        share of the ``S`` slots taken by the 10 most recommended items
mean_popularity  ``sum_i c(i) p(i) / S`` — average recommendation popularity (ARP), per slot
novelty          ``sum_i c(i) (-log2 max(p(i), 1 / (N + 1))) / S``, ``N`` reference requests: the
                 mean self-information of a slot; an unseen (or never shown) item gets the floor
list_length      mean length of the shown lists, before the top-k cut
unseen_share     ``sum_{i in U} c(i) / S``
n                number of requests
===============  ===================================================================================

A window with no slot has ``nan`` for the per-slot metrics and the Gini coefficient, and
``coverage`` 0. With ``popularity="engaged"`` (reference built with labels), ``p(i)`` is the share
of reference requests that engaged with ``i`` (relevance > 0), the interaction-based popularity of
the recommender-systems literature (and of Evidently's ARP and novelty).

Speed: a column is handled at once, with no Python loop per (request, position). The labelled
metrics work on the label rows only: labels are decoded for the whole column (one ``str.split``,
``pandas`` for the relevances), each engaged item's rank is found by one C string search in its
request's list (the shown lists are never cut into item strings, whatever their length), and
every metric is an ``np.bincount`` over those rows with request offsets. The label-free metrics
split the lists (at most ``k`` items each) and count items with ``pandas`` hash lookups.
Measured once, on this repository's 2-core machine while a CI run shared it (load ~7): 10,000
requests x 100 shown items with ~3 engaged each (half of them shown), ``ndcg@10``,
``precision@10``, ``recall@10``, ``map@10``, ``mrr`` (whole list) and ``hit_rate@10`` together
take 0.15 s in :func:`request_metrics` (0.09 s of CPU) and 0.3 s in :func:`window_metrics` with
its 200 bootstrap draws; :func:`label_free_metrics` at ``k=10`` 0.1 s, the whole lists 0.7 s.

>>> from detectors.ranking_lists import encode_ranking, encode_relevance
>>> shown = [encode_ranking(["a", "b", "c"]), encode_ranking(["c", "d", "a"])]
>>> engaged = [encode_relevance({"b": 2.0}), encode_relevance([])]
>>> values = request_metrics(shown, engaged, ["ndcg@3", "precision@3", "mrr"])
>>> {m: v.round(4).tolist() for m, v in values.items()}
{'ndcg@3': [0.6309, 0.0], 'precision@3': [0.3333, 0.0], 'mrr': [0.5, 0.0]}
>>> w = window_metrics(shown, engaged, ["mrr"], draws=100)
>>> w["mrr"]["value"], w["mrr"]["n"], w["mrr"]["ci_low"] <= 0.25 <= w["mrr"]["ci_high"]
(0.25, 2, True)
>>> ref = ItemReference.from_lists(shown, engaged)
>>> ref.catalogue, ref.shown.tolist(), ref.n_requests
(['a', 'b', 'c', 'd'], [1.0, 0.5, 1.0, 0.5], 2)
>>> lf = label_free_metrics([encode_ranking(["a", "e"])], ref)
>>> lf["coverage"], lf["unseen_share"], lf["mean_popularity"], lf["n"]
(0.25, 0.5, 0.5, 1)

References
----------
Järvelin, K., Kekäläinen, J. (2002). Cumulated gain-based evaluation of IR techniques. ACM TOIS 20(4).
Manning, C., Raghavan, P., Schütze, H. (2008). Introduction to Information Retrieval, ch. 8 (MAP, MRR).
Abdollahpouri, H. et al. (2021). User-centered evaluation of popularity bias in recommender systems (ARP).
Castells, P., Vargas, S., Wang, J. (2011). Novelty and diversity metrics for recommender systems.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from detectors.composite import Composite
from detectors.ranking_lists import ITEM_SEP, REL_SEP, item_id

__all__ = [
    "RANKING_METRICS",
    "NEEDS_K",
    "LABEL_FREE_METRICS",
    "parse_metric",
    "request_metrics",
    "bootstrap_mean",
    "window_metrics",
    "ItemReference",
    "list_columns",
    "label_free_metrics",
]

RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
NEEDS_K: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate")
"""The metrics that need a cut-off (``name@k``); ``mrr`` may go without one (the whole list)."""
LABEL_FREE_METRICS: tuple[str, ...] = ("coverage", "gini", "top_share", "mean_popularity", "novelty",
                                       "list_length", "unseen_share", "n")
TOP_ITEMS = 10
"""How many of the most recommended items ``top_share`` adds up."""

_NAME = re.compile(r"([a-z_]+)(?:@([0-9]+))?")
_VALID_FORMS = "precision@k, recall@k, ndcg@k, map@k, hit_rate@k, mrr or mrr@k (k a positive integer, e.g. ndcg@10)"
_MAX_CELLS = 2_000_000  # bootstrap resample indices held at once (16 MB of int64)


def parse_metric(name: str) -> tuple[str, int | None]:
    """A metric name split into its base and its cut-off ``k`` (``None``: the whole list).

    >>> parse_metric("ndcg@10"), parse_metric("mrr"), parse_metric("mrr@5")
    (('ndcg', 10), ('mrr', None), ('mrr', 5))
    >>> parse_metric("ndcg")
    Traceback (most recent call last):
    ...
    ValueError: ranking metric 'ndcg' needs a cut-off: ndcg@k; valid forms: precision@k, recall@k, ndcg@k, map@k, hit_rate@k, mrr or mrr@k (k a positive integer, e.g. ndcg@10)
    """
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or match.group(1) not in RANKING_METRICS:
        raise ValueError(f"unknown ranking metric {name!r}; valid forms: {_VALID_FORMS}")
    base, k_text = match.group(1), match.group(2)
    if k_text is None:
        if base in NEEDS_K:
            raise ValueError(f"ranking metric {name!r} needs a cut-off: {base}@k; valid forms: {_VALID_FORMS}")
        return base, None
    k = int(k_text)
    if k < 1 or k_text != str(k):
        raise ValueError(f"ranking metric {name!r}: k must be a positive integer without leading zeros; "
                         f"valid forms: {_VALID_FORMS}")
    return base, k


# ---------------------------------------------------------------------------------------------
# decoding whole columns at once


def _flatten(texts: Sequence[str], cut: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items of every encoded list, concatenated (object array), each list's length, and each
    list's length kept: the first ``cut`` items of each list only (``None``: all of them)."""
    lengths = np.fromiter((t.count(ITEM_SEP) + 1 if t else 0 for t in texts), dtype=np.int64, count=len(texts))
    if cut is None:
        joined = ITEM_SEP.join([t for t in texts if t])
        items = joined.split(ITEM_SEP) if joined else []
        return np.array(items, dtype=object), lengths, lengths
    # split at most ``cut`` times: the rest of a long list is never cut into strings
    items = list(chain.from_iterable(t.split(ITEM_SEP, cut)[:cut] for t in texts if t))
    return np.array(items, dtype=object), lengths, np.minimum(lengths, cut)


def _offsets(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a flattened array of lists: each element's request index and 1-based rank in its list."""
    starts = np.cumsum(lengths) - lengths
    req = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    rank = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths) + 1
    return req, rank


def _codes(table: Sequence[str] | np.ndarray, items: np.ndarray) -> np.ndarray:
    """The position of each of ``items`` in ``table`` (distinct ids), -1 where absent: one hash lookup
    per item (object dtype on both sides: pandas would otherwise convert them to Arrow strings)."""
    if not len(items):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(pd.Index(table, dtype=object).get_indexer(pd.Index(items, dtype=object)), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class _Labels:
    """The labels of a column, one row per (request, item), duplicates resolved as
    :func:`~detectors.ranking_lists.decode_relevance` does (the last one wins), sorted by request."""

    req: np.ndarray    # request index of each row
    items: np.ndarray  # the distinct labelled items (object array), indexed by ``code``
    code: np.ndarray   # item code of each row
    rel: np.ndarray    # relevance of each row

    @classmethod
    def decode(cls, labels: Sequence[str]) -> _Labels:
        parts, lengths, _ = _flatten(labels)
        req = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        rel = np.ones(len(parts), dtype=np.float64)
        if len(parts) and any(REL_SEP in t for t in labels if t):
            split = pd.Series(parts, dtype=object).str.partition(REL_SEP)
            parts = split[0].to_numpy(dtype=object)
            graded = (split[1] != "").to_numpy()
            rel[graded] = split[2].to_numpy(dtype=object)[graded].astype(np.float64)
        code, uniques = pd.factorize(parts)
        code = np.asarray(code, dtype=np.int64)
        key = req * max(len(uniques), 1) + code
        order = np.argsort(key, kind="stable")
        key = key[order]
        last = np.ones(len(key), dtype=bool)
        last[:-1] = key[1:] != key[:-1]
        keep = order[last]
        return cls(req=req[keep], items=np.asarray(uniques, dtype=object), code=code[keep], rel=rel[keep])

    def ideal_dcg(self, n: int, k: int) -> np.ndarray:
        """IDCG@k of each of ``n`` requests: the labelled (positive) relevances sorted decreasing, cut at ``k``."""
        positive = self.rel > 0
        req, rel = self.req[positive], self.rel[positive]
        order = np.lexsort((-rel, req))
        req, rel = req[order], rel[order]
        counts = np.bincount(req, minlength=n)
        _, rank = _offsets(counts)
        top = rank <= k
        return np.bincount(req[top], weights=rel[top] / np.log2(rank[top] + 1), minlength=n)


# ---------------------------------------------------------------------------------------------
# metrics with labels


def request_metrics(predictions: Sequence[str], labels: Sequence[str],
                    metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Each metric's value for each request (float64 arrays, one per metric name as given).

    ``predictions`` and ``labels`` are encoded columns of the same length
    (:mod:`detectors.ranking_lists`); the definitions are in the module docstring.

    >>> from detectors.ranking_lists import encode_ranking, encode_relevance
    >>> out = request_metrics([encode_ranking("xyz")], [encode_relevance({"z": 1, "w": 3})],
    ...                       ["recall@2", "map@3", "hit_rate@3", "mrr@2"])
    >>> {m: v.tolist() for m, v in out.items()}
    {'recall@2': [0.0], 'map@3': [0.16666666666666666], 'hit_rate@3': [1.0], 'mrr@2': [0.0]}
    """
    if len(predictions) != len(labels):
        raise ValueError(f"predictions and labels differ in length ({len(predictions)} != {len(labels)})")
    parsed = {name: parse_metric(name) for name in metrics}
    n = len(predictions)
    lab = _Labels.decode(labels)
    relevant = lab.rel > 0
    n_relevant = np.bincount(lab.req[relevant], minlength=n).astype(np.float64)
    # one row per (request, relevant item) shown, in request then rank order
    req, rel = lab.req[relevant], lab.rel[relevant]
    rank = _ranks(predictions, req, lab.items[lab.code[relevant]])
    shown = rank > 0
    req, rel, rank = req[shown], rel[shown], rank[shown]
    order = np.lexsort((rank, req))
    req, rel, rank = req[order], rel[order], rank[order]
    _, hits_above = _offsets(np.bincount(req, minlength=n))  # relevant items at or above each one
    return {name: _metric(base, k, n, req, rank, rel, hits_above, n_relevant, lab)
            for name, (base, k) in parsed.items()}


def _ranks(predictions: Sequence[str], req: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The 1-based rank of each item in the shown list of its request (0: not shown).

    One C string search per item in its list padded with separators (ids never hold one, so
    ``SEP id SEP`` matches only that id), and the separators before it counted: the shown
    lists are never cut into item strings, whatever their length.
    """
    padded = [f"{ITEM_SEP}{t}{ITEM_SEP}" if t else "" for t in predictions]
    needles = [f"{ITEM_SEP}{x}{ITEM_SEP}" for x in items.tolist()]
    return np.fromiter(map(_rank_in, [padded[r] for r in req.tolist()], needles), dtype=np.int64, count=len(needles))


def _rank_in(text: str, needle: str) -> int:
    at = text.find(needle)
    return text.count(ITEM_SEP, 0, at) + 1 if at >= 0 else 0


def _metric(base: str, k: int | None, n: int, req: np.ndarray, rank: np.ndarray, rel: np.ndarray,
            hits_above: np.ndarray, n_relevant: np.ndarray, lab: _Labels) -> np.ndarray:
    """One metric for every request, from the rows of relevant items shown (request, rank order)."""
    zeros = np.zeros(n, dtype=np.float64)
    cut = np.ones(len(rank), dtype=bool) if k is None else rank <= k
    req, rank, rel, hits_above = req[cut], rank[cut], rel[cut], hits_above[cut]
    if base == "mrr":
        first = hits_above == 1
        return np.bincount(req[first], weights=1.0 / rank[first], minlength=n).astype(np.float64)
    assert k is not None  # parse_metric: every other metric has a cut-off
    hits = np.bincount(req, minlength=n).astype(np.float64)
    if base == "precision":
        return hits / k
    if base == "recall":
        return np.divide(hits, n_relevant, out=zeros, where=n_relevant > 0)
    if base == "hit_rate":
        return (hits > 0).astype(np.float64)
    if base == "ndcg":
        dcg = np.bincount(req, weights=rel / np.log2(rank + 1), minlength=n)
        ideal = lab.ideal_dcg(n, k)
        return np.divide(dcg, ideal, out=zeros, where=ideal > 0)
    # map: precision at the rank of each relevant item shown
    precision_sum = np.bincount(req, weights=hits_above / rank, minlength=n)
    return np.divide(precision_sum, np.minimum(n_relevant, k), out=zeros, where=n_relevant > 0)


# ---------------------------------------------------------------------------------------------
# intervals


def _bootstrap(matrix: np.ndarray, draws: int, level: float, seed: int) -> list[tuple[float, float, float]]:
    """Percentile bootstrap of the row means of ``matrix`` (rows resampled with the same draws)."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rows, n = matrix.shape
    if n == 0:
        return [(math.nan, math.nan, math.nan)] * rows
    rng = np.random.default_rng(seed)
    means = np.empty((rows, draws), dtype=np.float64)
    chunk = max(1, _MAX_CELLS // n)
    for start in range(0, draws, chunk):
        stop = min(draws, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        for r in range(rows):
            means[r, start:stop] = matrix[r][idx].mean(axis=1)
    lows, highs = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=1)
    out = []
    for r in range(rows):
        mean = float(matrix[r].mean())
        out.append((mean, min(float(lows[r]), mean), max(float(highs[r]), mean)))
    return out


def bootstrap_mean(values: np.ndarray, *, draws: int = 200, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """The mean of per-request values and its percentile bootstrap interval: ``(mean, low, high)``.

    ``draws`` resamples of the requests with replacement (all drawn at once as an index matrix,
    in chunks of at most two million cells); ``low``/``high`` are the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled means, widened if need be to contain the mean.
    Deterministic for a ``seed``; ``nan`` for no values.

    >>> bootstrap_mean(np.array([0.0, 1.0, 1.0, 0.0, 1.0]), draws=500, seed=1)[0]
    0.6
    >>> bootstrap_mean(np.array([]))
    (nan, nan, nan)
    """
    v = np.asarray(values, dtype=np.float64).reshape(1, -1)
    return _bootstrap(v, draws, level, seed)[0]


def window_metrics(predictions: Sequence[str], labels: Sequence[str], metrics: Sequence[str], *,
                   draws: int = 200, level: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric over a window of requests: ``{metric: {"value", "ci_low", "ci_high", "n"}}``.

    ``value`` is the mean over requests of :func:`request_metrics`; the interval is
    :func:`bootstrap_mean`'s, every metric resampled with the same draws (so each equals
    ``bootstrap_mean`` of its values with the same ``seed``).
    """
    values = request_metrics(predictions, labels, metrics)
    if not values:
        return {}
    names = list(values)
    rows = _bootstrap(np.vstack([values[m] for m in names]), draws, level, seed)
    n = len(predictions)
    return {m: {"value": v, "ci_low": lo, "ci_high": hi, "n": n} for m, (v, lo, hi) in zip(names, rows)}


# ---------------------------------------------------------------------------------------------
# label-free metrics


@dataclass(frozen=True, eq=False)
class ItemReference(Composite):
    """What the reference served: the item catalogue, each item's popularity, and the reference's
    own label-free metrics (to compare a window with). Plain data, picklable, and a
    :class:`~detectors.composite.Composite` so a monitor's snapshot holds it.

    Attributes
    ----------
    catalogue
        Sorted item ids: every item of the reference lists (whole lists) and labels, plus any
        extra ``catalogue`` given.
    shown
        For each catalogue item, the share of reference requests whose top-``k`` list shows it.
    engaged
        For each catalogue item, the share of reference requests that engaged with it (relevance
        > 0); ``None`` when the reference had no labels.
    n_requests
        Number of reference requests.
    k
        The cut-off the reference was read with (``None``: whole lists).
    metrics
        :func:`label_free_metrics` of the reference lists against the reference itself, with ``k``.
    """

    catalogue: list[str]
    shown: np.ndarray
    engaged: np.ndarray | None
    n_requests: int
    k: int | None
    metrics: dict[str, float]

    @classmethod
    def from_lists(cls, predictions: Sequence[str], labels: Sequence[str] | None = None, k: int | None = None,
                   catalogue: Iterable[str] | None = None) -> ItemReference:
        """The reference of served lists ``predictions`` (and their ``labels``, if known) read at top-``k``."""
        _check_k(k)
        if labels is not None and len(labels) != len(predictions):
            raise ValueError(f"predictions and labels differ in length ({len(predictions)} != {len(labels)})")
        items, lengths, _ = _flatten(predictions)
        n = len(lengths)
        req, rank = _offsets(lengths)
        lab = _Labels.decode(labels) if labels is not None else None
        pieces: list[Any] = [pd.unique(items)]
        if lab is not None:
            pieces.append(lab.items)
        if catalogue is not None:
            pieces.append(np.array([item_id(i) for i in catalogue], dtype=object))
        cat = sorted(set(np.concatenate(pieces).tolist()))
        top = np.ones(len(rank), dtype=bool) if k is None else rank <= k
        shown = _request_share(req[top], _codes(cat, items[top]), n, len(cat))
        engaged = None
        if lab is not None:
            pos = lab.rel > 0
            engaged = _request_share(lab.req[pos], _codes(cat, lab.items[lab.code[pos]]), n, len(cat))
        ref = cls(catalogue=cat, shown=shown, engaged=engaged, n_requests=n, k=k, metrics={})
        return replace(ref, metrics=label_free_metrics(predictions, ref, k))



# every field is a constructor argument: clone() rebuilds the reference from all of them
ItemReference._params = ("catalogue", "shown", "engaged", "n_requests", "k", "metrics")

def _request_share(req: np.ndarray, code: np.ndarray, n: int, size: int) -> np.ndarray:
    """For each of ``size`` items, the share of ``n`` requests with at least one (req, code) pair."""
    if n == 0 or size == 0:
        return np.zeros(size, dtype=np.float64)
    pairs = np.unique(req * size + code)
    return np.bincount(pairs % size, minlength=size) / n


def _check_k(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")


def _gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: ``sum_j (2j - n - 1) x_j / (n sum x)``, ``x`` increasing."""
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0:
        return math.nan
    j = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * j - n - 1) * np.sort(x)).sum() / (n * total))


def list_columns(predictions: Sequence[str], reference: ItemReference, k: int | None = None
                 ) -> dict[str, np.ndarray]:
    """Two numbers per request, for drift tests on the lists' shape: ``list_length`` (the whole
    list) and ``mean_popularity`` (its top-``k`` items' mean reference exposure share, unseen
    items 0; NaN for an empty list). Score only requests outside ``reference``: in-sample, every
    item's share includes the request being scored, and the scores sit above a new request's
    (:class:`~detectors.ranking_monitor.RankingMonitor` takes the shares from half of its
    reference and scores the other half).

    >>> ref = ItemReference.from_lists(["a\x1fb", "a\x1fc"], k=2)
    >>> cols = list_columns(["a\x1fz", "", "b"], ref, k=2)
    >>> cols["list_length"].tolist(), cols["mean_popularity"].tolist()
    ([2.0, 0.0, 1.0], [0.5, nan, 0.5])
    """
    _check_k(k)
    items, lengths, kept = _flatten(predictions, k)
    code = _codes(reference.catalogue, items)
    pop = np.where(code >= 0, reference.shown[np.maximum(code, 0)] if len(code) else 0.0, 0.0)
    sums = np.bincount(np.repeat(np.arange(len(kept)), kept), weights=pop, minlength=len(kept))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(kept > 0, sums / np.maximum(kept, 1), np.nan)
    return {"list_length": lengths.astype(np.float64), "mean_popularity": mean}


def label_free_metrics(predictions: Sequence[str], reference: ItemReference, k: int | None = None, *,
                       popularity: str = "shown") -> dict[str, float]:
    """Coverage, Gini, top share, ARP, novelty, list length and unseen share of served lists
    (their top-``k``; ``None``: whole lists) against ``reference``; definitions in the module
    docstring. ``popularity`` is ``"shown"`` (the reference's exposure shares, the default) or
    ``"engaged"`` (its engagement shares; the reference needs labels). Pass ``k=reference.k`` to
    compare with ``reference.metrics``.
    """
    _check_k(k)
    if popularity == "shown":
        pop_table = reference.shown
    elif popularity == "engaged":
        if reference.engaged is None:
            raise ValueError("popularity='engaged' needs a reference built with labels")
        pop_table = reference.engaged
    else:
        raise ValueError(f"popularity must be 'shown' or 'engaged', got {popularity!r}")
    items, lengths, _ = _flatten(predictions, k)
    n = len(lengths)
    size = len(reference.catalogue)
    code = _codes(reference.catalogue, items)
    seen = code >= 0
    counts = np.bincount(code[seen], minlength=size)
    unseen_counts = pd.Series(items[~seen], dtype=object).value_counts().to_numpy(dtype=np.int64)
    all_counts = np.concatenate([counts, unseen_counts])
    slots = len(items)
    out: dict[str, float] = {
        "coverage": float(np.count_nonzero(counts)) / size if size else math.nan,
        "gini": _gini(all_counts),
        "top_share": math.nan, "mean_popularity": math.nan, "novelty": math.nan,
        "list_length": float(lengths.mean()) if n else math.nan,
        "unseen_share": math.nan,
        "n": n,
    }
    if slots:
        p = np.zeros(slots, dtype=np.float64)
        p[seen] = pop_table[code[seen]]
        floor = 1.0 / (reference.n_requests + 1)
        out["top_share"] = float(np.sort(all_counts)[::-1][:TOP_ITEMS].sum()) / slots
        out["mean_popularity"] = float(p.mean())
        out["novelty"] = float(-np.log2(np.maximum(p, floor)).mean())
        out["unseen_share"] = float(np.count_nonzero(~seen)) / slots
    return out
