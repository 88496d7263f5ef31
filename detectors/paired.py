"""One model version judged against another: a shadow on the same requests, a canary on the same window.

Two views, both pure statistics over what the monitoring layer already has (per-request
correctness or absolute errors of each version):

* :class:`ShadowComparison` — a *paired* comparison, running: the served model and a shadow
  challenger answered the SAME labelled requests, so each request is a pair and the test looks
  only at the requests on which they differ (exact McNemar test for classification, a paired
  t-test on the differences of absolute errors for regression). Pairing removes the
  request-to-request variation, so it needs far fewer labels than an unpaired comparison.
* :func:`compare_windows` — an *unpaired* comparison for a canary: one version and the
  champion answered DIFFERENT requests over the same time window (Fisher's exact test on the
  correct counts for classification, the Mann–Whitney U test on absolute errors for
  regression), asking whether the version is worse.

:func:`mcnemar` is the one-sided exact McNemar test the retrain worker's promotion gate uses
(:mod:`retrain.evaluate` re-exports it).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> served = rng.random(1200) < 0.84                                  # served v2 right on 84 %
>>> shadow = np.where(served, rng.random(1200) > 0.02, rng.random(1200) < 0.5)  # fixes half its errors
>>> cmp = ShadowComparison("v2", "v3").update(served, shadow)
>>> cmp.report()["summary"]
'shadow v3 accuracy 0.898 vs served v2 0.835 on the same 1,200 labelled requests (McNemar b=23 c=99, p=2e-12): shadow significantly better at alpha 0.05'
"""
from __future__ import annotations

from typing import Any, Literal, Self

import numpy as np

from detectors.base import Snapshotable

__all__ = ["mcnemar", "ShadowComparison", "compare_windows"]

Task = Literal["classification", "regression"]
_TASKS = ("classification", "regression")


# ------------------------------------------------------------------ small helpers
def _as_correct(x: np.ndarray, name: str) -> np.ndarray:
    """A 1-d boolean array; numbers must be 0/1 (so that predictions passed by mistake fail)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not np.all((a == 0) | (a == 1)):
            raise ValueError(f"{name} must hold booleans or 0/1 (whether each request was answered correctly)")
        a = a.astype(bool)
    return a


def _as_errors(x: np.ndarray, name: str) -> np.ndarray:
    """A 1-d float array of finite, non-negative absolute errors."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size and not (np.all(np.isfinite(a)) and np.all(a >= 0)):
        raise ValueError(f"{name} must hold finite, non-negative absolute errors")
    return a


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired arrays must have the same length (one entry per request), got {len(a)} and {len(b)}")


def _fmt(x: float) -> str:
    """Three significant digits, trailing zeros kept (1.00, 0.840); large values whole."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:#.3g}"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}"


def _discordant(first_correct: np.ndarray, second_correct: np.ndarray) -> tuple[int, int]:
    """``(b, c)``: requests only the first gets right, requests only the second gets right."""
    return int(np.sum(first_correct & ~second_correct)), int(np.sum(~first_correct & second_correct))


def _mcnemar_p(b: int, c: int, alternative: Literal["greater", "two-sided"]) -> float:
    """Exact McNemar p-value from the discordant counts: ``c ~ Binomial(b + c, 1/2)``."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(c, b + c, 0.5, alternative=alternative).pvalue)


