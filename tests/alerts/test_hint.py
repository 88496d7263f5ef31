"""The root-cause hint of an incident, on alerts built from the real detectors' detections."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.base import Detection, Window
from detectors.batch import LabelledBatch
from detectors.model_monitor import ModelMonitor
from detectors.multivariate import PCAReconstructionDrift
from detectors.performance import PerformanceDrift, positive_class
from detectors.reference import Reference
from detectors.univariate_drift import UnivariateDrift
from driftloop.alerts.hint import _POSITIVE, Hint, root_cause_hint
from driftloop.alerts.lifecycle import AlertLifecycle, AlertState, Policy
from driftloop.alerts.stale import stale_decisions
from driftloop.monitoring.failures import failure_detection

FEATURES = ["Latitude", "Longitude", "MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup"]
SHIFTS = [1.6, 1.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.0]
W = Window(0, 60_000, 2000)


def states(dets: list[Detection], version: str = "1") -> list[AlertState]:
    """Every alert state the lifecycle keeps for the detections (group alerts included)."""
    book = AlertLifecycle(Policy(group_window_ms=0), {})
    book.observe_many(dets, "housing", version, now=1_000)
    return list(book.states.values())


def data_drift(missing: bool = False, categorical: bool = False, seed: int = 1) -> list[Detection]:
    """Seven features shifted by SHIFTS standard deviations (AveOccup also 35% missing)."""
    rng = np.random.default_rng(seed)
    cols = {f: rng.normal(size=4000) for f in FEATURES}
    types = dict.fromkeys(FEATURES, "numeric")
    cur = {f: rng.normal(s, size=W.n) for f, s in zip(FEATURES, SHIFTS)}
    if categorical:
        cols["ocean"], types["ocean"] = rng.choice(["a", "b", "c"], 4000), "categorical"
        cur["ocean"] = rng.choice(["a", "b", "c"], W.n, p=[0.8, 0.1, 0.1]).astype(object)
    if missing:
        cur["AveOccup"][:700] = np.nan
    det = UnivariateDrift(Reference(cols, types), calibration_n=W.n, calibration_draws=10)
    return det.update(W, cur, "1")


def prediction_drift(rate: float = 0.05, seed: int = 2) -> list[Detection]:
    rng = np.random.default_rng(seed)
    ref = Reference({"prediction": rng.choice(["0", "1"], 4000, p=[0.79, 0.21])}, {"prediction": "categorical"})
    det = UnivariateDrift(ref, kind="prediction_drift", calibration_n=W.n, calibration_draws=10)
    return det.update(W, {"prediction": rng.choice(["0", "1"], W.n, p=[1 - rate, rate]).astype(object)}, "1")


def accuracy_drop(seed: int = 3) -> list[Detection]:
    rng = np.random.default_rng(seed)
    y = rng.choice(["0", "1"], 1000).astype(object)
    yhat = np.where(rng.random(1000) < 0.57, np.where(y == "0", "1", "0"), y).astype(object)
    perf = PerformanceDrift("classification", ["0", "1"], metrics=("accuracy",), baseline={"accuracy": 0.81})
    return perf.update(Window(0, 60_000, 1000), y, yhat, None, "1")


def step_names(hint: Hint) -> list[str]:
    return [p["step"] for p in hint.parts]


def evidence(dets: list[Detection], feature: str) -> dict:
    return next(d.evidence for d in dets if d.feature == feature and d.detector != "missing_rate")


# ---------------------------------------------------------------------- the target incident
def test_target_example_ranks_inputs_predictions_metrics():
    drift, preds, perf = data_drift(), prediction_drift(), accuracy_drop()
    alerts = states(drift + preds + perf)
    assert any(a.is_group for a in alerts)            # the data-drift group is there, and skipped
    hint = root_cause_hint("housing", "1", alerts)
    pos = next(c for c in preds[0].evidence["top_changes"] if c["category"] == "1")
    assert hint.text == ("housing v1: inputs moved (Latitude 1.6σ, Longitude 1.3σ, MedInc 0.9σ, +4 more); "
                         f"predictions shifted (positive rate {pos['reference_share']:.2f} → {pos['current_share']:.2f}); "
                         f"accuracy fell to {perf[0].statistic:.2f} from 0.81 over 1,000 labelled predictions.")
    assert step_names(hint) == ["inputs", "predictions", "metrics"]
    inputs = hint.parts[0]
    assert [f["feature"] for f in inputs["features"]] == FEATURES[:7]
    assert inputs["more"] == 4
    assert inputs["features"][0]["sigma"] == pytest.approx(evidence(drift, "Latitude")["statistics"]["wasserstein"],
                                                         abs=1e-4)
    assert inputs["features"][0]["sigma_source"] == "wasserstein"
    assert len(inputs["alert_ids"]) == 7 and all(not a.is_group for a in alerts if a.alert_id in inputs["alert_ids"])
    out = hint.parts[1]["outputs"][0]
    assert (out["category"], out["reference_share"], out["current_share"]) == (
        "1", pos["reference_share"], pos["current_share"])
    assert pos["reference_share"] == pytest.approx(0.21, abs=0.02) and pos["current_share"] == pytest.approx(0.05, abs=0.015)
    metric = hint.parts[2]["metrics"][0]
    assert (metric["metric"], metric["baseline"], metric["n"]) == ("accuracy", 0.81, 1000)
    assert metric["value"] == pytest.approx(perf[0].statistic)
    assert Hint(hint.text, hint.parts).to_dict()["parts"] == hint.parts


def test_data_quality_comes_first():
    alerts = states(accuracy_drop() + data_drift(missing=True))   # performance observed first
    hint = root_cause_hint("housing", "1", alerts)
    assert step_names(hint) == ["data_quality", "inputs", "metrics"]
    dq = hint.parts[0]
    assert dq["text"] == "data quality: AveOccup missing values 0.0% → 35.0%"
    assert dq["items"][0]["current_missing_rate"] == pytest.approx(0.35)
    assert hint.text.startswith("housing v1: data quality: AveOccup missing values 0.0% → 35.0%; inputs moved (")


def test_only_one_kind():
    [perf] = accuracy_drop()
    hint = root_cause_hint("housing", "1", states([perf]))
    assert step_names(hint) == ["metrics"]
    assert hint.text == f"housing v1: accuracy fell to {perf.statistic:.2f} from 0.81 over 1,000 labelled predictions."


def test_no_alerts_and_groups_only():
    assert root_cause_hint("housing", None, []).text == "housing: no evidence."
    groups = [a for a in states(data_drift()) if a.is_group]
    assert groups and root_cause_hint("housing", "1", groups).parts == []


# ---------------------------------------------------------------------- fallbacks
def test_categorical_feature_falls_back_to_its_statistic():
    drift = data_drift(categorical=True)
    ocean = next(d for d in drift if d.feature == "ocean")
    alone = root_cause_hint("housing", "1", states([ocean]))
    assert alone.text == f"housing v1: inputs moved (ocean PSI {ocean.statistic:.2g})."
    assert "sigma" not in alone.parts[0]["features"][0]
    mixed = root_cause_hint("housing", "1", states(drift)).parts[0]
    assert mixed["more"] == 5 and {f["feature"] for f in mixed["features"]} == {*FEATURES[:7], "ocean"}


def test_mean_shift_is_used_when_the_evidence_has_the_reference_std():
    ev = {"reference_mean": 10.0, "current_mean": 13.0, "reference_std": 2.0, "statistics": {"wasserstein": 9.9}}
    d = Detection("data_drift", "ks", "rooms", 0.4, 1e-9, 0.1, W, evidence=ev)
    part = root_cause_hint("housing", "1", states([d])).parts[0]
    assert part["text"] == "inputs moved (rooms 1.5σ)"
    assert part["features"][0]["sigma_source"] == "mean_shift"


def test_unknown_detector_without_numbers():
    d = Detection("data_drift", "energy", "rooms", float("nan"), None, 0.1, W)
    assert root_cause_hint("housing", "1", states([d])).text == "housing v1: inputs moved (rooms energy)."


# ---------------------------------------------------------------------- regression model
def test_regression_errors_rise_and_mean_prediction_moves():
    rng = np.random.default_rng(4)
    ref = Reference({"prediction": rng.normal(2.0, 1.0, 4000)}, {"prediction": "numeric"}, task="regression")
    preds = UnivariateDrift(ref, kind="prediction_drift", calibration_n=W.n, calibration_draws=10).update(
        W, {"prediction": rng.normal(1.2, 1.0, W.n)}, "2")
    y = rng.normal(size=1000)
    perf = PerformanceDrift("regression", metrics=("mae", "rmse", "r2"), baseline={"mae": 0.3, "rmse": 0.4, "r2": 0.9})
    metrics = perf.update(Window(0, 60_000, 1000), y, y + rng.normal(0, 1.0, 1000), None, "2")
    assert {d.detector for d in metrics} == {"mae", "rmse", "r2"}
    hint = root_cause_hint("housing", "2", states(preds + metrics, version="2"))
    assert step_names(hint) == ["predictions", "metrics"]
    ev = preds[0].evidence
    assert hint.parts[0]["text"] == (f"predictions shifted (mean prediction {ev['reference_mean']:.2f} → "
                                     f"{ev['current_mean']:.2f} ({ev['statistics']['wasserstein']:.1f}σ))")
    worst = sorted(metrics, key=lambda d: -d.effect_size / d.evidence["min_degradation"])[:2]
    names, base = {"mae": "MAE", "rmse": "RMSE", "r2": "R²"}, {"mae": 0.3, "rmse": 0.4, "r2": 0.9}
    words = [f"{names[d.detector]} {'fell' if d.detector == 'r2' else 'rose'} to {d.statistic:.2f} "
             f"from {base[d.detector]:.2f}" for d in worst]
    assert hint.parts[1]["text"] == " and ".join(words) + " over 1,000 labelled predictions, +1 more"
    assert any(w.startswith(("MAE rose to", "RMSE rose to")) for w in words)   # error metrics rise
    assert hint.text.startswith("housing v2: predictions shifted (mean prediction 2.0")


# ---------------------------------------------------------------------- metrics: concept drift, estimate
def labelled(rng, n, wrong, t0):
    y = rng.choice(["0", "1"], n).astype(object)
    p = np.where(rng.random(n) < wrong, np.where(y == "0", "1", "0"), y).astype(object)
    return LabelledBatch(ts=np.arange(t0, t0 + n, dtype=np.int64), prediction=p, label=y,
                         features={"x": rng.normal(size=n)})


@pytest.fixture(scope="module")
def monitor_detections() -> list[Detection]:
    """A real ModelMonitor's performance and ADWIN concept-drift detections."""
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "label": rng.choice(["0", "1"], 2000)})
    ref["prediction"] = ref["label"]
    mon = ModelMonitor("housing", "classification", {"x": "numeric"}, ref,
                       {"window_size": 500, "warmup": 0, "multivariate": False, "calibration_draws": 10,
                        "concept_detectors": ("adwin",)})
    return mon.update_labelled(labelled(rng, 1000, 0.1, 0)) + mon.update_labelled(labelled(rng, 1000, 0.5, 1000))


