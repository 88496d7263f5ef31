"""Data-quality checks on injected defects: driftloop beside Evidently 0.7 (issue 18).

The data (seeded): a 5,000-row training sample (``amount`` log-normal euros, ``age`` whole
years, ``tenure_months`` gamma, ``country`` five values, ``channel`` three, and ``label``) and
six streams of 20,000 prediction events (the contract's ``event_id``, ``model``, ``ts`` in
epoch ms one second apart, ``features``, ``prediction``), each with one defect, injected from the
first event on:

=============  ==================================================================  ===================
stream         defect                                                               driftloop should
=============  ==================================================================  ===================
clean          none                                                                 stay silent
nulls          ``age`` null in 30% of the events                                    ``missing_rate``
new_category   ``country`` = ``"BR"`` (never in training) in 20% of the events      ``unseen_categories``
unit_x1000     ``amount`` × 1000 in every event                                     ``out_of_range``
strings        ``tenure_months`` sent as a JSON string (``"12.5"``) in 20%          ``type_change``
renamed        the key ``amount`` is ``amount_eur`` in every event                  ``schema_absent`` /
                                                                                    ``schema_new``
=============  ==================================================================  ===================

Contenders, on the same events and windows of 5,000 events against the same 5,000 rows:

* driftloop: :func:`driftloop.app.replay.replay` over the JSONL file, the live monitor's code
  (decoding, validation with its dead letters, dedupe, every default detector, the alert
  lifecycle on event time). What fired is read from the alert messages (kind, detector,
  feature); the seconds are the whole replay of 20,000 events. Beside it, the data-quality
  checks alone (``DataQuality.update`` on in-memory columns of one window), as a per-window
  figure comparable with Evidently's.
* Evidently 0.7, in its own virtualenv (``bench/.venv-evidently``: Evidently 0.7 does not
  import with pandas 3; created on first use with ``python3 -m venv`` and pip, as in
  ``bench/window_tests.py``). Each stream becomes a pandas frame of its events' ``features``
  (so a numeric field carrying some strings is an ``object`` column, and the renamed stream has
  ``amount_eur`` and no ``amount``), cut into the same four windows, each judged against the
  training sample (without ``label``) by two things Evidently ships: ``Report([DataSummaryPreset()],
  include_tests=True)`` (0.7's API; its tests are generated from the reference: each statistic
  equal to the reference's within 10%) and the classic data-quality tests, which 0.7 still ships
  as ``evidently.legacy``: ``TestSuite([DataStabilityTestPreset(), DataQualityTestPreset()])``
  (column types, out-of-range and out-of-list shares, missing shares, mean in 2 sigmas, ...).
  A test that failed (or errored) in any window is listed; one that also fails the same way on
  the clean stream is marked ``(also clean)``: it cannot tell the defect from no defect. A
  feature whose tests ran on the clean stream and not on this one is reported as ``column left
  out``; a report that raised instead of returning is counted per window.

Run: ``python bench/data_quality.py`` (a minute or so on 2 cores; ``--no-evidently``
to skip Evidently, ``--events``/``--window`` to change the sizes). Prints what each contender
flagged per stream, one side-by-side table and the timings. The script exits with status 1 if
driftloop misses a defect's check, fires a ``data_quality`` alert on the clean stream, or fires a
data-quality check the defect does not explain (a group page counts as its members).

How to read it: the ``driftloop`` column lists the data-quality alerts that fired (``check:feature``;
other kinds, e.g. the data drift a unit change also causes, are listed below the table); the
Evidently columns list the failed tests, shortest name first. Evidently's defaults compare
statistics with the reference's at zero or 10% tolerance, with no allowance for sampling noise,
so some tests fail on the clean stream too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.base import Window
from detectors.data_quality import DataQuality
from detectors.reference import Reference

sys.path.insert(0, str(ROOT / "bench"))
from window_tests import ensure_evidently  # the same venv as the window tests

MODEL = "loans"
FEATURES = {"amount": "numeric", "age": "numeric", "tenure_months": "numeric", "country": "categorical",
            "channel": "categorical"}
COUNTRIES, COUNTRY_P = ["DE", "FR", "US", "ES", "IT"], [0.4, 0.25, 0.2, 0.1, 0.05]
CHANNELS, CHANNEL_P = ["web", "app", "store"], [0.5, 0.4, 0.1]
# stream -> (what is injected, the data-quality alerts driftloop must fire: (check, feature))
DEFECTS: dict[str, tuple[str, set[tuple[str, str]]]] = {
    "clean": ("none", set()),
    "nulls": ("age null in 30% of events", {("missing_rate", "age")}),
    "new_category": ("country 'BR' in 20% of events", {("unseen_categories", "country")}),
    "unit_x1000": ("amount x 1000 in every event", {("out_of_range", "amount")}),
    "strings": ("tenure_months a string in 20%", {("type_change", "tenure_months")}),
    "renamed": ("amount renamed amount_eur", {("schema_absent", "amount"), ("schema_new", "amount_eur")}),
}

EVIDENTLY_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import logging
logging.disable(logging.WARNING)   # "Column ... have different types": said once per window, noise here
import pandas as pd
t_import = time.perf_counter()
import evidently
from evidently import Report
from evidently.presets import DataSummaryPreset
from evidently.legacy.test_suite import TestSuite
from evidently.legacy.test_preset import DataQualityTestPreset, DataStabilityTestPreset
t_import = time.perf_counter() - t_import
ref_path, window, streams = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ref = pd.read_csv(ref_path).drop(columns=["label"])

def frame(path):
    with open(path) as fh:
        return pd.DataFrame([json.loads(line)["features"] for line in fh if line.strip()])

def status(s):
    return str(s).rsplit(".", 1)[-1]

def summary_preset(cur):
    snap = Report([DataSummaryPreset()], include_tests=True).run(cur, ref)
    return [(t["name"], status(t["status"]), t["description"]) for t in snap.dict()["tests"]]

def legacy_suite(cur):
    suite = TestSuite(tests=[DataStabilityTestPreset(), DataQualityTestPreset()])
    suite.run(reference_data=ref, current_data=cur)
    out = []
    tests = list(suite._inner_suite.context.test_results)   # the test objects, in as_dict's order
    for test, t in zip(tests, suite.as_dict()["tests"]):
        col = getattr(test, "column_name", None)
        col = str(getattr(col, "name", col) or "")
        if t["name"] == "Column Types":   # name the columns whose type changed
            col = ", ".join(c["column_name"] for c in (t.get("parameters") or {}).get("columns", [])
                            if c.get("actual_type") != c.get("expected_type"))
        out.append((t["name"] + (f" [{col}]" if col else ""), status(t["status"]), t["description"]))
    return out

result = {"version": evidently.__version__, "seconds_import": t_import, "streams": {}}
for path in streams:
    name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    df = frame(path)
    res = {}
    for label, fn in (("summary", summary_preset), ("legacy", legacy_suite)):
        failed, seconds, errors, names = {}, [], [], set()
        for start in range(0, len(df) - window + 1, window):
            cur = df.iloc[start:start + window].reset_index(drop=True)
            t0 = time.perf_counter()
            try:
                tests = fn(cur)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                seconds.append(time.perf_counter() - t0)
                continue
            seconds.append(time.perf_counter() - t0)
            names.update(t[0] for t in tests)
            for tname, st, desc in tests:
                if st != "SUCCESS":
                    failed.setdefault(tname, {"status": st, "windows": 0, "example": desc[:240]})
                    failed[tname]["windows"] += 1
        res[label] = {"failed": failed, "seconds": seconds, "errors": errors, "names": sorted(names)}
    result["streams"][name] = res
print(json.dumps(result))
"""


