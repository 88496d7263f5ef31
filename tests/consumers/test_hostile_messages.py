"""Hostile messages through the real path: prepare() (decode + validate) then commit() on SQLite.

Each case puts the hostile value between two valid events of the same topic (and a valid event
of the other model) in ONE batch and checks: nothing escapes, the counters, the dead letter's
reason and shape, and that the valid events of the batch are kept. The decisions these tests pin
down are documented in docs/operations.md, "Hostile input".
"""
from __future__ import annotations

import itertools
import time
import tracemalloc
from typing import Any

import orjson
import pytest

from consumers.ingest import commit, prepare
from consumers.validation import MIN_TS_MS, parse_ts
from driftloop.app.stats import collect_stats
from driftloop.core.config import load_config_dict
from driftloop.kafka.dead_letters import MAX_RECORD_BYTES
from tests.consumers.test_ingest_unit import NOW, Rec, cfg, label, pred, store  # noqa: F401 - fixtures

DAY_MS = 86_400_000


def _price(i: int) -> dict[str, Any]:
    return pred(i, model="price", features={"x": float(i)}, prediction=1.5)


_partitions = itertools.count()


def _dlq(store, skip: int = 0) -> list[dict[str, Any]]:
    rows = store.unsent_outbox(1_000_000)[skip:]
    for row in rows:
        assert len(row.value) <= MAX_RECORD_BYTES
    return [orjson.loads(row.value) for row in rows]


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {"models": {m: {k: v - before["models"][m][k] for k, v in c.items() if isinstance(v, int)}
                       for m, c in after["models"].items()},
            "unattributed": {"invalid": after["unattributed"]["invalid"] - before["unattributed"]["invalid"]},
            "totals": {k: v - before["totals"][k] for k, v in after["totals"].items()}}