def test_metrics_name_two_then_more_and_concept_drift(monitor_detections):
    perf = [d for d in monitor_detections if d.kind == "performance"]
    assert len(perf) == 4 and any(d.kind == "concept_drift" for d in monitor_detections)
    part = root_cause_hint("housing", "1", states(monitor_detections)).parts[0]
    assert part["step"] == "metrics"
    worst = sorted(perf, key=lambda d: -d.effect_size / d.evidence["min_degradation"])[:2]
    names = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1"}
    expected = " and ".join(f"{names[d.detector]} fell to {d.statistic:.2f} from 1.00" for d in worst)
    assert part["text"] == f"{expected} over 500 labelled predictions, +2 more, concept drift (ADWIN)"
    assert part["concept_drift"][0]["recent_error_rate"] == pytest.approx(0.132)


def test_concept_drift_alone_gives_the_error_rates(monitor_detections):
    concept = [d for d in monitor_detections if d.kind == "concept_drift"]
    hint = root_cause_hint("housing", "1", states(concept))
    assert hint.text == ("housing v1: error rate rose to 0.13 from 0.10 over 1,000 labelled predictions "
                         "(ADWIN).")   # 0.105 → "0.10" (round half to even of the float)


def test_label_free_estimate_when_no_labels():
    # the evidence shape of detectors.cbpe.CBPE
    est = Detection("performance", "cbpe_accuracy", None, 0.62, 1e-5, 0.83, Window(0, 60_000, 5000),
                    effect_size=0.23, evidence={"baseline_accuracy": 0.85, "reference_expected_accuracy": 0.84,
                                                "se": 0.01, "ci": [0.6, 0.64], "alpha": 0.001,
                                                "min_degradation": 0.02, "window_n": 5000, "reference_n": 20000})
    hint = root_cause_hint("housing", "1", states([est]))
    assert hint.text == ("housing v1: estimated accuracy fell to 0.62 from 0.85 over 5,000 predictions, "
                         "before labels arrived.")
    assert hint.parts[0]["metrics"][0]["estimated"] is True
    [perf] = accuracy_drop()
    realised = root_cause_hint("housing", "1", states([est, perf])).parts[0]
    assert realised["text"] == f"accuracy fell to {perf.statistic:.2f} from 0.81 over 1,000 labelled predictions"
    assert [m["metric"] for m in realised["metrics"]] == ["accuracy", "cbpe_accuracy"]