# ----------------------------------------------------------------------------- data
def _draw(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """``n`` clean rows: the features and the true label of a loan-default model."""
    amount = np.round(rng.lognormal(3.5, 0.8, n), 2)
    age = rng.integers(18, 80, n).astype(float)
    tenure = np.round(rng.gamma(2.0, 12.0, n), 1)
    country = rng.choice(COUNTRIES, n, p=COUNTRY_P)
    channel = rng.choice(CHANNELS, n, p=CHANNEL_P)
    logit = 0.02 * (amount - 40) - 0.03 * (age - 45) - 0.02 * (tenure - 24) + 0.5 * (channel == "web") - 1.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"amount": amount, "age": age, "tenure_months": tenure, "country": country,
                         "channel": channel, "label": label})


def _predict(df: pd.DataFrame) -> np.ndarray:
    """The model: a fixed rule on the clean values (so no defect changes the predictions)."""
    logit = (0.02 * (df["amount"] - 40) - 0.03 * (df["age"] - 45) - 0.02 * (df["tenure_months"] - 24)
             + 0.5 * (df["channel"] == "web") - 1.0)
    return (logit > 0).astype(int).to_numpy()


def make_reference(rows: int, seed: int) -> pd.DataFrame:
    return _draw(np.random.default_rng(seed), rows)


