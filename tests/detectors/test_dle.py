"""DLE: textbook aggregation, tracking under covariate shift, band coverage, snapshots, monitor wiring."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from detectors.base import Window
from detectors.batch import LabelledBatch, PredictionBatch
from detectors.dle import DLE, DLE_METRICS
from detectors.model_monitor import ModelMonitor
from detectors.reference import Reference
from tests.detectors.contract import check_snapshot_restore, yield_checks

TYPES = {"a": "numeric", "x2": "numeric", "c": "categorical"}


def _stream(rng: np.random.Generator, n: int, lo: float = 0.0, hi: float = 3.0) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Heteroscedastic regression: noise sd ``0.3 + |a|`` (x1.5 in category "a"); ``|a|`` in
    ``[lo, hi]``. The model misses a small ``sin`` term of ``x2``."""
    a = rng.uniform(lo, hi, n) * rng.choice([-1, 1], n)
    x2 = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], n).astype(object)
    f = 20 + 2 * a + x2
    y = f + rng.normal(size=n) * (0.3 + np.abs(a)) * np.where(c == "a", 1.5, 1.0)
    return {"a": a, "x2": x2, "c": c}, y, f + 0.3 * np.sin(3 * x2)


@functools.cache
def _reference(n: int = 4000) -> Reference:
    feats, y, pred = _stream(np.random.default_rng(0), n)
    return Reference(feats, TYPES, "regression", label=y, prediction=pred)


@functools.cache
def _fitted() -> DLE:
    """A shared DLE for read-only use (estimate, predicted_losses)."""
    return DLE(_reference())


