"""Data quality through the real pipeline (`driftloop replay`: decoding, validation and its dead
letters, the dedupe, the journal's counts, the detectors, the alert lifecycle): each defect
injected into a stream of contract events pages its own `data_quality` check, and the clean stream
pages none."""
from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from driftloop.app.replay import replay
from driftloop.core.config import load_config_dict

N, WINDOW, START = 6000, 2000, 1_700_000_000_000


def clean(rng: np.random.Generator) -> list[dict]:
    return [{"event_id": f"e{i}", "model": "shop", "ts": START + i * 1000,
             "features": {"amount": float(rng.lognormal(3, 1)), "age": float(rng.integers(18, 80)),
                          "country": str(rng.choice(["DE", "FR", "US"]))},
             "prediction": int(rng.integers(0, 2))} for i in range(N)]


def after_first_window(fn):
    """Apply ``fn`` to each event's features (with the rng) from the second window on."""
    def inject(events, rng):
        for e in events[WINDOW:]:
            fn(e["features"], rng)
        return events
    return inject


def duplicated(events, rng):
    """A producer retrying: a tenth of the events from the second window on arrive twice in a row
    (a duplicate counts on the next new event; none follows the stream's last one)."""
    out = events[:WINDOW]
    for e in events[WINDOW:]:
        out += [e, dict(e)] if rng.random() < 0.1 else [e]
    return out


DEFECTS = {
    "nulls": (after_first_window(lambda f, r: f.update(age=None) if r.random() < 0.3 else None),
              {("missing_rate", "age")}),
    "new_category": (after_first_window(lambda f, r: f.update(country="BR") if r.random() < 0.2 else None),
                     {("unseen_categories", "country")}),
    "unit_x1000": (after_first_window(lambda f, r: f.update(amount=f["amount"] * 1000)),
                   {("out_of_range", "amount")}),
    "strings_in_numeric": (after_first_window(lambda f, r: f.update(amount=f"{f['amount']:.2f}") if r.random() < 0.2 else None),
                           {("type_change", "amount")}),
    "renamed": (after_first_window(lambda f, r: f.update(amount_eur=f.pop("amount"))),
                {("schema_absent", "amount"), ("schema_new", "amount_eur")}),
    "duplicates": (duplicated, {("duplicates", None)}),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dq")
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"amount": rng.lognormal(3, 1, 10_000), "age": rng.integers(18, 80, 10_000).astype(float),
                        "country": rng.choice(["DE", "FR", "US"], 10_000), "label": rng.integers(0, 2, 10_000)})
    ref.to_csv(tmp / "ref.csv", index=False)
    return tmp, {
        "models": {"shop": {"task": "classification", "reference": "ref.csv",
                            "features": {"amount": "numeric", "age": "numeric", "country": "categorical"},
                            "detectors": {"window_size": WINDOW, "warmup": 0, "multivariate": False,
                                          "calibration_draws": 20}}},
        "alerts": {"group_min": 1000, "group_window_s": 0, "hold_down_s": 0, "cooldown_s": 0},
    }


def paged(config, events: list[dict], name: str) -> list[dict]:
    tmp, data = config
    path = tmp / f"{name}.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    cfg = load_config_dict({**data, "store": {"url": f"sqlite:///{tmp}/{name}.db"}}, base_dir=tmp, environ={})
    got: list[dict] = []
    replay(cfg, path, on_alert=got.append)
    return [a for a in got if a["status"] == "firing"]


def test_the_clean_stream_pages_nothing(config):
    assert paged(config, clean(np.random.default_rng(1)), "clean") == []


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_injected_defect_pages_its_own_check(config, defect):
    inject, expected = DEFECTS[defect]
    rng = np.random.default_rng(2)
    alerts = paged(config, inject(clean(rng), rng), defect)
    quality = {(a["detector"], a["feature"]) for a in alerts if a["kind"] == "data_quality"}
    assert quality == expected, [(a["kind"], a["detector"], a["feature"]) for a in alerts]
    for a in alerts:
        if a["kind"] == "data_quality":
            assert a["segment"] is None and a["summary"].startswith("shop")


def test_the_checks_are_the_same_however_the_stream_is_cut(config):
    """Refused, duplicated, renamed events counted in the same windows whether the stream comes in
    batches of 2,000 or of 613 (live polls, a replay and a re-consumption after a crash cut it
    differently): the detector state is the same, byte for byte."""
    tmp, data = config
    rng = np.random.default_rng(3)
    events = clean(rng)
    for e in events[WINDOW:]:
        if rng.random() < 0.15:
            e["features"]["amount"] = "n/a"
        elif rng.random() < 0.1:
            e["features"]["amount_eur"] = e["features"].pop("amount")
    events = duplicated(events, rng)
    path = tmp / "cut.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    states, pages = [], []
    for size in (2000, 613):
        cfg = load_config_dict({**data, "store": {"url": f"sqlite:///{tmp}/cut-{size}.db"}}, base_dir=tmp, environ={})
        got: list[dict] = []
        result = replay(cfg, path, on_alert=got.append, batch_size=size)
        states.append(result["analyser"].monitors["shop"].snapshot())
        pages.append(sorted((a["kind"], a["detector"], str(a["feature"])) for a in got))
    assert states[0] == states[1] and pages[0] == pages[1]
    assert ("data_quality", "type_change", "amount") in pages[0]