def make_stream(kind: str, n: int, seed: int, t0: int) -> list[dict]:
    """``n`` contract prediction events of the stream ``kind`` (the same clean draws for every
    kind: only the defect differs)."""
    rng = np.random.default_rng(seed)
    df = _draw(rng, n)
    pred = _predict(df)
    hit = np.random.default_rng(seed + 1).random(n)    # which events carry a partial defect
    events = []
    for i, row in enumerate(df.drop(columns=["label"]).to_dict("records")):
        f = {"amount": float(row["amount"]), "age": float(row["age"]), "tenure_months": float(row["tenure_months"]),
             "country": str(row["country"]), "channel": str(row["channel"])}
        if kind == "nulls" and hit[i] < 0.3:
            f["age"] = None
        elif kind == "new_category" and hit[i] < 0.2:
            f["country"] = "BR"
        elif kind == "unit_x1000":
            f["amount"] = round(f["amount"] * 1000, 2)
        elif kind == "strings" and hit[i] < 0.2:
            f["tenure_months"] = str(f["tenure_months"])
        elif kind == "renamed":
            f = {("amount_eur" if k == "amount" else k): v for k, v in f.items()}
        events.append({"event_id": f"{kind}-{i}", "model": MODEL, "ts": t0 + i * 1000, "features": f,
                       "prediction": int(pred[i])})
    return events


def write_jsonl(path: Path, events: list[dict]) -> None:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")


# ----------------------------------------------------------------------------- driftloop
def run_driftloop(tmp: Path, name: str, events_path: Path, window: int) -> dict:
    from driftloop.app.replay import replay
    from driftloop.core.config import load_config_dict

    cfg = load_config_dict({
        "store": {"url": f"sqlite:///{tmp}/{name}.db"},
        "models": {MODEL: {"task": "classification", "features": FEATURES, "reference": "reference.csv",
                           "detectors": {"window_size": window}}},
    }, base_dir=str(tmp), environ={})
    seen: list[dict] = []
    t0 = time.perf_counter()
    out = replay(cfg, events_path, on_alert=seen.append, registry=False)
    seconds = time.perf_counter() - t0
    fired = [a for a in seen if a.get("status") == "firing"]
    found = []   # (kind, detector, feature): a group page's members count one by one
    for a in fired:
        members = (a.get("evidence") or {}).get("members") if a["detector"] == "group" else None
        found += [(a["kind"], m["detector"], m["feature"]) for m in members or [a]]
    stats = out["stats"]["models"][MODEL]
    return {"seconds": seconds, "records": out["records"], "alerts": fired, "resolved": len(seen) - len(fired),
            "predictions": stats["predictions"], "invalid": stats["invalid"],
            "dq": sorted({(d, f) for k, d, f in found if k == "data_quality"}),
            "other": sorted({(k, d, f) for k, d, f in found if k != "data_quality"})}


def time_checks(ref: pd.DataFrame, events: list[dict], window: int) -> list[float]:
    """Seconds of ``DataQuality.update`` per window on in-memory columns (numeric values that are
    not numbers dropped to NaN; no pipeline marks, their columns zero): the checks alone, as
    Evidently's figure is."""
    dq = DataQuality(Reference.from_frame(ref, FEATURES))
    times = []
    for w, start in enumerate(range(0, len(events) - window + 1, window)):
        chunk = [e["features"] for e in events[start:start + window]]
        cols = {}
        for name, kind in FEATURES.items():
            vals = [f.get(name) for f in chunk]
            if kind == "numeric":
                cols[name] = np.array([v if isinstance(v, float) else np.nan for v in vals], dtype=np.float64)
            else:
                cols[name] = np.array(vals, dtype=object)
        t0 = time.perf_counter()
        dq.update(Window(w, w + 1, window), {**cols, **dq.columns(None, window)})
        times.append(time.perf_counter() - t0)
    return times


