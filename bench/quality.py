"""Quality of the concept-drift detectors on error streams with known drift (and without).

The error stream is the per-event 0/1 error of a model trained on the first concept and then
frozen, as in production between two retrainings. Streams come from ``river.datasets.synth``:

* SEA (noise 10%), concept 0 -> 3: a small drift (error ~0.12 -> ~0.21);
* STAGGER with 5% label noise, function 0 -> 1: a large drift (error ~0.05 -> ~0.6);
* Agrawal (perturbation 5%), function 0 -> 2: a large drift (error ~0.06 -> ~0.5).

Abrupt drifts concatenate the two concepts (River's ``ConceptDriftStream`` overflows for small
widths at large positions); gradual drifts use ``ConceptDriftStream`` with ``width=2000``.
Each drift stream has 10,000 events of the first concept and 5,000 after the drift starts
(gradual: the start is ``position - width``, where 1.8% of the events already
come from the new concept); stationary streams are 40,000 events of the
first concept. A detection in [start, start + 5000] is a hit (the first one gives the delay),
anything else a false alarm; false alarms are counted per 40,000 stationary events (the
stationary streams plus the pre-drift parts of the drift streams).

Run: ``python bench/quality.py`` (about two minutes on 2 cores). Prints one table.
``--scale K`` multiplies the number of streams per generator (K=4: 60 abrupt drifts, enough for
a recall lower bound near 0.95); ``--contenders`` picks rows by the start of their labels.
The last lines give one-sided 95% bounds for the default set: the lower (Clopper-Pearson) bound
of its recall on abrupt drifts and the upper bound of its false alarms per 40k events.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from river import drift as rdrift
from river.datasets import synth
from scipy import stats
from sklearn.tree import DecisionTreeClassifier

from detectors.concept import DEFAULT_SET, default_set, make_detector

PRE, POST, WIDTH, STATIONARY, TRAIN = 10_000, 5_000, 2_000, 40_000, 5_000
BATCH = 1000


class _LabelNoise:
    """A River stream whose labels are flipped with probability ``rate`` (seeded)."""

    def __init__(self, stream, rate: float, seed: int):
        self.stream, self.rate, self.seed = stream, rate, seed
        for attr in ("n_features", "n_classes", "n_outputs", "task", "n_samples"):
            setattr(self, attr, getattr(stream, attr))

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        for x, y in self.stream:
            yield x, (not y if rng.random() < self.rate else y)


GENERATORS = {
    "SEA": (lambda c, s: synth.SEA(variant=c, noise=0.1, seed=s), 0, 3),
    "STAGGER": (lambda c, s: _LabelNoise(synth.STAGGER(classification_function=c, seed=s), 0.05, s), 0, 1),
    "Agrawal": (lambda c, s: synth.Agrawal(classification_function=c, perturbation=0.05, seed=s), 0, 2),
}
# (drift seeds, stationary seeds) per generator; Agrawal is slow to generate.
SEEDS = {"SEA": (6, 2), "STAGGER": (6, 2), "Agrawal": (3, 1)}


def _take(stream, n: int):
    xs, ys = [], []
    for i, (x, y) in enumerate(stream):
        if i >= n:
            break
        xs.append(list(x.values()))
        ys.append(y)
    return np.asarray(xs, dtype=float), np.asarray(ys)


def _errors(model, stream, n: int) -> np.ndarray:
    x, y = _take(stream, n)
    return (model.predict(x) != y).astype(np.float64)


class _Concat:
    """Iterate over one stream for ``n`` events, then over another (an abrupt drift)."""

    def __init__(self, a, b, n: int):
        self.a, self.b, self.n = a, b, n

    def __iter__(self):
        for i, xy in enumerate(self.a):
            if i >= self.n:
                break
            yield xy
        yield from self.b


def build_streams(scale: int = 1):
    """List of (kind, generator, errors, drift start or None)."""
    out = []
    for name, (make, c0, c1) in GENERATORS.items():
        n_drift, n_stat = (k * scale for k in SEEDS[name])
        x, y = _take(make(c0, 1000), TRAIN)
        model = DecisionTreeClassifier(max_depth=8, random_state=0).fit(x, y)
        for s in range(n_drift):
            a = _errors(model, _Concat(make(c0, 10 * s + 1), make(c1, 10 * s + 2), PRE), PRE + POST)
            out.append(("abrupt", name, a, PRE))
            pos = PRE + WIDTH  # the sigmoid's drift probability is 1.8% at pos - WIDTH
            cds = synth.ConceptDriftStream(
                stream=make(c0, 10 * s + 3), drift_stream=make(c1, 10 * s + 4), position=pos, width=WIDTH, seed=s
            )
            out.append(("gradual", name, _errors(model, cds, PRE + POST), PRE))
        for s in range(n_stat):
            out.append(("stationary", name, _errors(model, make(c0, 10 * s + 5), STATIONARY), None))
    return out


# ---------------------------------------------------------------------------- detectors


def _ours(name, **params):
    def run(x):
        det = make_detector(name, **params)
        return np.concatenate([k + det.update_many(x[k : k + BATCH]) for k in range(0, len(x), BATCH)])

    return run


def _default_set(x):
    dets = default_set()
    hits = []
    for k in range(0, len(x), BATCH):
        for det in dets.values():
            hits.extend((k + det.update_many(x[k : k + BATCH])).tolist())
    return np.asarray(sorted(hits), dtype=np.int64)


def _river(factory, increase_only=False):
    def run(x):
        det, hits = factory(), []
        for i, v in enumerate(x.tolist()):
            before = det.estimation if increase_only else 0.0
            det.update(v)
            if det.drift_detected and (not increase_only or det.estimation > before):
                hits.append(i)
        return np.asarray(hits, dtype=np.int64)

    return run


def _dummy(x):
    return np.arange(99, len(x), 100)


CONTENDERS = {
    "driftloop default set": _default_set,
    "adwin": _ours("adwin"),
    "ddm": _ours("ddm"),
    "eddm": _ours("eddm"),
    "hddm_a": _ours("hddm_a"),
    "hddm_w": _ours("hddm_w"),
    "page_hinkley": _ours("page_hinkley"),
    "kswin": _ours("kswin"),
    "River ADWIN (default)": _river(rdrift.ADWIN),
    "River ADWIN increase-only": _river(rdrift.ADWIN, increase_only=True),
    "River PageHinkley (default)": _river(rdrift.PageHinkley),
    "dummy: fire every 100": _dummy,
}


def score(hits: np.ndarray, start: int | None, n: int):
    """(hit or None, delay or None, false alarms, stationary events)."""
    if start is None:
        return None, None, len(hits), n
    pre = hits[hits < start]
    post = hits[(hits >= start) & (hits <= start + POST)]
    delay = int(post[0] - start) if len(post) else None
    return bool(len(post)), delay, len(pre), start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=1, help="streams per generator x K")
    ap.add_argument("--contenders", default="", help="comma list of label prefixes (default: all)")
    args = ap.parse_args()
    wanted = [w.strip() for w in args.contenders.split(",") if w.strip()]
    t0 = time.perf_counter()
    streams = build_streams(args.scale)
    print(f"# {len(streams)} error streams built in {time.perf_counter() - t0:.0f}s; default set = {DEFAULT_SET}")
    header = f"{'detector':<28} {'recall abrupt':>13} {'recall grad.':>12} {'med. delay abr.':>15} {'med. delay grad.':>16} {'FA/40k':>7} {'time s':>6}"
    print(header)
    print("-" * len(header))
    bounds = None
    for label, run in CONTENDERS.items():
        if wanted and not any(label.startswith(w) for w in wanted):
            continue
        t = time.perf_counter()
        rec = {"abrupt": [], "gradual": []}
        delays = {"abrupt": [], "gradual": []}
        fa = n_stat = 0
        for kind, _gen, x, start in streams:
            hit, delay, n_fa, n = score(run(x), start, len(x))
            fa += n_fa
            n_stat += n
            if kind != "stationary":
                rec[kind].append(hit)
                if delay is not None:
                    delays[kind].append(delay)

        def med(v):
            return f"{np.median(v):.0f}" if v else "-"

        print(
            f"{label:<28} {np.mean(rec['abrupt']):>13.2f} {np.mean(rec['gradual']):>12.2f} "
            f"{med(delays['abrupt']):>15} {med(delays['gradual']):>16} {fa * 40_000 / n_stat:>7.2f} "
            f"{time.perf_counter() - t:>6.1f}",
            flush=True,
        )
        if label == "driftloop default set":
            bounds = (sum(rec["abrupt"]), len(rec["abrupt"]), fa, n_stat)
    if bounds:
        hits, n, fa, n_stat = bounds
        lo = stats.beta.ppf(0.05, hits, n - hits + 1) if hits else 0.0  # one-sided 95%
        hi = stats.chi2.ppf(0.95, 2 * (fa + 1)) / 2 * 40_000 / n_stat
        print(f"# default set: {hits}/{n} abrupt drifts found, recall >= {lo:.3f} (95%); "
              f"{fa} false alarms in {n_stat:,} stationary events, <= {hi:.2f} per 40k (95%)")
    print(f"# total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