def test_every_label_free_estimate_is_named_as_one():
    """``cbpe_<metric>`` (classifiers) and ``dle_<metric>`` (regressors) are estimates: named
    "estimated …", after realised metrics, with "before labels arrived"."""
    f1 = Detection("performance", "cbpe_f1", None, 0.55, 1e-5, 0.78, Window(0, 60_000, 5000), effect_size=0.25,
                   evidence={"baseline": 0.80, "min_degradation": 0.02, "window_n": 5000})
    mae = Detection("performance", "dle_mae", None, 3.1, 1e-5, 2.2, Window(0, 60_000, 5000), effect_size=0.5,
                    evidence={"baseline": 2.0, "min_degradation": 0.1, "window_n": 5000})
    assert root_cause_hint("housing", "1", states([f1])).text == (
        "housing v1: estimated F1 fell to 0.55 from 0.80 over 5,000 predictions, before labels arrived.")
    hint = root_cause_hint("price", "2", states([mae]))
    assert hint.text == "price v2: estimated MAE rose to 3.10 from 2.00 over 5,000 predictions, before labels arrived."
    assert hint.parts[0]["metrics"][0]["estimated"] is True


# ---------------------------------------------------------------------- multivariate, other kinds
def test_multivariate_alone_names_its_top_features():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(4000, 1))
    ref = Reference({"a": base[:, 0], "b": base[:, 0] + 0.1 * rng.normal(size=4000), "c": rng.normal(size=4000)},
                    {"a": "numeric", "b": "numeric", "c": "numeric"})
    cur_a = rng.normal(size=W.n)
    cur = {"a": cur_a, "b": -cur_a + 0.1 * rng.normal(size=W.n), "c": rng.normal(size=W.n)}   # the same margins
    [pca] = PCAReconstructionDrift(ref).update(W, cur, "1")
    hint = root_cause_hint("housing", "1", states([pca]))
    tops = ", ".join(pca.evidence["top_features"])
    assert hint.text == (f"housing v1: inputs moved jointly (PCA reconstruction error {pca.effect_size:+.0%}; "
                         f"most: {tops}).")
    combined = root_cause_hint("housing", "1", states([*data_drift()[:1], pca])).parts[0]["text"]
    assert combined == f"inputs moved (Latitude 1.6σ; PCA reconstruction error {pca.effect_size:+.0%})"


