"""Data-quality checks (detectors/data_quality.py): each fires on a stream where only its defect is
injected, and nothing fires on the clean stream."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.base import Window
from detectors.batch import PredictionBatch
from detectors.data_quality import PREFIX, SEP, DataQuality
from detectors.model_monitor import ModelMonitor
from detectors.reference import Reference

FEATURES = {"amount": "numeric", "age": "numeric", "country": "categorical", "device": "categorical"}
N = 4000


def columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"amount": rng.lognormal(3, 1, n), "age": rng.integers(18, 80, n).astype(float),
            "country": rng.choice(["DE", "FR", "US"], n).astype(object),
            "device": rng.choice(["ios", "android", "web"], n, p=[.4, .4, .2]).astype(object)}


def nulls(c, m, rng):
    c["age"] = np.where(rng.random(len(c["age"])) < 0.3, np.nan, c["age"])


def new_category(c, m, rng):
    c["country"] = np.where(rng.random(len(c["country"])) < 0.2, "BR", c["country"]).astype(object)


def unit_change(c, m, rng):
    c["amount"] = c["amount"] * 1000


def strings_in_numeric(c, m, rng):
    """A quarter of the accepted events follow one refused for a string in `amount` (validation's
    marks: 20% of the events received)."""
    n = len(c["amount"])
    refused = (rng.random(n) < 0.25).astype(np.int32)
    example = np.full(n, None, dtype=object)
    example[refused == 1] = "amount" + SEP + "str '12.5'"
    m.update({"refused": refused, "refused:amount": refused.copy(), "example": example})


def renamed(c, m, rng):
    n = len(c["amount"])
    c["amount"] = np.full(n, np.nan)                   # the configured key: absent, so null
    m.update({"absent:amount": np.ones(n, np.int32), "unknown": np.full(n, "amount_eur", dtype=object)})


def constant(c, m, rng):
    c["device"] = np.full(len(c["device"]), "web", dtype=object)


def duplicates(c, m, rng):
    m["duplicates"] = (rng.random(len(c["amount"])) < 0.1).astype(np.int32)


DEFECTS = {  # defect -> (inject, the checks that must fire: (detector, feature))
    "nulls in one feature": (nulls, {("missing_rate", "age")}),
    "a new category": (new_category, {("unseen_categories", "country")}),
    "a unit change x1000": (unit_change, {("out_of_range", "amount")}),
    "strings in a numeric field": (strings_in_numeric, {("type_change", "amount")}),
    "a renamed feature": (renamed, {("schema_absent", "amount"), ("schema_new", "amount_eur")}),
    "a constant feature": (constant, {("constant", "device")}),
    "duplicated events": (duplicates, {("duplicates", None)}),
}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(columns(rng, 20_000))
    ref["label"] = rng.integers(0, 2, len(ref))
    return ref


def run(reference: pd.DataFrame, inject=None, windows: int = 3) -> list:
    """A monitor (defaults, multivariate off for time) fed clean windows, then ``inject``ed ones."""
    mon = ModelMonitor("shop", "classification", FEATURES, reference,
                       {"window_size": N, "multivariate": False, "calibration_draws": 20})
    rng = np.random.default_rng(1)
    found = []
    for w in range(windows):
        c, marks = columns(rng, N), {}
        if inject is not None and w >= 1:
            inject(c, marks, rng)
        found += mon.update_predictions(PredictionBatch(np.arange(w * N, (w + 1) * N, dtype=np.int64), c,
                                                        rng.choice(["0", "1"], N).astype(object), marks=marks))
    return [d for d in found if d.firing]


def test_the_clean_stream_raises_nothing(reference):
    assert run(reference, windows=6) == []


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_fires_its_own_check_and_no_other_data_quality_check(reference, defect):
    inject, expected = DEFECTS[defect]
    fired = run(reference, inject)
    quality = {(d.detector, d.feature) for d in fired if d.kind == "data_quality"}
    assert quality == expected
    for d in fired:
        if d.kind == "data_quality":
            assert d.summary and d.evidence["check"] == d.detector


def test_evidence_names_the_offending_values(reference):
    [d] = [d for d in run(reference, new_category) if d.kind == "data_quality"]
    assert d.evidence["top_unseen"][0][0] == "BR" and "'BR'" in d.summary
    [u] = [d for d in run(reference, unit_change) if d.kind == "data_quality"]
    assert u.evidence["scale"] == pytest.approx(1000, rel=0.1) and "unit change" in u.summary
    assert all(v > u.evidence["reference_range"][1] for v in u.evidence["examples"])
    [t] = [d for d in run(reference, strings_in_numeric) if d.kind == "data_quality"]
    assert "'12.5'" in t.summary and "dead-lettered" in t.summary
    r = {d.detector: d for d in run(reference, renamed) if d.kind == "data_quality"}
    assert "amount_eur" in r["schema_absent"].summary       # the rename is pointed at


def test_null_share_is_data_quality_not_data_drift(reference):
    """With the data-quality checks on (the default) nulls are a pipeline finding only."""
    fired = run(reference, nulls)
    assert [(d.kind, d.detector) for d in fired] == [("data_quality", "missing_rate")]


def test_a_finding_resolves_after_clean_windows():
    rng = np.random.default_rng(2)
    ref = Reference(columns(rng, 5000), FEATURES, task="regression")
    dq = DataQuality(ref, resolve_after=2)
    bad = columns(rng, 1000)
    bad["amount"] = bad["amount"] * 1000
    assert [d.firing for d in dq.update(Window(0, 1, 1000), bad)] == [True]
    assert dq.update(Window(1, 2, 1000), columns(rng, 1000)) == []
    [resolved] = dq.update(Window(2, 3, 1000), columns(rng, 1000))
    assert (resolved.detector, resolved.feature, resolved.firing) == ("out_of_range", "amount", False)


def judge(dq: DataQuality, rng, n: int, marks: dict | None, end: int) -> list:
    cols = columns(rng, n)
    return dq.update(Window(end - 1, end, n), {**cols, **dq.columns(marks, n)})


def test_counted_checks_resolve_when_the_pipeline_is_clean_again():
    rng = np.random.default_rng(3)
    dq = DataQuality(Reference(columns(rng, 5000), FEATURES, task="regression"), resolve_after=1)
    dups = (np.arange(1000) % 3 == 0).astype(np.int32)
    assert [(d.detector, d.firing) for d in judge(dq, rng, 1000, {"duplicates": dups}, 1)] == [("duplicates", True)]
    assert [(d.detector, d.firing) for d in judge(dq, rng, 1000, None, 2)] == [("duplicates", False)]


def test_events_dropped_after_a_batch_count_on_the_next_event():
    """A batch's trailing refused events (after its last accepted one) are carried to the next
    batch's first event: the window that holds it counts them, however the stream was cut."""
    rng = np.random.default_rng(4)
    dq = DataQuality(Reference(columns(rng, 5000), FEATURES, task="regression"))
    dq.observe_pipeline({"refused": 300, "refused:amount": 300, "examples": ["amount" + SEP + "str 'N/A'"]})
    cols = dq.columns(None, 1000)
    assert cols[PREFIX + "refused"][0] == 300 and cols[PREFIX + "refused"][1:].sum() == 0
    [d] = dq.update(Window(0, 1, 1000), {**columns(rng, 1000), **cols})
    assert (d.detector, d.feature) == ("type_change", "amount") and d.statistic == pytest.approx(300 / 1300)
    assert d.evidence["examples"] == ["str 'N/A'"] and dq.columns(None, 10)[PREFIX + "refused"].sum() == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"schema_share": 0.0}, "schema_share must be a share"),
    ({"min_unseen_share": 2.0}, "min_unseen_share must be a share"),
    ({"correction": "nope"}, "correction must be one of"),
])
def test_bad_settings_are_refused(kwargs, message):
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match=message):
        DataQuality(Reference(columns(rng, 100), FEATURES, task="regression"), **kwargs)


