"""Fuzz the event path: bytes -> Kafka records -> prepare() (decode + validate) -> commit() (SQLite).

    python bench/fuzz_decoder.py -atheris_runs=200000        # or -max_total_time=300
    python bench/fuzz_decoder.py -max_total_time=300 --no-commit [CORPUS_DIR ...]

(``pip install atheris``; inputs up to 8 KiB unless ``-max_len`` says otherwise; the harness's
limits are small, ``max_message_bytes`` 6000, 32 events per message, 16 features, 64 characters,
so that mutations reach them.)

libFuzzer (atheris) mutates the seeds below (or the given corpus folders; new inputs go to the
first) and calls :func:`check_message` on each input. An input is one batch: its first byte
picks the topic and whether the rest is one message or several (split at ``\\x1e``), the rest
is the message values. The checks are the service's promises: nothing raises, every record
ends up accepted or dead-lettered, each dead letter is well formed, names its record and stays
under the broker's size limit, the counters match, and every accepted event obeys the limits
(timestamps in range, no U+0000, features and strings bounded, scores in [0, 1]).

An exception is a finding: atheris prints it and writes the input as ``crash-*``. At the end
(and every 20 s) a summary: executions, executions/s, and the refusal reasons seen.
``tests/test_fuzz_harnesses.py`` runs :func:`check_message` over :data:`CORPUS`
without atheris, so CI exercises the same checks.
"""
from __future__ import annotations

import itertools
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from consumers.ingest import RawRecord as Rec
from consumers.ingest import commit, prepare
from consumers.validation import MIN_TS_MS
from driftloop.core.config import load_config_dict
from driftloop.core.events import PREDICTION
from driftloop.kafka.dead_letters import MAX_RECORD_BYTES

NOW = 1_760_000_000_000
CFG = load_config_dict({"ingest": {"max_message_bytes": 6_000, "max_events_per_message": 32, "max_features": 16,
                                   "max_string_chars": 64},
                        "models": {"fraud": {"task": "classification",
                                             "features": {"amount": "numeric", "country": "categorical"}},
                                   "price": {"task": "regression", "features": {"x": "numeric"}}}}, environ={})
SEP = b"\x1e"


def _ev(i: int, **kw) -> dict:
    ev = {"event_id": f"e{i}", "model": "fraud", "ts": NOW - 1000, "features": {"amount": 1.5, "country": "DE"},
          "prediction": 1, "scores": {"0": 0.25, "1": 0.75}}
    ev.update(kw)
    return ev


_P = orjson.dumps(_ev(1))
_L = orjson.dumps({"event_id": "e1", "model": "fraud", "ts": NOW, "label": 1})
# seeds: mode byte (bit 0: labels topic, bit 1: several messages split at \x1e, bit 2: add a tombstone)
CORPUS: list[bytes] = [
    b"\x00" + _P,
    b"\x01" + _L,
    b"\x00" + orjson.dumps([_ev(1), _ev(2, model="price", features={"x": 2.0}, prediction=3.5, scores=None)]),
    b"\x02" + SEP.join([_P, orjson.dumps(_ev(2)), orjson.dumps(_ev(1))]),
    b"\x03" + SEP.join([_L, b'{"event_id":"e2","model":"price","ts":"2025-10-09T08:00:00.250+02:00","label":2.5}']),
    b"\x04" + _P,
    b"\x00" + b"[" * 2000 + b"]" * 2000,
    b"\x00" + b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"\x00" + _P.replace(b'"amount":1.5', b'"amount":NaN'),
    b"\x00" + _P.replace(b'"amount":1.5', b'"amount":1e999'),
    b"\x00" + _P.replace(b'"amount":1.5', b'"amount":%d' % 2**80),
    b"\x00" + _P.replace(b'"ts":%d' % (NOW - 1000), b'"ts":%d' % 2**80),
    b"\x00" + _P.replace(b'"ts":%d' % (NOW - 1000), b'"ts":1760000000'),
    b"\x00" + _P.replace(b'"ts":%d' % (NOW - 1000), b'"ts":"2016-12-31T23:59:60Z"'),
    b"\x00" + _P.replace(b'"ts":%d' % (NOW - 1000), b'"ts":"2024-02-30T00:00:00+25:00"'),
    b"\x00" + _P.replace(b'"ts":%d' % (NOW - 1000), b'"ts":"9999-12-31T23:59:59Z"'),
    b"\x00" + _P.replace(b'"DE"', b'"D\\u0000E"'),
    b"\x00" + _P.replace(b'"DE"', b'"\\ud800"'),
    b"\x00" + _P.replace(b'"DE"', b'"\xff\xfe"'),
    b"\x00" + _P.replace(b'"DE"', b'"DE","junk":"\xc3\x28"'),
    b"\x00" + _P.replace(b'"amount":1.5', b'"amount":"x","amount":1.5'),
    b"\x00" + b"\xef\xbb\xbf" + _P,
    b"\x00",
    b"\x00 \n",
    b"\x00null",
    b"\x00[]",
    b"\x00" + _P.replace(b'"prediction":1', b'"prediction":1,"schema_version":2'),
    b"\x00" + _P.replace(b'"prediction":1', b'"prediction":1,"schema_version":"1"'),
    b"\x00" + orjson.dumps([_ev(i % 20) for i in range(32)]),
    b"\x00" + orjson.dumps([_ev(i) for i in range(33)]),
    b"\x00" + orjson.dumps(_ev(1, features={f"f{i}": 1 for i in range(20)})),
    b"\x00" + orjson.dumps([_ev(1), {"event_id": "bad"}, 5, None, _ev(2, ts=0), [_ev(3)], _ev(4, model="nope")]),
    b"\x00" + b'{"event_id":"big","model":"fraud","x":"' + "é".encode() * 3_500 + b'"}',   # over the limit
    b"\x01" + _L.replace(b'"label":1', b'"label":NaN'),
    b"\x01" + _L.replace(b'"label":1', b'"label":"\\u0000"'),
]