def run_hostile(store, cfg, hostile: list[bytes | None], *, topic: str = "predictions",
                accepted: int = 0, start: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One batch: a valid event, the hostile values, a valid event, a valid event of the other model.

    Checks that the batch commits, that the three valid events (plus ``accepted`` hostile ones)
    are stored, that every other input is dead-lettered and counted once; returns this batch's
    dead letters and counter changes. Each call uses a partition of its own; ``start`` keeps the
    valid events' ids apart between calls of one test.
    """
    P, L = cfg.topics.predictions, cfg.topics.labels
    tp = P if topic == "predictions" else L
    good = (lambda i: pred(i)) if tp == P else (lambda i: label(i))
    other = _price if tp == P else (lambda i: label(i, model="price", value=1.5))
    values = [orjson.dumps(good(start + 900_001)), *hostile, orjson.dumps(good(start + 900_002)),
              orjson.dumps(other(start + 900_003))]
    part = next(_partitions)
    records = [Rec(tp, part, i, v) for i, v in enumerate(values)]
    before = collect_stats(cfg, store)
    seen = len(store.unsent_outbox(1_000_000))
    batch = prepare(records, cfg, NOW)
    commit(store, cfg, batch, group="g", expected={k: None for k in batch.next_offsets}, now=NOW)
    stats = _delta(before, collect_stats(cfg, store))
    side = "predictions" if tp == P else "labels"
    stored = stats["models"]["fraud"][side] + stats["models"]["price"][side]
    assert stored == 3 + accepted, stats
    dead = _dlq(store, seen)
    assert len(dead) == stats["totals"]["invalid"]
    for d in dead:
        assert d["error"] and d["source_topic"] == tp and d["partition"] == part
        assert 1 <= d["offset"] <= len(hostile)
        assert d["raw_encoding"] in ("text", "base64")
    return dead, stats


def one_reason(store, cfg, value: bytes | None, **kw: Any) -> str:
    dead, _ = run_hostile(store, cfg, [value], **kw)
    assert len(dead) == 1, dead
    return dead[0]["error"]


def with_ts(ts: Any, side: str = "predictions") -> bytes:
    ev = pred(1) if side == "predictions" else label(1)
    if isinstance(ts, int) and not -(2**63) <= ts < 2**63:    # orjson writes 64-bit integers only
        return orjson.dumps(ev | {"ts": 0}).replace(b'"ts":0', b'"ts":%d' % ts)
    return orjson.dumps(ev | {"ts": ts})


# --- size ---------------------------------------------------------------------------------------

def test_ten_megabyte_message_is_refused_by_size_cheaply_and_truncated(cfg, store):
    big = b'{"event_id":"big","model":"fraud","features":{"text":"' + b"x" * 10_000_000 + b'"}}'
    tracemalloc.start()
    t0 = time.perf_counter()
    batch = prepare([Rec(cfg.topics.predictions, 0, 1, big)], cfg, NOW)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"10 MB message refused in {elapsed * 1000:.2f} ms, peak {peak / 1024:.0f} KiB")
    assert peak < 1_000_000          # never decoded: decoding 10 MB would allocate far more
    assert len(batch.dead_letters) == 1
    dead, stats = run_hostile(store, cfg, [big])
    assert dead[0]["error"] == f"message too large: {len(big)} bytes > limit 1048576"
    assert dead[0]["raw_truncated"] is True and len(dead[0]["raw"]) == 4096
    assert dead[0]["raw"].startswith('{"event_id":"big"') and dead[0]["model"] is None
    assert stats["unattributed"]["invalid"] == 1


def test_message_just_under_the_limit_dead_letter_fits_a_default_broker(cfg, store):
    # ~1 MiB of quotes: JSON-escaped in the dead letter it would double, past Kafka's 1 MiB default
    raw = b'{"event_id":"q","model":"fraud","x":"' + b'\\"' * 520_000 + b'"}'
    assert len(raw) <= cfg.ingest.max_message_bytes
    dead, _ = run_hostile(store, cfg, [raw])
    assert "missing required field" in dead[0]["error"]
    assert dead[0]["raw_truncated"] is True
    assert raw.decode().startswith(dead[0]["raw"])


def test_cut_dead_letter_keeps_utf8_text(cfg, store):
    big = '{"event_id":"é","model":"fraud","f":"'.encode() + "é".encode() * 700_000
    dead, _ = run_hostile(store, cfg, [big])
    assert dead[0]["raw_encoding"] == "text" and dead[0]["raw_truncated"] is True
    assert big.decode().startswith(dead[0]["raw"])


def test_a_million_features_is_refused_at_decode_in_bounded_time(store):
    cfg = load_config_dict({"ingest": {"max_message_bytes": 32 << 20}, "models": {
        "fraud": {"task": "classification", "features": {"amount": "numeric", "country": "categorical"}},
        "price": {"task": "regression", "features": {"x": "numeric"}}}}, environ={})
    raw = orjson.dumps(pred(7) | {"features": {f"f{i}": 1.0 for i in range(1_000_000)}})
    t0 = time.perf_counter()
    dead, stats = run_hostile(store, cfg, [raw])
    elapsed = time.perf_counter() - t0
    print(f"1,000,000 features ({len(raw) / 2**20:.1f} MiB) refused in {elapsed:.2f} s")
    assert dead[0]["error"] == "features: 1000000 features > limit 2000"
    assert dead[0]["raw_truncated"] is True and stats["models"]["fraud"]["invalid"] == 1
    assert elapsed < 30


def test_max_features_within_the_byte_limit(cfg, store):
    feats = {f"f{i}": 1 for i in range(80_000)}
    raw = orjson.dumps(pred(7) | {"features": feats})
    assert len(raw) < cfg.ingest.max_message_bytes
    reason = one_reason(store, cfg, raw)
    assert reason == "features: 80000 features > limit 2000"
    # the same inside an array with a valid event: the valid one is kept
    arr = orjson.dumps([pred(8), pred(9) | {"features": feats}])
    dead, _ = run_hostile(store, cfg, [arr], accepted=1, start=100)
    assert [d["error"] for d in dead] == ["features: 80000 features > limit 2000"]


# --- nesting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,needle", [
    (b"[" * 100_000 + b"]" * 100_000, "$[0]"),
    (b"{" * 100_000, "JSON"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    (orjson.dumps(pred(1))[:-1] + b',"extra":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (orjson.dumps(pred(1))[:-1] + b',"deep":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
     "nested too deeply"),
])
def test_deep_nesting_is_refused_without_recursion_error(cfg, store, raw, needle):
    assert needle in one_reason(store, cfg, raw)


def test_deep_nesting_inside_an_array(cfg, store):
    # nested beyond msgspec's limit (about 1000 levels): the message is refused whole, cheaply
    arr = b"[" + orjson.dumps(pred(1)) + b"," + b"[" * 50_000 + b"]" * 50_000 + b"," + orjson.dumps(pred(2)) + b"]"
    dead, _ = run_hostile(store, cfg, [arr])
    assert dead[0]["error"] == "Expected `object`, got `array` - at `$[1]`"
    arr = b"[" + orjson.dumps(pred(1)) + b"," + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]"
    dead, _ = run_hostile(store, cfg, [arr], start=5)
    assert dead[0]["error"] == "JSON nested too deeply" and dead[0]["raw_truncated"] is True
    # within it: the element is refused, its neighbours kept
    arr = b"[" + orjson.dumps(pred(3)) + b"," + b"[" * 500 + b"]" * 500 + b"," + orjson.dumps(pred(4)) + b"]"
    dead, _ = run_hostile(store, cfg, [arr], accepted=2, start=10)
    assert dead[0]["error"] == "event [1]: Expected `object`, got `array`"


def test_deep_nesting_on_the_labels_topic(cfg, store):
    # (a label may be an object since contract v1.1, a ranking model's item -> relevance: the
    # reason names the field inside it)
    assert "at `$.label" in one_reason(store, cfg, b'{"label":' * 100_000, topic="labels")
    assert "nested too deeply" in one_reason(store, cfg, b'{"x":' * 100_000, topic="labels", start=10)


# --- schema versions ----------------------------------------------------------------------------

@pytest.mark.parametrize("version,needle", [
    (2, "unknown schema_version 2 (this driftloop reads 1)"),
    (-1, "unknown schema_version -1"),
    (0, "unknown schema_version 0"),
    ("1", "Expected `int`, got `str` - at `$.schema_version`"),
    (1.0, "Expected `int`, got `float` - at `$.schema_version`"),
    (None, "Expected `int`, got `null` - at `$.schema_version`"),
    (True, "Expected `int`, got `bool` - at `$.schema_version`"),
])
def test_unknown_schema_versions(cfg, store, version, needle):
    assert needle in one_reason(store, cfg, orjson.dumps(pred(1, schema_version=version)))
    assert needle in one_reason(store, cfg, orjson.dumps(label(1) | {"schema_version": version}),
                                topic="labels", start=10)


def test_huge_schema_version(cfg, store):
    raw = orjson.dumps(pred(1))[:-1] + b',"schema_version":%d}' % 2**80
    assert f"unknown schema_version {2**80}" in one_reason(store, cfg, raw)


# --- timestamps ---------------------------------------------------------------------------------

SKEW_MS = 86_400_000

TS_CASES = [
    # (ts, reason fragment or None when accepted)
    (NOW + SKEW_MS - 1000, None),                          # within ingest.max_future_skew_s
    (NOW + SKEW_MS + 1000, "further in the future than ingest.max_future_skew_s allows; clock skew?"),
    ("9999-12-31T23:59:59Z", "further in the future"),
    ("9999-12-31T23:59:59-14:00", "further in the future"),
    (2**63 - 1, "further in the future"),
    (2**63, "further in the future"),
    (2**80, "further in the future"),
    (NOW * 1000, "epoch microseconds or nanoseconds?"),
    (NOW * 1_000_000, "epoch microseconds or nanoseconds?"),
    (NOW // 1000, "before 1973-03-03 as epoch milliseconds; epoch seconds?"),
    (MIN_TS_MS - 1, "epoch seconds?"),
    (MIN_TS_MS, None),
    (0, "before 1973-03-03T09:46:40Z"),
    (-1, "Expected `int` >= 0 - at `$.ts`"),
    (-(2**80), "at `$.ts`"),
    ("1969-12-31T23:59:59Z", "before 1973-03-03T09:46:40Z"),
    ("1970-01-01T00:00:00Z", "before 1973"),
    ("0001-01-01T00:00:00Z", "before 1973"),
    ("0000-01-01T00:00:00Z", "year 0 is out of range"),
    ("2025-10-09T08:00:00", "needs a time-zone offset"),
    ("2025-10-09T08:00:00.123", "needs a time-zone offset"),
    ("2016-12-31T23:59:60Z", None),                        # leap second: the next second
    ("2024-02-30T00:00:00Z", "day is out of range for month"),
    ("2023-02-29T00:00:00Z", "day is out of range for month"),
    ("2024-02-29T00:00:00Z", None),
    ("2024-13-01T00:00:00Z", "month must be in 1..12"),
    ("2024-01-01T24:00:00Z", "time 24:00:00 out of range"),
    ("2024-01-01T23:61:00Z", "out of range"),
    ("2024-01-01T00:00:61Z", "out of range"),
    ("2024-01-01T00:00:00+24:00", "time-zone offset +24:00 out of range"),
    ("2024-01-01T00:00:00+05:60", "out of range"),
    ("2024-01-01t00:00:00z", None),                        # RFC 3339 5.6: case-insensitive T and Z
    ("2024-01-01 00:00:00+00:00", None),                   # ... and a space for T
    ("2024-01-01T00:00:00.123456789-00:00", None),
    ("2024-W01-1T00:00:00Z", "not an RFC 3339 date-time"),
    ("20240101T000000Z", "not an RFC 3339 date-time"),
    ("2024-01-01", "not an RFC 3339 date-time"),
    ("2024-01-01T00:00Z", "not an RFC 3339 date-time"),
    ("2024-01-01T00:00:00,5Z", "not an RFC 3339 date-time"),
    ("２０２４-01-01T00:00:00Z", "not an RFC 3339 date-time"),   # full-width digits
    ("yesterday-ish", "not an RFC 3339 date-time"),
    ("x", "Expected `str` of length >= 10 - at `$.ts`"),
    (1.7e12, "Expected `int | str`, got `float` - at `$.ts`"),
    (None, "at `$.ts`"),
]


@pytest.mark.parametrize("ts,needle", TS_CASES, ids=[str(c[0])[:30] for c in TS_CASES])
def test_timestamps(cfg, store, ts, needle):
    raw = with_ts(ts)
    if needle is None:
        dead, _ = run_hostile(store, cfg, [raw], accepted=1)
        assert dead == []
    else:
        assert needle in one_reason(store, cfg, raw)


@pytest.mark.parametrize("ts,needle", [(NOW // 1000, "epoch seconds?"), ("2024-02-30T00:00:00Z", "day is out"),
                                       (2**70, "further in the future"), ("2016-06-30T23:59:60Z", None)])
def test_label_timestamps(cfg, store, ts, needle):
    raw = with_ts(ts, "labels")
    if needle is None:
        assert run_hostile(store, cfg, [raw], topic="labels", accepted=1)[0] == []
    else:
        assert needle in one_reason(store, cfg, raw, topic="labels")


def test_leap_second_is_the_next_second():
    assert parse_ts("2016-12-31T23:59:60Z") == parse_ts("2017-01-01T00:00:00Z")
    assert parse_ts("2016-12-31T23:59:60.5Z") == parse_ts("2017-01-01T00:00:00.5Z")


def test_nanosecond_fraction_rounds_to_the_millisecond():
    assert parse_ts("2024-01-01T00:00:00.0004999Z") == parse_ts("2024-01-01T00:00:00Z")
    assert parse_ts("2024-01-01T00:00:00.0005Z") == parse_ts("2024-01-01T00:00:00.001Z")
    assert parse_ts("2024-01-01T00:00:00.9996Z") == parse_ts("2024-01-01T00:00:01Z")


# --- floods -------------------------------------------------------------------------------------

def _small(i: int) -> dict[str, Any]:       # ~100 bytes: max_events_per_message of them fit in 1 MiB
    return {"event_id": f"e{i}", "model": "fraud", "ts": NOW - 1000, "features": {"amount": 1.0}, "prediction": 1}


def test_one_message_with_max_events_per_message_and_duplicates(cfg, store):
    n = cfg.ingest.max_events_per_message
    events = [_small(i % (n - 2000)) for i in range(n)]          # the last 2000 repeat earlier ids
    raw = orjson.dumps(events)
    assert len(raw) <= cfg.ingest.max_message_bytes
    P = cfg.topics.predictions
    records = [Rec(P, 0, 0, raw), Rec(P, 1, 0, orjson.dumps(_price(1))), Rec(P, 1, 1, orjson.dumps(_price(2)))]
    tracemalloc.start()
    t0 = time.perf_counter()
    batch = prepare(records, cfg, NOW)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{n} events in one message: prepare {elapsed * 1000:.0f} ms (traced), peak {peak / 2**20:.1f} MiB")
    assert peak < 2_000 * n                                    # bounded: about 1 KiB per event
    commit(store, cfg, batch, group="g", expected={k: None for k in batch.next_offsets}, now=NOW)
    s = collect_stats(cfg, store)["models"]
    assert (s["fraud"]["predictions"], s["fraud"]["duplicates"], s["fraud"]["invalid"]) == (n - 2000, 2000, 0)
    assert s["price"]["predictions"] == 2


def test_one_event_too_many_refuses_only_that_message(cfg, store):
    n = cfg.ingest.max_events_per_message + 1
    raw = orjson.dumps([_small(i) for i in range(n)])
    assert f"too many events in one message: {n} > {n - 1}" == one_reason(store, cfg, raw)


def test_flood_of_single_event_messages_of_one_model(cfg, store):
    n = 50_000
    P = cfg.topics.predictions
    records = [Rec(P, 0, i, orjson.dumps(_small(i % 40_000))) for i in range(n)]   # 10,000 repeats
    records += [Rec(P, 1, j, orjson.dumps(_price(j))) for j in range(50)]
    t0 = time.perf_counter()
    batch = prepare(records, cfg, NOW)
    t1 = time.perf_counter()
    commit(store, cfg, batch, group="g", expected={k: None for k in batch.next_offsets}, now=NOW)
    t2 = time.perf_counter()
    print(f"flood of {n}: prepare {t1 - t0:.2f} s, commit {t2 - t1:.2f} s")
    s = collect_stats(cfg, store)["models"]
    assert (s["fraud"]["predictions"], s["fraud"]["duplicates"]) == (40_000, 10_000)
    assert s["price"]["predictions"] == 50 and s["fraud"]["invalid"] == 0


# --- values, strings, bytes ---------------------------------------------------------------------

def _sub(ev: dict[str, Any], old: bytes, new: bytes) -> bytes:
    raw = orjson.dumps(ev)
    assert old in raw
    return raw.replace(old, new, 1)


P1 = pred(1, scores={"0": 0.25, "1": 0.75})

VALUE_CASES = [
    # (name, raw, reason fragment or None when accepted)
    ("NaN feature", _sub(P1, b'"amount":1.0', b'"amount":NaN'), "NaN and Infinity are not JSON numbers"),
    ("Infinity score", _sub(P1, b'"1":0.75', b'"1":Infinity'), "NaN and Infinity are not JSON numbers"),
    ("-Infinity prediction", _sub(P1, b'"prediction":1', b'"prediction":-Infinity'), "NaN and Infinity"),
    ("NaN ts", _sub(P1, b'"ts":%d' % P1["ts"], b'"ts":NaN'), "NaN and Infinity"),
    ("1e999 feature", _sub(P1, b'"amount":1.0', b'"amount":1e999'), 'Number out of range - at `$.features["amount"]`'),
    ("-1e999 unconfigured feature", _sub(P1, b'"amount":1.0', b'"amount":1.0,"other":-1e999'),
     'Number out of range - at `$.features["other"]`'),
    ("1e999 score", _sub(P1, b'"1":0.75', b'"1":1e999'), 'Number out of range - at `$.scores["1"]`'),
    ("1e999 prediction", _sub(P1, b'"prediction":1', b'"prediction":1e999'), "Number out of range - at `$.prediction`"),
    ("1e999 ts", _sub(P1, b'"ts":%d' % P1["ts"], b'"ts":1e999'), "Number out of range - at `$.ts`"),
    ("2**80 feature", _sub(P1, b'"amount":1.0', b'"amount":%d' % 2**80), None),          # a float 1.2e24
    ("2**80 score", _sub(P1, b'"1":0.75', b'"1":%d' % 2**80), "scores: probabilities must lie in [0, 1]"),
    ("2**80 prediction", _sub(P1, b'"prediction":1', b'"prediction":%d' % 2**80), None),  # class '1.2089...e+24'
    ("NUL event_id", orjson.dumps(pred(1, event_id="a\x00b")), "event_id: contains a NUL character (U+0000)"),
    ("NUL model_version", orjson.dumps(pred(1, model_version="\x00")), "model_version: contains a NUL character"),
    ("NUL feature value", orjson.dumps(pred(1, features={"amount": 1.0, "country": "D\x00E"})),
     'features["country"]: contains a NUL character'),
    ("NUL feature key", orjson.dumps(pred(1, features={"amount": 1.0, "a\x00": 1})), 'features["a\\u0000"]: contains a NUL'),
    ("NUL prediction", orjson.dumps(pred(1, prediction="\x00")), "prediction: contains a NUL"),
    ("NUL score key", orjson.dumps(pred(1, scores={"\x00": 0.5})), 'scores["\\u0000"]: contains a NUL'),
    ("NUL model", orjson.dumps(pred(1, model="fraud\x00")), "model: contains a NUL"),
    ("escaped backslash-u0000 text", orjson.dumps(pred(1, features={"amount": 1.0, "country": "\\u0000"})), None),
    ("lone high surrogate", _sub(P1, b'"DE"', b'"\\ud800"'), "surrogate"),
    ("lone low surrogate in id", _sub(P1, b'"e1"', b'"\\udc00"'), "surrogate"),
    ("surrogate pair (emoji)", _sub(P1, b'"DE"', b'"\\ud83d\\ude00"'), None),
    ("invalid UTF-8 in a field", _sub(P1, b'"DE"', b'"\xff\xfe"'), "message is not valid UTF-8 (byte "),
    ("invalid UTF-8 in an unknown field", _sub(P1, b'"DE"', b'"DE","junk":"\xc3\x28"'), "not valid UTF-8"),
    ("overlong UTF-8", _sub(P1, b'"DE"', b'"\xc0\x80"'), "not valid UTF-8"),
    ("UTF-8 surrogate bytes", _sub(P1, b'"DE"', b'"\xed\xa0\x80"'), "not valid UTF-8"),
    ("non-ASCII text", orjson.dumps(pred(1, features={"amount": 1.0, "country": "München ✓"})), None),
    ("non-string key", _sub(P1, b'"amount":1.0', b'1:1.0'), "object keys must be strings"),
    ("duplicate keys: last wins", _sub(P1, b'"amount":1.0', b'"amount":"x","amount":1.0'), None),
    ("duplicate keys: last is bad", _sub(P1, b'"amount":1.0', b'"amount":1.0,"amount":"x"'),
     "features.amount: expected a number or null"),
    ("BOM prefix", b"\xef\xbb\xbf" + orjson.dumps(P1), None),
    ("BOM alone", b"\xef\xbb\xbf", "empty message: no JSON value"),
    ("empty message", b"", "empty message: no JSON value"),
    ("whitespace", b" \n\t ", "empty message: no JSON value"),
    ("tombstone", None, "message has no value (tombstone)"),
    ("null", b"null", "Expected `object | array`, got `null`"),
    ("string", b'"hello"', "Expected `object | array`, got `str`"),
    ("number", b"42", "Expected `object | array`, got `int`"),
    ("empty object", b"{}", "Object missing required field"),
    ("empty array", b"[]", "empty array"),
    ("truncated", orjson.dumps(P1)[:-5], "JSON is truncated"),
    ("trailing garbage", orjson.dumps(P1) + b"x", "trailing characters"),
    ("two objects", orjson.dumps(P1) + orjson.dumps(P1), "trailing characters"),
    ("binary", bytes(range(256)), "not valid UTF-8"),
    ("features is a list", orjson.dumps(pred(1, features=[1, 2])), "Expected `object`, got `array` - at `$.features`"),
    ("prediction null", orjson.dumps(pred(1, prediction=None)), "at `$.prediction`"),
    ("event_id 129 chars", orjson.dumps(pred(1, event_id="x" * 129)), "length <= 128 - at `$.event_id`"),
    ("category 1025 chars", orjson.dumps(pred(1, features={"amount": 1.0, "country": "x" * 1025})),
     "features.country: string longer than 1024 characters"),
    ("unknown model", orjson.dumps(pred(1, model="nope")), "unknown model 'nope'"),
]


@pytest.mark.parametrize("name,raw,needle", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_hostile_values(cfg, store, name, raw, needle):
    if needle is None:
        dead, _ = run_hostile(store, cfg, [raw], accepted=1)
        assert dead == []
    else:
        assert needle in one_reason(store, cfg, raw)


def test_invalid_utf8_reason_gives_the_message_offset(cfg, store):
    raw = _sub(P1, b'"DE"', b'"\xff\xfe"')
    pos = raw.index(b"\xff")
    assert one_reason(store, cfg, raw) == f"message is not valid UTF-8 (byte {pos})"


def test_dead_letter_of_binary_input_is_base64(cfg, store):
    dead, _ = run_hostile(store, cfg, [bytes(range(256))])
    assert dead[0]["raw_encoding"] == "base64" and dead[0]["raw_truncated"] is False


def test_duplicate_keys_are_stored_as_received_and_reread_the_same(cfg, store):
    import sqlalchemy as sa

    from driftloop.core.store import examples
    raw = _sub(pred(5), b'"amount":5.0', b'"amount":"x","amount":5.0')
    run_hostile(store, cfg, [raw], accepted=1)
    with store.engine.connect() as c:
        payload = c.execute(sa.select(examples.c.payload).where(examples.c.event_id == "e5")).scalar_one()
    assert bytes(payload) == raw
    from driftloop.core.events import PREDICTION
    assert PREDICTION.one.decode(payload).features["amount"] == 5.0


def test_labels_topic_hostile_values(cfg, store):
    L1 = label(1)
    cases = [
        (_sub(L1, b'"label":1', b'"label":NaN'), "NaN and Infinity"),
        (_sub(L1, b'"label":1', b'"label":1e999'), "Number out of range - at `$.label`"),
        (orjson.dumps(L1 | {"label": "\x00"}), "label: contains a NUL"),
        (orjson.dumps(L1 | {"label": "x" * 2000}), "label: class label longer than 1024"),
        (orjson.dumps(L1 | {"label": None}), "at `$.label`"),
        (orjson.dumps(L1 | {"event_id": "\x00"}), "event_id: contains a NUL"),
    ]
    for k, (raw, needle) in enumerate(cases):
        assert needle in one_reason(store, cfg, raw, topic="labels", start=100 * k)
    stats = collect_stats(cfg, store)      # NaN is not JSON: that event's model cannot be read
    assert (stats["models"]["fraud"]["invalid"], stats["unattributed"]["invalid"]) == (len(cases) - 1, 1)


def test_array_of_mixed_valid_and_invalid_events(cfg, store):
    arr = orjson.dumps([
        pred(1), {"event_id": "bad"}, 5, None, pred(2, ts=0), pred(3, model="nope"),
        pred(4, event_id="n\x00"), _price(5), pred(6, schema_version=2), [pred(7)], pred(8),
    ])
    dead, stats = run_hostile(store, cfg, [arr], accepted=3)     # [0] e1, [7] e5 (price), [10] e8
    reasons = sorted(d["error"] for d in dead)
    assert len(reasons) == 8, reasons
    for prefix in ("event [1]: Object missing required field", "event [2]: Expected `object`, got `int`",
                   "event [3]: Expected `object`, got `null`", "event [9]: Expected `object`, got `array`",
                   "event [6]: event_id: contains a NUL character (U+0000)"):
        assert any(r.startswith(prefix) for r in reasons), (prefix, reasons)
    for fragment in ("before 1973", "unknown model 'nope'", "unknown schema_version 2"):
        assert any(fragment in r for r in reasons), (fragment, reasons)
    assert stats["models"]["fraud"]["predictions"] == 2 + 2      # e1, e8 + the two companions
    assert stats["models"]["price"]["predictions"] == 1 + 1


def test_every_refused_input_of_a_mixed_batch_is_counted_once(cfg, store):
    hostile = [value for _name, value, needle in VALUE_CASES if needle is not None]
    dead, stats = run_hostile(store, cfg, hostile)
    assert len(dead) == len(hostile) == stats["totals"]["invalid"]
    assert sorted(d["offset"] for d in dead) == list(range(1, len(hostile) + 1))