def test_last_holds_the_last_windows_checks_only():
    """A key sent once is a finding of that window; the next window's statistics do not carry it."""
    rng = np.random.default_rng(5)
    dq = DataQuality(Reference(columns(rng, 5000), FEATURES, task="regression"))
    judge(dq, rng, 1000, {"unknown": np.full(1000, "promo_code", dtype=object)}, 1)
    assert dq.last()["schema_new:promo_code"]["breach"] and dq.last()["schema_new:promo_code"]["window"]["end_ts"] == 1
    judge(dq, rng, 1000, None, 3)
    assert "schema_new:promo_code" not in dq.last() and dq.last()["duplicates:"]["window"]["end_ts"] == 3


def _with_domain_classifier(reference: pd.DataFrame, inject, shift: float = 0.0) -> tuple[list, dict]:
    """``run`` with the multivariate detectors on and the domain classifier judging every window;
    ``shift``: the injected windows' ``amount`` also moves (a real change beside the defect)."""
    mon = ModelMonitor("shop", "classification", FEATURES, reference,
                       {"window_size": N, "calibration_draws": 20, "domain_classifier_every": 1,
                        "domain_classifier_rows": 1000})
    rng = np.random.default_rng(1)
    found = []
    for w in range(3):
        c, marks = columns(rng, N), {}
        if w >= 1:
            inject(c, marks, rng)
            c["amount"] = c["amount"] * (1 + shift)
        found += mon.update_predictions(PredictionBatch(np.arange(w * N, (w + 1) * N, dtype=np.int64), c,
                                                        rng.choice(["0", "1"], N).astype(object), marks=marks))
    return [d for d in found if d.firing], mon.status()["multivariate"]["domain_classifier"]


@pytest.mark.parametrize("defect", ["nulls in one feature", "a renamed feature", "a constant feature"])
def test_a_pipeline_defect_pages_data_quality_not_the_domain_classifier(reference, defect):
    """Before, the domain classifier told the broken windows apart too (AUC 0.64 on 30% nulls,
    1.00 on a rename): a second, drift-shaped page for one defect. It now leaves out the features
    the window's data-quality checks found broken."""
    inject, expected = DEFECTS[defect]
    found, dc = _with_domain_classifier(reference, inject)
    assert {(d.detector, d.feature) for d in found if d.kind == "data_quality"} >= expected
    assert not [d for d in found if d.detector == "domain_classifier"], [d.summary for d in found]
    assert dc["left_out"] == sorted({f for _, f in expected if f in FEATURES})


def test_a_real_change_beside_a_defect_still_pages_the_domain_classifier(reference):
    found, dc = _with_domain_classifier(reference, nulls, shift=1.0)
    [page] = [d for d in found if d.detector == "domain_classifier"]
    assert "Left out of this test (data-quality findings): `age`." in page.summary, page.summary
    assert dc["left_out"] == ["age"]