def mcnemar(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> tuple[float, int, int]:
    """One-sided exact McNemar test that the challenger is right more often: ``(p, b, c)``.

    ``b`` counts the rows only the champion gets right, ``c`` those only the challenger gets
    right; ``p = P(X >= c)`` with ``X ~ Binomial(b + c, 1/2)`` (1.0 when ``b + c = 0``).

    Parameters
    ----------
    champion_correct, challenger_correct
        Per row, whether each model was right (booleans or 0/1), the same rows in the same order.

    Examples
    --------
    >>> mcnemar(np.array([1, 1, 0, 0, 0]), np.array([1, 1, 1, 1, 1]))
    (0.125, 0, 3)

    References
    ----------
    .. [1] Q. McNemar, "Note on the sampling error of the difference between correlated
       proportions or percentages", Psychometrika 12(2), 153-157, 1947.
    """
    a = np.asarray(champion_correct, dtype=bool)
    c_ = np.asarray(challenger_correct, dtype=bool)
    b, c = _discordant(a, c_)
    return _mcnemar_p(b, c, "greater"), b, c


# ------------------------------------------------------------------ shadow: paired, running
class ShadowComparison(Snapshotable):
    """Running paired comparison of a served model and a shadow challenger on the same requests.

    Every labelled request was answered by both versions, so each is a pair. Feed the pairs in
    batches as labels arrive; :meth:`report` tests, two-sided at ``alpha``, whether the shadow
    is better or worse than the served model on all pairs seen so far.

    * classification (:meth:`update`, per-request correctness): the state is four counts — ``n``,
      the requests each version got right, and the discordant ``b`` (only the served version
      right) and ``c`` (only the shadow right). The test is the exact McNemar test,
      ``c ~ Binomial(b + c, 1/2)`` under equal accuracy, two-sided.
    * regression (:meth:`update_errors`, per-request absolute errors): the state is running
      moments — the sums of both versions' absolute errors (their MAE) and, of the paired
      differences ``d = shadow_err - served_err``, the count, mean and sum of squared deviations
      (Welford's update, merged batch by batch as Chan et al. do, so it is stable over long
      streams and O(1) in memory). The test is the paired t-test on ``d``
      (``t = mean(d) / (sd(d) / sqrt(n))``, ``n - 1`` degrees of freedom), two-sided; with the
      thousands of pairs a shadow collects it holds by the central limit theorem even for
      skewed errors. It compares mean absolute errors, which is what ``mae`` reports.

    ``better`` and ``worse`` stay False until ``min_n`` pairs were seen. The p-value is that of
    a fixed-sample test: it is exact when the report is read once at a planned ``n``; reading it
    after every batch and stopping at the first ``better`` raises the false-positive rate above
    ``alpha`` (a caller that does so should lower ``alpha`` or decide at a fixed ``n``).

    Parameters
    ----------
    served_version
        The version that answers requests (named in the summary).
    shadow_version
        The challenger that answers the same requests in the shadow (named in the summary).
    task
        ``"classification"`` (feed :meth:`update`) or ``"regression"`` (feed :meth:`update_errors`).
    alpha
        Significance level of the two-sided test behind ``better`` / ``worse``.
    min_n
        No verdict before this many pairs.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> cmp = ShadowComparison("v2", "v3")
    >>> for _ in range(4):                                   # four batches of 300 labelled requests
    ...     served = rng.random(300) < 0.80
    ...     shadow = np.where(served, rng.random(300) > 0.03, rng.random(300) < 0.40)
    ...     cmp = cmp.update(served, shadow)
    >>> r = cmp.report()
    >>> r["n"], r["b"], r["c"], r["better"], r["worse"], r["p_value"] < 1e-10
    (1200, 23, 106, True, False, True)

    Regression, on the absolute errors of both versions:

    >>> noise = rng.normal(size=1000)                          # what neither version can predict
    >>> served_err = np.abs(noise + 0.3)                        # v2 is biased by 0.3
    >>> shadow_err = np.abs(noise + 0.1 + rng.normal(0, 0.1, 1000))
    >>> reg = ShadowComparison("v2", "v3", task="regression").update_errors(served_err, shadow_err)
    >>> r = reg.report()
    >>> r["test"], r["better"], r["worse"]
    ('paired_t', True, False)
    >>> r["summary"]
    'shadow v3 mae 0.806 vs served v2 0.834 on the same 1,000 labelled requests (paired t=-4.1, p=3.7e-05): shadow significantly better at alpha 0.05'

    References
    ----------
    .. [1] Q. McNemar, "Note on the sampling error of the difference between correlated
       proportions or percentages", Psychometrika 12(2), 153-157, 1947.
    .. [2] "Student" (W. S. Gosset), "The probable error of a mean", Biometrika 6(1), 1-25, 1908.
    .. [3] T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise
       algorithm for computing sample variances", COMPSTAT 1982, 30-41.
    """

    _params = ("served_version", "shadow_version", "task", "alpha", "min_n")

    def __init__(self, served_version: str, shadow_version: str, task: Task = "classification",
                 alpha: float = 0.05, min_n: int = 30) -> None:
        if task not in _TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {_TASKS}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.served_version = str(served_version)
        self.shadow_version = str(shadow_version)
        self.task: Task = task
        self.alpha = float(alpha)
        self.min_n = int(min_n)
        self._n = 0
        # classification: correct counts and the discordant pairs
        self._served_right = 0
        self._shadow_right = 0
        self._b = 0
        self._c = 0
        # regression: error sums and running moments of d = shadow_err - served_err
        self._served_err = 0.0
        self._shadow_err = 0.0
        self._d_mean = 0.0
        self._d_m2 = 0.0

    @property
    def n(self) -> int:
        """The number of labelled pairs seen."""
        return self._n

    def update(self, served_correct: np.ndarray, shadow_correct: np.ndarray) -> Self:
        """Add a batch of pairs: per request, whether the served and the shadow version were
        right (booleans or 0/1, the same requests in the same order)."""
        if self.task != "classification":
            raise ValueError("update() takes correctness of a classification model; use update_errors()")
        s = _as_correct(served_correct, "served_correct")
        h = _as_correct(shadow_correct, "shadow_correct")
        _same_length(s, h)
        b, c = _discordant(s, h)
        self._n += len(s)
        self._served_right += int(s.sum())
        self._shadow_right += int(h.sum())
        self._b += b
        self._c += c
        return self

    def update_errors(self, served_abs_err: np.ndarray, shadow_abs_err: np.ndarray) -> Self:
        """Add a batch of pairs: per request, the absolute error of the served and of the
        shadow version (the same requests in the same order)."""
        if self.task != "regression":
            raise ValueError("update_errors() takes absolute errors of a regression model; use update()")
        s = _as_errors(served_abs_err, "served_abs_err")
        h = _as_errors(shadow_abs_err, "shadow_abs_err")
        _same_length(s, h)
        m = len(s)
        if m == 0:
            return self
        d = h - s
        mean_b = float(d.mean())
        m2_b = float(np.sum((d - mean_b) ** 2))
        n_new = self._n + m
        delta = mean_b - self._d_mean
        self._d_mean += delta * m / n_new
        self._d_m2 += m2_b + delta * delta * self._n * m / n_new
        self._served_err += float(s.sum())
        self._shadow_err += float(h.sum())
        self._n = n_new
        return self

    def _test(self) -> tuple[str, float | None, dict[str, Any]]:
        """The test's name, its two-sided p-value (None without enough data) and its numbers."""
        n = self._n
        if self.task == "classification":
            return "mcnemar", (_mcnemar_p(self._b, self._c, "two-sided") if n else None), {"b": self._b, "c": self._c}
        if n < 2:
            return "paired_t", None, {"mean_diff": self._d_mean if n else None, "sd_diff": None, "t": None}
        from scipy.stats import t as student_t

        sd = float(np.sqrt(max(self._d_m2, 0.0) / (n - 1)))
        if sd > 0.0:
            t_stat = self._d_mean / (sd / np.sqrt(n))
            p = float(min(1.0, 2.0 * student_t.sf(abs(t_stat), n - 1)))
        else:  # every pair differs by the same amount: no variation to test against
            t_stat = 0.0 if self._d_mean == 0.0 else float(np.copysign(np.inf, self._d_mean))
            p = 1.0 if self._d_mean == 0.0 else 0.0
        return "paired_t", p, {"mean_diff": self._d_mean, "sd_diff": sd, "t": float(t_stat)}

    def report(self) -> dict[str, Any]:
        """The comparison so far, as plain data.

        Keys: ``n``, ``task``, ``metric`` (``"accuracy"`` or ``"mae"``), ``served_metric``,
        ``shadow_metric``, ``difference`` (shadow minus served: positive is better for accuracy,
        negative for mae), ``test`` (``"mcnemar"`` or ``"paired_t"``), ``p_value`` (two-sided),
        ``alpha``, ``better`` / ``worse`` (the shadow significantly better / worse at ``alpha``),
        ``served_version``, ``shadow_version``, ``summary`` (one sentence), and the test's own
        numbers (``b`` and ``c``; or ``mean_diff``, ``sd_diff`` and ``t``). Values that need
        data not yet seen are None (never NaN, so reports compare with ``==``).
        """
        n = self._n
        if self.task == "classification":
            metric = "accuracy"
            served = self._served_right / n if n else None
            shadow = self._shadow_right / n if n else None
        else:
            metric = "mae"
            served = self._served_err / n if n else None
            shadow = self._shadow_err / n if n else None
        test, p, details = self._test()
        diff = shadow - served if served is not None and shadow is not None else None
        decided = p is not None and diff is not None and n >= self.min_n and p < self.alpha
        sign = 1.0 if metric == "accuracy" else -1.0   # which direction of the difference is better
        better = bool(decided and diff is not None and sign * diff > 0)
        worse = bool(decided and diff is not None and sign * diff < 0)
        out: dict[str, Any] = {
            "n": n, "task": self.task, "metric": metric, "served_metric": served, "shadow_metric": shadow,
            "difference": diff, "test": test, "p_value": p, "alpha": self.alpha, "better": better, "worse": worse,
            "served_version": self.served_version, "shadow_version": self.shadow_version, **details,
        }
        out["summary"] = self._summary(out)
        return out

    def _summary(self, r: dict[str, Any]) -> str:
        who = f"shadow {self.shadow_version} vs served {self.served_version}"
        if r["p_value"] is None:
            return f"{who}: not enough labelled requests yet to compare (n={r['n']:,})"
        if r["test"] == "mcnemar":
            evidence = f"McNemar b={r['b']} c={r['c']}, p={_fmt_p(r['p_value'])}"
        else:
            evidence = f"paired t={r['t']:.2g}, p={_fmt_p(r['p_value'])}"
        if r["better"]:
            verdict = f"shadow significantly better at alpha {self.alpha:g}"
        elif r["worse"]:
            verdict = f"shadow significantly worse at alpha {self.alpha:g}"
        elif r["n"] < self.min_n:
            verdict = f"too few pairs to judge (fewer than {self.min_n:,})"
        else:
            verdict = f"no significant difference at alpha {self.alpha:g}"
        return (f"shadow {self.shadow_version} {r['metric']} {_fmt(r['shadow_metric'])} vs served "
                f"{self.served_version} {_fmt(r['served_metric'])} on the same {r['n']:,} labelled requests "
                f"({evidence}): {verdict}")


# ------------------------------------------------------------------ canary: unpaired, one window
def _counts(outcome: np.ndarray | tuple[int, int], name: str) -> tuple[int, int]:
    """``(correct, n)`` from per-request correctness or from counts."""
    if isinstance(outcome, tuple):
        correct, n = (int(v) for v in outcome)
        if not 0 <= correct <= n:
            raise ValueError(f"{name} counts must satisfy 0 <= correct <= n, got {outcome}")
        return correct, n
    a = _as_correct(outcome, name)
    return int(a.sum()), len(a)


def compare_windows(version_outcomes: np.ndarray | tuple[int, int],
                    champion_outcomes: np.ndarray | tuple[int, int], *,
                    task: Task = "classification", version: str = "version", champion: str = "champion",
                    alpha: float = 0.05) -> dict[str, Any]:
    """Unpaired comparison of one version (a canary) against the champion over the same time
    window: is the version significantly worse?

    The two versions answered different requests, so nothing is paired; the test is one-sided
    (the question a canary asks is whether to stop it):

    * classification: Fisher's exact test on the 2×2 table of correct / wrong counts of each,
      ``alternative="less"`` (the version's odds of being right are lower). Fisher rather than
      the two-proportion z test at every n: a canary gets a small slice of the traffic (often a
      few hundred requests against thousands) and accuracies sit near 1, exactly where the
      z test's normal approximation is poor; Fisher's test is exact (conditional on the
      margins, slightly conservative) and scipy computes a 2×2 table in microseconds even with
      millions of requests, so the approximation buys nothing.
    * regression: the Mann–Whitney U test on the absolute errors, ``alternative="greater"``
      (the version's errors tend to be larger). It is rank-based, so a few huge errors cannot
      dominate it and it needs no normality; it tests stochastic order, not the difference of
      the MAEs that the summary reports.

    Parameters
    ----------
    version_outcomes, champion_outcomes
        Classification: per request, whether the model was right (booleans or 0/1), or the
        counts ``(correct, n)``. Regression: per request, the absolute error.
    task
        ``"classification"`` or ``"regression"``.
    version, champion
        The two sides' names, as the summary writes them (e.g. ``"v2"`` and ``"champion v1"``;
        the reference side need not be the champion: a degrading champion against its canary).
    alpha
        Significance level of the one-sided test behind ``worse``.

    Returns
    -------
    dict
        ``version``, ``champion``, ``task``, ``metric`` (``"accuracy"`` or ``"mae"``),
        ``version_metric``, ``champion_metric``, ``version_n``, ``champion_n``, ``difference``
        (version minus champion), ``test`` (``"fisher_exact"`` or ``"mannwhitneyu"``), ``p_value``
        (one-sided), ``alpha``, ``worse`` and ``summary``. Metrics and p-value are None when
        either side has no requests.

    Examples
    --------
    >>> compare_windows((183, 300), (5415, 5700), version="v2", champion="champion v1")["summary"]
    'v2 accuracy 0.610 vs champion v1 0.950 on the same window (n=300 vs 5,700, Fisher p=6.5e-64): v2 significantly worse at alpha 0.05'
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> r = compare_windows(np.abs(rng.normal(0, 1.0, 400)), np.abs(rng.normal(0, 1.0, 4000)),
    ...                     task="regression", version="v2", champion="v1")
    >>> r["test"], r["worse"], r["version_n"], r["champion_n"]
    ('mannwhitneyu', False, 400, 4000)

    References
    ----------
    .. [1] R. A. Fisher, "On the interpretation of χ² from contingency tables, and the
       calculation of P", Journal of the Royal Statistical Society 85(1), 87-94, 1922.
    .. [2] H. B. Mann and D. R. Whitney, "On a test of whether one of two random variables is
       stochastically larger than the other", Annals of Mathematical Statistics 18(1), 50-60, 1947.
    """
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {_TASKS}")
    vm: float | None
    cm: float | None
    p: float | None
    if task == "classification":
        from scipy.stats import fisher_exact

        metric, test, name = "accuracy", "fisher_exact", "Fisher"
        vk, vn = _counts(version_outcomes, "version_outcomes")
        ck, cn = _counts(champion_outcomes, "champion_outcomes")
        vm = vk / vn if vn else None
        cm = ck / cn if cn else None
        p = (float(fisher_exact([[vk, vn - vk], [ck, cn - ck]], alternative="less").pvalue)
             if vn and cn else None)
    else:
        from scipy.stats import mannwhitneyu

        metric, test, name = "mae", "mannwhitneyu", "Mann-Whitney"
        ve = _as_errors(np.asarray(version_outcomes), "version_outcomes")
        ce = _as_errors(np.asarray(champion_outcomes), "champion_outcomes")
        vn, cn = len(ve), len(ce)
        vm = float(ve.mean()) if vn else None
        cm = float(ce.mean()) if cn else None
        p = float(mannwhitneyu(ve, ce, alternative="greater").pvalue) if vn and cn else None
    diff = vm - cm if vm is not None and cm is not None else None
    worse = p is not None and p < alpha
    if p is None or vm is None or cm is None:
        summary = (f"{version} vs {champion}: no labelled requests of "
                   f"{version if not vn else champion} in the window to compare (n={vn:,} vs {cn:,})")
    else:
        verdict = (f"{version} significantly worse at alpha {alpha:g}" if worse
                   else f"{version} not significantly worse at alpha {alpha:g}")
        summary = (f"{version} {metric} {_fmt(vm)} vs {champion} {_fmt(cm)} on the same window "
                   f"(n={vn:,} vs {cn:,}, {name} p={_fmt_p(p)}): {verdict}")
    return {"version": version, "champion": champion, "task": task, "metric": metric, "version_metric": vm,
            "champion_metric": cm, "version_n": vn, "champion_n": cn, "difference": diff, "test": test,
            "p_value": p, "alpha": alpha, "worse": bool(worse), "summary": summary}