_partitions = itertools.count()
_store = None
_commits = 0
stats = Counter()
reasons: Counter = Counter()


def records_from(data: bytes) -> list[Rec]:
    mode = data[0] if data else 0
    body = data[1:]
    P, L = CFG.topics.predictions, CFG.topics.labels
    values: list[bytes | None] = body.split(SEP)[:16] if mode & 2 else [body]
    if mode & 4:
        values.append(None)
    part = next(_partitions)
    out = []
    for i, v in enumerate(values):
        topic = L if (mode & 1) ^ (i & 1 if mode & 8 else 0) else P
        out.append(Rec(topic, part, i, v))
    return out


def _check_accepted(batch) -> int:
    lim = CFG.ingest
    n = 0
    for side in (batch.predictions, batch.labels):
        for model, v in side.items():
            assert model in CFG.models
            if len(v.ts):
                assert int(v.ts.min()) >= MIN_TS_MS and int(v.ts.max()) <= NOW + lim.max_future_skew_s * 1000
            for ev in v.events:
                assert ev.model == model and 1 <= len(ev.event_id) <= 128 and "\x00" not in ev.event_id
                assert ev.schema_version == 1
                feats = getattr(ev, "features", None)
                if feats is not None:
                    assert len(feats) <= lim.max_features
                    for k, x in feats.items():
                        assert "\x00" not in k and not (type(x) is str and "\x00" in x)
                        assert not (type(x) is float and not math.isfinite(x))
            n += len(v.events)
        if side is batch.predictions:
            for v in side.values():
                if v.scores is not None and v.scores.size:
                    ok = ~((v.scores < 0) | (v.scores > 1))
                    assert ok.all()
                for ev, payload in zip(v.events, v.payloads or [], strict=False):
                    if payload is not None:      # stored as received: it must read back as the same event
                        assert PREDICTION.one.decode(payload) == ev
    return n


def check_message(data: bytes, *, do_commit: bool = True) -> None:
    """The fuzz target: one batch made of ``data``; raises AssertionError on a broken promise."""
    global _store, _commits
    recs = records_from(data)
    batch = prepare(recs, CFG, NOW)
    accepted = _check_accepted(batch)
    by_record = Counter()
    for key, value in batch.dead_letters:
        assert len(value) <= MAX_RECORD_BYTES
        d = orjson.loads(value)
        assert isinstance(d["error"], str) and d["error"].strip()
        assert d["raw_encoding"] in ("text", "base64") and isinstance(d["raw_truncated"], bool)
        assert key is None or key == (d["model"] or "").encode()
        rec = recs[d["offset"]]
        assert (d["source_topic"], d["partition"]) == (rec.topic, rec.partition)
        by_record[d["offset"]] += 1
        reasons[re.sub(r"\d+", "N", d["error"])[:90]] += 1
    invalid = sum(v for (_m, name), v in batch.deltas.items() if name == "invalid")
    assert invalid == len(batch.dead_letters)
    # every record ends up somewhere: an accepted event or a dead letter (per record, checked alone)
    assert accepted + len(batch.dead_letters) >= len(recs)
    if len(recs) > 1:
        for i, rec in enumerate(recs):
            if not by_record[i]:
                alone = prepare([rec], CFG, NOW)
                assert alone.dead_letters or _check_accepted(alone), (i, rec.value)
    stats["executions"] += 1
    stats["accepted_events"] += accepted
    stats["dead_letters"] += len(batch.dead_letters)
    if do_commit:
        if _store is None or _commits >= 2000:      # a fresh in-memory store now and then: bounded memory
            from driftloop.core.store import Store
            if _store is not None:
                _store.dispose()
            _store = Store("sqlite://")
            _store.create_schema()
            _commits = 0
        commit(_store, CFG, batch, group="fuzz", expected={k: None for k in batch.next_offsets}, now=NOW)
        _commits += 1