def test_other_kinds_go_last():
    limits = {"housing": (60_000, None, "warning")}
    watch, _ = stale_decisions({}, {}, limits, now=0, started_at=0)
    _, stale = stale_decisions({}, watch, limits, now=800_000, started_at=0)
    assert [d.kind for d in stale] == ["stale_stream"]
    failure = failure_detection("housing", "detectors", stage="update", error=KeyError("x"), since=0, now=1,
                                failures=3, version="1")
    hint = root_cause_hint("housing", "1", states([*stale, failure, *accuracy_drop()]))
    assert step_names(hint) == ["metrics", "other"]
    assert hint.parts[1]["text"] == "also detectors failing (update: KeyError), no predictions for 13 min"
    assert hint.parts[1]["kinds"] == ["detector_failure", "stale_stream"]    # critical first


# ---------------------------------------------------------------------- active first, version, segment
def test_active_numbers_lead_and_resolved_members_are_still_named():
    alerts = states(data_drift())
    lat = next(a for a in alerts if a.feature == "Latitude")
    lat.status = "resolved"
    part = root_cause_hint("housing", "1", alerts).parts[0]
    assert part["text"].startswith("inputs moved (Longitude 1.3σ, MedInc 0.9σ, HouseAge 0.8σ, +4 more")
    assert lat.alert_id in part["alert_ids"] and part["features"][-1]["feature"] == "Latitude"


