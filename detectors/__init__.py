"""The detectors layer: pure statistics over batches of events, no Kafka, no store, no I/O.

What it does: the monitoring layer (and ``driftloop replay``) feeds it micro-batches of
columns, predictions and labels; it answers with :class:`~detectors.base.Detection` objects.
Every detector's state can be snapshot to bytes and restored exactly (see
:mod:`detectors.state` and :mod:`detectors.composite`).

What it may import: nothing of the project (no ``driftloop``, ``consumers`` or ``retrain``
module; import-linter checks it in CI), only the standard library, numpy, scipy,
scikit-learn, pandas and msgspec. Everything above it may import it.

Where things are, in the order a window is judged:

* :mod:`detectors.windows` cuts batches into count or time windows; :mod:`detectors.batch`
  holds the batch shapes; :mod:`detectors.reference` the training sample;
* :mod:`detectors.two_sample` — the vectorised two-sample statistics (KS, CvM, Wasserstein,
  PSI, Jensen–Shannon, chi-square) over many columns at once;
* :mod:`detectors.univariate_drift` — the :class:`UnivariateDrift` detector built on them
  (per-column data and prediction drift), :mod:`detectors.multivariate` (PCA reconstruction,
  domain classifier), :mod:`detectors.performance`, :mod:`detectors.cbpe`, and
  :mod:`detectors.concept` (streaming concept-drift detectors on the error stream);
* :mod:`detectors.paired` — one model version against another: shadow (paired) and canary (window);
* :mod:`detectors.decision` — thresholds, multiple-testing corrections and the alert
  lifecycle of each detector; :mod:`detectors.model_monitor` — :class:`ModelMonitor`, which
  composes them for one model (the object the monitoring layer calls);
* ranking models (contract v1.1 ``task: ranking``): :mod:`detectors.ranking_lists` (a ranked
  list and a relevance label as one text value), :mod:`detectors.ranking_metrics` (NDCG@k,
  precision/recall/MAP@k, MRR, hit rate with bootstrap intervals; label-free metrics),
  :mod:`detectors.ranking_drift` (the recommended items' shares), :mod:`detectors.ranking_performance`,
  and :mod:`detectors.ranking_monitor` — :class:`RankingMonitor`, a ranking model's
  :class:`ModelMonitor`.

Every concrete detector class is discovered and checked by the contract suite
(``tests/detectors/test_contract.py``).
"""
from detectors.base import Detection, Snapshotable, StreamDetector, Window, WindowDetector

__all__ = ["Detection", "Snapshotable", "StreamDetector", "Window", "WindowDetector"]