_t0 = time.perf_counter()


def summary(final: bool = False) -> str:
    el = time.perf_counter() - _t0
    n = stats["executions"]
    lines = [f"{'final' if final else 'so far'}: {n} executions in {el:.0f} s = {n / max(el, 1e-9):.0f} exec/s; "
             f"{stats['accepted_events']} events accepted, {stats['dead_letters']} dead letters, "
             f"{len(reasons)} distinct refusal reasons (digits as N); no exception escaped"]
    if final:
        lines += [f"  {c:8d}  {r}" for r, c in reasons.most_common(40)]
    return "\n".join(lines)


_COMMIT = True


def instrument(atheris, prefixes: tuple[str, ...]) -> int:
    """Coverage instrumentation of the loaded functions of these packages only
    (``atheris.instrument_all`` takes minutes here: numpy, SQLAlchemy, scikit-learn)."""
    import gc
    import types
    n = 0
    for obj in gc.get_objects():
        if (isinstance(obj, types.FunctionType) and str(getattr(obj, "__module__", "")).startswith(prefixes)
                and obj.__module__ in sys.modules):
            try:
                atheris.instrument_func(obj)
                n += 1
            except Exception:  # noqa: BLE001 - a function atheris cannot patch stays uninstrumented
                pass
    return n


def fuzz(argv: list[str], target, report, prefixes: tuple[str, ...], seeds: list[bytes], max_len: int) -> None:
    """Run libFuzzer on ``target``. The run budget (``-atheris_runs``/``-runs``, ``-max_total_time``) is
    kept here rather than by libFuzzer, which ends the process without running Python's exit
    handlers: the summary ``report(final=True)`` is printed, then the process ends."""
    import os
    import tempfile

    import atheris

    budget = {"runs": 0, "time": 0.0}
    rest = []
    for a in argv:
        key, _, value = a.partition("=")
        if key in ("-atheris_runs", "-runs"):
            budget["runs"] = int(value)
        elif key == "-max_total_time":
            budget["time"] = float(value)
        else:
            rest.append(a)
    if not any(a.startswith("-max_len") for a in rest):
        rest.append(f"-max_len={max_len}")
    if not any(not a.startswith("-") for a in rest[1:]):     # no corpus folder given: the seeds
        folder = Path(tempfile.mkdtemp(prefix=f"driftloop-{Path(rest[0]).stem}-"))
        for i, seed in enumerate(seeds):
            (folder / f"seed-{i:03d}").write_bytes(seed)
        rest.append(str(folder))
        print(f"corpus: {folder} ({len(seeds)} seeds)", file=sys.stderr)
    print(f"coverage feedback from {instrument(atheris, prefixes)} functions of {', '.join(prefixes)}",
          file=sys.stderr)
    t0 = time.perf_counter()
    last = [t0]
    runs = [0]

    def one(data: bytes) -> None:
        target(data)
        runs[0] += 1
        now = time.perf_counter()
        if (budget["runs"] and runs[0] >= budget["runs"]) or (budget["time"] and now - t0 >= budget["time"]):
            print(report(final=True), file=sys.stderr, flush=True)
            os._exit(0)
        if now - last[0] > 20:
            last[0] = now
            print(report(), file=sys.stderr, flush=True)

    atheris.Setup(rest, one)
    atheris.Fuzz()


def main() -> None:
    global _COMMIT
    argv = [a for a in sys.argv if a != "--no-commit"]
    _COMMIT = len(argv) == len(sys.argv)
    print(f"commit to SQLite: {_COMMIT}", file=sys.stderr)
    fuzz(argv, lambda data: check_message(data, do_commit=_COMMIT), summary, ("consumers.", "driftloop."),
         CORPUS, 8192)


if __name__ == "__main__":
    main()