def test_version_from_the_alerts_and_segment():
    d = accuracy_drop()[0]
    d.evidence["segment"] = "coastal"
    d.model_version = "3"
    hint = root_cause_hint("housing", None, states([d]))
    assert hint.text.startswith("housing v3 (segment coastal): accuracy fell")
    assert hint.parts[0]["segments"] == ["coastal"]


def test_positive_class_without_a_score_column_and_with_one():
    rng = np.random.default_rng(6)
    ref = Reference({"prediction": rng.choice(["fraud", "ok"], 4000, p=[0.2, 0.8]),
                     "scores[fraud]": rng.beta(2, 8, 4000)}, {"prediction": "categorical", "scores[fraud]": "numeric"})
    det = UnivariateDrift(ref, kind="prediction_drift", calibration_n=W.n, calibration_draws=10)
    dets = det.update(W, {"prediction": rng.choice(["fraud", "ok"], W.n, p=[0.6, 0.4]).astype(object),
                          "scores[fraud]": rng.beta(6, 4, W.n)}, "1")
    pred = [d for d in dets if d.feature == "prediction"]
    named = root_cause_hint("housing", "1", states(dets)).parts[0]["text"]
    assert named.startswith("predictions shifted (positive rate 0.20 → 0.60, mean score of `fraud` 0.20 → 0.6")
    guessed = root_cause_hint("housing", "1", states(pred)).parts[0]["text"]
    assert guessed in ("predictions shifted (`ok` share 0.80 → 0.40)", "predictions shifted (`fraud` share 0.20 → 0.60)")


@pytest.mark.parametrize("classes", [["0", "1"], ["False", "True"], ["no", "yes"], ["negative", "positive"]])
def test_positive_candidates_agree_with_the_performance_detector(classes):
    assert positive_class(classes) in _POSITIVE and positive_class(classes) == next(c for c in _POSITIVE if c in classes)