def _realised(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    e = y - pred
    mse = float(np.mean(e * e))
    msle = float(np.mean((np.log1p(y) - np.log1p(pred)) ** 2))      # sklearn's mean_squared_log_error
    return {"mae": float(np.mean(np.abs(e))), "mse": mse, "rmse": float(np.sqrt(mse)),
            "mape": float(np.mean(np.abs(e) / np.abs(y))), "msle": msle, "rmsle": float(np.sqrt(msle))}


# ------------------------------------------------------------------ aggregation
def test_window_aggregation_is_the_textbook_formula() -> None:
    est = _fitted()
    feats, _, pred = _stream(np.random.default_rng(1), 300)
    loss = est.predicted_losses(feats, pred)
    out = est.estimate(feats, pred)
    assert out["mae"]["estimate"] == pytest.approx(np.mean(loss["abs"]), rel=1e-12)
    assert out["mse"]["estimate"] == pytest.approx(np.mean(loss["sq"]), rel=1e-12)
    assert out["rmse"]["estimate"] == pytest.approx(np.sqrt(np.mean(loss["sq"])), rel=1e-12)
    assert out["mape"]["estimate"] == pytest.approx(np.mean(loss["ape"]), rel=1e-12)


def test_hand_checked_tiny_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Predicted losses fixed by hand: MAE 2.5, MSE 7.5, RMSE sqrt(7.5); the band from the
    stated formula ``sqrt(k^2 sum(a^2) / n^2 + se_model^2)``."""
    est = DLE(_reference(), metrics=("mae", "rmse"))
    fixed = {"abs": np.array([1.0, 2.0, 3.0, 4.0]), "sq": np.array([1.0, 4.0, 9.0, 16.0])}
    monkeypatch.setattr(est, "predicted_losses", lambda cols, pred: fixed)
    est._k2 = {"abs": 0.25, "sq": 2.0}
    est._se_model = {"abs": 0.0, "sq": 0.5}
    out = est.estimate({}, np.zeros(4))
    z = norm.isf(0.025)
    se_abs = np.sqrt(0.25 * 30 / 16)
    assert out["mae"]["estimate"] == 2.5
    assert out["mae"]["band"] == pytest.approx([2.5 - z * se_abs, 2.5 + z * se_abs])
    se_sq = np.sqrt(2.0 * (1 + 16 + 81 + 256) / 16 + 0.25)
    assert out["rmse"]["estimate"] == pytest.approx(np.sqrt(7.5))
    assert out["rmse"]["band"] == pytest.approx([np.sqrt(max(7.5 - z * se_sq, 0)), np.sqrt(7.5 + z * se_sq)])


def test_constant_loss_is_estimated_exactly() -> None:
    """Every reference error is +-1: the loss models learn 1, so MAE = RMSE = 1."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=600)
    y = x + rng.choice([-1.0, 1.0], 600) + 10
    est = DLE(Reference({"x": x}, {"x": "numeric"}, "regression", label=y, prediction=x + 10),
              metrics=("mae", "mse", "rmse"))
    assert est.baseline == pytest.approx({"mae": 1.0, "mse": 1.0, "rmse": 1.0})
    out = est.estimate({"x": rng.normal(size=50)}, np.zeros(50))
    assert out["mae"]["estimate"] == pytest.approx(1.0) and out["rmse"]["estimate"] == pytest.approx(1.0)


def test_reference_baseline_is_honest_and_metrics_default() -> None:
    est = _fitted()
    assert est.metrics == DLE_METRICS
    ref = _reference()
    assert ref.label is not None and ref.prediction is not None
    real = _realised(ref.label, ref.prediction)
    for m in DLE_METRICS:
        assert est.baseline[m] == pytest.approx(real[m], rel=1e-12)
        # out-of-fold estimate on the reference: close to the realised value
        # the log-error model's honest estimate is a little looser (its target is heavy-tailed)
        assert est.reference_estimate[m] == pytest.approx(real[m], rel=0.1 if m in ("msle", "rmsle") else 0.05)
    zero = Reference({"x": np.arange(100.0)}, {"x": "numeric"}, "regression", label=np.arange(100.0),
                     prediction=np.arange(100.0) + 1)
    assert "mape" not in DLE(zero, max_iter=5).metrics   # a zero label: MAPE left out


def test_rejects_references_without_labels_or_predictions() -> None:
    ref = _reference()
    with pytest.raises(ValueError, match="labels and predictions"):
        DLE(Reference(ref.features, TYPES, "regression", label=ref.label))
    with pytest.raises(ValueError, match="unknown DLE metrics"):
        DLE(ref, metrics=("r2",))


# ------------------------------------------------------------------ behaviour
def test_estimate_follows_realised_under_covariate_shift_and_alerts() -> None:
    est = DLE(_reference(), min_n=100)
    rng = np.random.default_rng(3)
    fired: list[str] = []
    for w in range(6):   # stationary
        feats, y, pred = _stream(rng, 1000)
        fired += [d.detector for d in est.update(Window(w * 1000, w * 1000 + 999, 1000), feats, pred)]
    assert fired == []
    errs: dict[str, list[float]] = {m: [] for m in DLE_METRICS}
    for w in range(6, 12):   # the live data moves to large |a| (within the reference's range)
        feats, y, pred = _stream(rng, 1000, lo=1.5)
        out = est.update(Window(w * 1000, w * 1000 + 999, 1000), feats, pred)
        fired += [d.detector for d in out if d.firing]
        last = est.last()["metrics"]
        real = _realised(y, pred)
        for m in DLE_METRICS:
            errs[m].append(last[m]["value"] / real[m] - 1)
    assert sorted(fired) == ["dle_mae", "dle_mape", "dle_mse", "dle_msle", "dle_rmse", "dle_rmsle"]
    for m in ("mae", "rmse", "mse"):
        assert abs(np.mean(errs[m])) < 0.05, (m, errs[m])
    d = est.update(Window(12_000, 12_999, 1000), *_stream(rng, 1000, lo=1.5)[::2])  # no new transition
    assert d == []
    assert est.firing() == ["mae", "mse", "rmse", "mape", "msle", "rmsle"]


def test_detection_evidence() -> None:
    est = DLE(_reference(), metrics=("mae",))
    feats, _, pred = _stream(np.random.default_rng(4), 2000, lo=2.0)
    (d,) = est.update(Window(0, 1, 2000), feats, pred, "v7")
    assert d.kind == "performance" and d.detector == "dle_mae" and d.firing and d.model_version == "v7"
    ev = d.evidence
    assert {"estimate", "band", "baseline", "window_n"} <= set(ev)
    assert ev["window_n"] == 2000 and ev["baseline"] == est.baseline["mae"]
    assert ev["band"][0] > ev["baseline"] and ev["estimate"] == d.statistic
    assert d.threshold == pytest.approx(ev["baseline"] * 1.05)
    assert d.severity == "critical"   # +50% is beyond 2.5 x 5%
    # back to the reference's mix: resolves after resolve_after clean windows
    rng = np.random.default_rng(5)
    outs = [est.update(Window(i, i, 2000), *_stream(rng, 2000)[::2]) for i in range(2)]
    assert outs[0] == [] and [x.firing for x in outs[1]] == [False]


def test_band_coverage_on_a_stationary_stream() -> None:
    """The realised MAE and RMSE fall inside the 95% band in about 95% of 100 windows
    (measured over 300 windows: MAE 0.93, RMSE 0.98 at 400 rows; 0.98, 0.97 at 1000 rows)."""
    est = _fitted()
    rng = np.random.default_rng(6)
    inside = {"mae": 0, "rmse": 0}
    for _ in range(100):
        feats, y, pred = _stream(rng, 400)
        out = est.estimate(feats, pred)
        real = _realised(y, pred)
        for m in inside:
            lo, hi = out[m]["band"]
            inside[m] += lo <= real[m] <= hi
    assert 0.88 <= inside["mae"] / 100 <= 1.0, inside
    assert 0.88 <= inside["rmse"] / 100 <= 1.0, inside


def test_realised_metrics_join_the_estimates() -> None:
    est = DLE(_reference(), min_n=10)
    rng = np.random.default_rng(7)
    feats, y, pred = _stream(rng, 500)
    est.update(Window(100, 599, 500), feats, pred)
    est.update(Window(600, 1099, 500), *_stream(rng, 500)[::2])
    ts = np.arange(100, 600)
    est.update_labels(ts[:200], pred[:200], y[:200])
    est.update_labels(ts[200:], pred[200:], y[200:])
    first, second = est.history_table()
    real = _realised(y, pred)
    assert first["realised_n"] == 500 and second["realised_n"] == 0
    for m in DLE_METRICS:
        assert first["metrics"][m]["realised"] == pytest.approx(real[m], rel=1e-9)
        assert second["metrics"][m]["realised"] is None
        assert first["metrics"][m]["value"] == est._history[0]["metrics"][m]["value"]


# ------------------------------------------------------------------ state
def _feed(det: DLE, rng: np.random.Generator) -> Any:
    feats, y, pred = _stream(rng, 300, lo=float(rng.choice([0.0, 2.0])))
    t0 = int(rng.integers(0, 10**6))
    out = det.update(Window(t0, t0 + 299, 300), feats, pred)
    det.update_labels(np.arange(t0, t0 + 300), pred, y)
    return [*out, det.last(), det.history_table()]


@functools.cache
def _small_reference() -> Reference:
    feats, y, pred = _stream(np.random.default_rng(8), 1500)
    return Reference(feats, TYPES, "regression", label=y, prediction=pred)


def test_snapshot_restore_round_trip() -> None:
    """The snapshot holds no sklearn model; the restored DLE refits them and continues exactly."""
    check_snapshot_restore(lambda: DLE(_small_reference(), min_n=50), _feed)
    a = DLE(_small_reference(), min_n=50)
    rng = np.random.default_rng(9)
    _feed(a, rng)
    b = DLE.restore(a.snapshot())
    feats, _, pred = _stream(np.random.default_rng(10), 300)
    la, lb = a.predicted_losses(feats, pred), b.predicted_losses(feats, pred)
    assert all(np.array_equal(la[k], lb[k]) for k in la)
    assert b"HistGradientBoosting" not in a.snapshot()


@pytest.mark.parametrize("check", [c for c in yield_checks(DLE) if c is not check_snapshot_restore],
                         ids=lambda c: c.__name__)
def test_detector_contract(check: Any) -> None:
    """The generic detector contract (as tests/detectors/test_contract.py runs it)."""
    check(lambda: DLE(_small_reference(), min_n=50, max_iter=30), _feed)


# ------------------------------------------------------------------ model monitor
def _frame(rng: np.random.Generator, n: int, lo: float = 0.0) -> pd.DataFrame:
    feats, y, pred = _stream(rng, n, lo=lo)
    return pd.DataFrame({**feats, "label": y, "prediction": pred})


def test_model_monitor_emits_dle_detections_and_history_rows(tmp_path: Path) -> None:
    from driftloop.core.store import Store
    from driftloop.monitoring.history import performance_history, record_detector_statistics

    mon = ModelMonitor("reg", "regression", TYPES, _frame(np.random.default_rng(11), 3000),
                       {"window_size": 1000, "warmup": 0, "multivariate": False, "calibration_draws": 10,
                        "bootstrap": 30, "prediction_drift": False})
    assert mon._dle is not None
    rng = np.random.default_rng(12)
    store = Store(f"sqlite:///{tmp_path}/h.db")
    store.create_schema()
    found = []
    for w in range(4):
        df = _frame(rng, 1000, lo=0.0 if w < 2 else 2.0)
        ts = np.arange(w * 1000, (w + 1) * 1000, dtype=np.int64)
        feats = {f: df[f].to_numpy() for f in TYPES}
        out = mon.update_predictions(PredictionBatch(ts, feats, df.prediction.to_numpy(), None, [], "v1"))
        found += [d.detector for d in out if d.detector.startswith("dle_")]
        mon.update_labelled(LabelledBatch(ts, df.prediction.to_numpy(), df.label.to_numpy(), None, [], model_version="v1"))
        with store.transaction() as conn:
            record_detector_statistics(conn, "reg", mon.status(), 1000 + w)
    assert {"dle_mae", "dle_rmse"} <= set(found)
    st = mon.status()["dle"]
    assert set(st["baseline"]) == set(DLE_METRICS) and st["last"]["n"] == 1000
    assert st["history"][0]["metrics"]["mae"]["realised"] is not None
    with store.engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(
            performance_history.select().where(performance_history.c.source == "estimated")
            .order_by(performance_history.c.id))]
    store.dispose()
    assert len(rows) == 4 * len(DLE_METRICS)
    assert {r["metric"] for r in rows} == set(DLE_METRICS)
    last = [r for r in rows if r["window_end"] == 3999]
    assert {r["metric"]: r["degraded"] for r in last} == dict.fromkeys(DLE_METRICS, True)
    mae = next(r for r in last if r["metric"] == "mae")
    assert mae["value"] == pytest.approx(st["last"]["metrics"]["mae"]["value"])
    assert mae["ci_low"] < mae["value"] < mae["ci_high"] and mae["baseline"] == pytest.approx(st["baseline"]["mae"])
    assert mae["model_version"] == "v1" and mae["n"] == 1000
    # snapshot/restore of the monitor: same next outputs
    again = ModelMonitor.restore(mon.snapshot())
    df = _frame(np.random.default_rng(13), 1000, lo=2.0)
    ts = np.arange(4000, 5000, dtype=np.int64)
    batch = PredictionBatch(ts, {f: df[f].to_numpy() for f in TYPES}, df.prediction.to_numpy(), None, [], "v1")
    assert [d.to_dict() for d in mon.update_predictions(batch)] == [d.to_dict() for d in again.update_predictions(batch)]
    assert mon.snapshot() == again.snapshot()


def test_model_monitor_settings_turn_dle_off() -> None:
    ref = _frame(np.random.default_rng(14), 500)
    off = ModelMonitor("reg", "regression", TYPES, ref, {"dle": False, "multivariate": False, "calibration_draws": 5})
    assert off._dle is None and "dle" not in off.status()
    nopred = ModelMonitor("reg", "regression", TYPES, ref.drop(columns="prediction"),
                          {"multivariate": False, "calibration_draws": 5})
    assert nopred._dle is None
    tiny = ModelMonitor("reg", "regression", TYPES, ref.head(30), {"multivariate": False, "calibration_draws": 5})
    assert tiny._dle is None   # too few reference rows to learn the loss from