# ----------------------------------------------------------------------------- Evidently
def run_evidently(py: Path, ref_path: Path, window: int, streams: list[Path]) -> dict | None:
    r = subprocess.run([str(py), "-c", EVIDENTLY_RUNNER, str(ref_path), str(window), *map(str, streams)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("# Evidently failed:\n" + r.stderr[-2000:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _short(test: str) -> str:
    """A test's name, shortened for the table."""
    for long, short in (("Share of Out-of-Range Values", "out-of-range"), ("Share of Out-of-List Values", "out-of-list"),
                        ("The Share of Missing Values in a Column", "missing share"),
                        ("Mean Value Stability", "mean in 2 sigmas"), ("Share of the Most Common Value", "top share"),
                        ("Column Types", "column types"), ("Number of Columns", "column count"),
                        ("Number of Rows", "row count"), ("Minimal value of", "min"), ("Maximum value of", "max"),
                        ("Mean value of", "mean"), ("Std value of", "std"), ("Quantile 0.25 of", "q25"),
                        ("Quantile 0.5 of", "q50"), ("Quantile 0.75 of", "q75"),
                        ("Column count in dataset", "column count"), ("Row count in dataset", "row count")):
        test = test.replace(long, short)
    test = test.replace("Column '", "'")
    return test.split(":")[0] if ": Equal" in test or ": Less" in test or ": Greater" in test else test


def _also_clean(test: str, result: dict, clean: dict) -> bool:
    """Whether ``test`` fails the same way (FAIL or ERROR) on the clean stream."""
    return clean["failed"].get(test, {}).get("status") == result["status"]


def evidently_findings(res: dict, clean: dict) -> tuple[list[str], list[str], list[str]]:
    """(failed tests new on this stream, failed tests that fail on the clean stream too, the
    features whose tests ran on the clean stream and not here: the column was left out)."""
    new = sorted({_short(t) + (" ERROR" if v["status"] == "ERROR" else "")
                  for t, v in res["failed"].items() if not _also_clean(t, v, clean)}, key=len)
    also = sorted({_short(t) for t, v in res["failed"].items() if _also_clean(t, v, clean)}, key=len)
    gone = set(clean["names"]) - set(res["names"])
    dropped = [f for f in FEATURES if any(f"'{f}'" in t or f"[{f}]" in t for t in gone)] if res["names"] else []
    return new, also, dropped


# ----------------------------------------------------------------------------- report
def driftloop_problems(ours: dict[str, dict]) -> list[str]:
    """What driftloop got wrong: a defect's check missing, a data_quality alert on the clean
    stream, or a data_quality check the defect does not explain."""
    problems = []
    for kind, (_what, expected) in DEFECTS.items():
        got = set(ours[kind]["dq"])
        if kind == "clean" and got:
            problems.append(f"clean stream: data_quality fired {sorted(got)}")
        missed = expected - got
        if missed:
            problems.append(f"{kind}: expected {sorted(missed)} did not fire (fired: {sorted(got) or 'none'})")
        extra = got - expected
        if kind != "clean" and extra:
            problems.append(f"{kind}: also fired {sorted(extra)}")
    return problems


def _evidently_cell(kind: str, res: dict, clean: dict) -> str:
    if kind == "clean":
        failed = sorted({_short(t) for t in res["failed"]}, key=len)
        return (f"{len(failed)} fail: " + ", ".join(failed)) if failed else "-"
    new, _also, dropped = evidently_findings(res, clean)
    cell = ", ".join(new)
    if dropped:
        cell += ("; " if cell else "") + f"no test on {', '.join(dropped)} (column left out)"
    if res["errors"]:
        cell += ("; " if cell else "") + f"the report raised in {len(res['errors'])} of {len(res['seconds'])} windows"
    return cell or "- (only the clean stream's failures)"


def print_table(ours: dict[str, dict], ev: dict | None, events: int, window: int, ref_rows: int) -> None:
    head = ["stream", "defect", "driftloop (data_quality fired)", "s"]
    if ev is not None:
        head += ["Evidently DataSummaryPreset (failed tests)", "s", "Evidently legacy data-quality tests", "s"]
    print(f"\n# {events:,} events per stream, windows of {window:,}, reference {ref_rows:,} rows; driftloop s = the "
          "whole replay (decode, validate, store, every detector, alerts); Evidently s = "
          f"{events // window} window reports on ready frames")
    print("# Evidently cells: tests failed in some window and not on the clean stream; "
          "the clean row lists what fails with no defect")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for kind, (what, _expected) in DEFECTS.items():
        r = ours[kind]
        row = [kind, what, ", ".join(f"{c}:{f}" for c, f in r["dq"]) or "-", f"{r['seconds']:.1f}"]
        if ev is not None:
            for label in ("summary", "legacy"):
                res = ev["streams"][kind][label]
                row += [_evidently_cell(kind, res, ev["streams"]["clean"][label]), f"{sum(res['seconds']):.1f}"]
        print(" | ".join(row))


def print_details(ours: dict[str, dict], ev: dict | None, events: int, window: int) -> None:
    print("\n# other alerts driftloop fired (not data_quality): kind/detector/feature")
    for kind in DEFECTS:
        print(f"  {kind:<13} " + (", ".join(f"{k}/{d}/{f or '-'}" for k, d, f in ours[kind]["other"]) or "-"))
    if ev is None:
        return
    print(f"\n# Evidently, every failed test per stream (windows failed of {events // window}; '(also clean)': "
          "fails on the clean stream too), and run errors")
    for kind in DEFECTS:
        for label in ("summary", "legacy"):
            res = ev["streams"][kind][label]
            clean = ev["streams"]["clean"][label]
            items = [f"{_short(t)} {v['status']} x{v['windows']}"
                     + (" (also clean)" if kind != "clean" and _also_clean(t, v, clean) else "")
                     + (f" ({v['example'][:90]})" if v["status"] == "ERROR" else "")
                     for t, v in sorted(res["failed"].items())]
            print(f"  {kind:<13} {label:<8} " + ("; ".join(items) or "-"))
            for e in sorted(set(res["errors"])):
                print(f"  {'':<13} {label:<8} the report raised: {e}")


def print_timings(ours: dict[str, dict], check_times: list[float], ev: dict | None, events: int,
                  window: int) -> None:
    print("\n# timings (seconds; one machine, shared: read the ratios)")
    replay_s = [r["seconds"] for r in ours.values()]
    print(f"driftloop replay of {events:,} events (whole pipeline, all default detectors): "
          f"median {np.median(replay_s):.2f} s per stream ({events / np.median(replay_s):,.0f} events/s)")
    print(f"driftloop DataQuality.update alone, per {window:,}-event window: median "
          f"{np.median(check_times) * 1000:.1f} ms (max {max(check_times) * 1000:.1f} ms)")
    if ev is None:
        return
    for label, title in (("summary", "Report([DataSummaryPreset()], include_tests=True)"),
                         ("legacy", "TestSuite([DataStabilityTestPreset(), DataQualityTestPreset()])")):
        per = [s for k in DEFECTS for s in ev["streams"][k][label]["seconds"]]
        print(f"Evidently {ev['version']} {title}, per window: median {np.median(per) * 1000:.0f} ms "
              f"({np.median(per) / np.median(check_times):,.0f}x driftloop's checks)")
    print(f"(Evidently's import: {ev['seconds_import']:.1f} s, once per process)")


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=5_000)
    ap.add_argument("--reference-rows", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--keep", help="write the reference and the streams to this folder and keep them")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="driftloop-dq-"))
    tmp.mkdir(parents=True, exist_ok=True)
    ref = make_reference(args.reference_rows, args.seed)
    ref.to_csv(tmp / "reference.csv", index=False)
    t0 = int(time.time() * 1000) - 2 * 86_400_000
    paths, streams = {}, {}
    for kind in DEFECTS:
        streams[kind] = make_stream(kind, args.events, args.seed + 100, t0)
        paths[kind] = tmp / f"{kind}.jsonl"
        write_jsonl(paths[kind], streams[kind])
    print(f"# model {MODEL!r}: {len(FEATURES)} features; reference {args.reference_rows:,} rows; "
          f"{args.events:,} events per stream; windows of {args.window:,}; seed {args.seed}; data in {tmp}"
          f"{'' if args.keep else ' (removed at the end; --keep DIR keeps it)'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    ours: dict[str, dict] = {}
    for kind in DEFECTS:
        ours[kind] = r = run_driftloop(tmp, kind, paths[kind], args.window)
        print(f"driftloop {kind:<13} {r['seconds']:6.2f} s  accepted {r['predictions']:,}, dead-lettered "
              f"{r['invalid']:,}; {len(r['alerts'])} alert(s) fired, {r['resolved']} resolved", flush=True)
        for a in r["alerts"]:
            print(f"    {a['kind']:<19} {a['detector']:<18} {a['feature'] or '-':<14} {a['severity']:<8} "
                  f"{a['summary'][:160]}")
    check_times = [t for kind in DEFECTS for t in time_checks(ref, streams[kind], args.window)]

    ev = None
    if not args.no_evidently:
        py = ensure_evidently()
        if py is None:
            print("# Evidently unavailable (venv or pip install failed): its columns are left out")
        else:
            ev = run_evidently(py, tmp / "reference.csv", args.window, [paths[k] for k in DEFECTS])

    print_table(ours, ev, args.events, args.window, args.reference_rows)
    print_details(ours, ev, args.events, args.window)
    print_timings(ours, check_times, ev, args.events, args.window)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# total {time.perf_counter() - t_start:.0f}s")
    problems = driftloop_problems(ours)
    if problems:
        print("\n# DRIFTLOOP PROBLEMS:")
        for p in problems:
            print("  " + p)
        return 1
    print("\n# driftloop: every defect's check fired, nothing of kind data_quality on the clean stream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
