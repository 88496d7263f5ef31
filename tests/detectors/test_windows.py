"""Windows: the same windows whatever the batch boundaries, against a naive definition."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.windows import WindowBuffer
from tests.detectors.contract import check_all


def _split(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    pts = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return list(zip(pts[:-1], pts[1:]))


def _push_all(buf: WindowBuffer, ts: np.ndarray, vals: np.ndarray, cuts: list[int]) -> list[list[float]]:
    out = []
    for a, b in _split(len(ts), cuts):
        for w in buf.push(ts[a:b], {"v": vals[a:b], "m": np.stack([vals[a:b], -vals[a:b]], axis=1)}):
            assert w.window.n == len(w.columns["v"]) == len(w.ts)
            assert (w.columns["m"][:, 0] == w.columns["v"]).all()
            out.append(w.columns["v"].tolist())
    return out


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 120),
    size=st.integers(1, 20),
    step=st.one_of(st.none(), st.integers(1, 25)),
    cuts=st.lists(st.integers(0, 200), max_size=12),
)
def test_count_windows_match_definition(n, size, step, cuts):
    vals = np.arange(n, dtype=np.float64)
    got = _push_all(WindowBuffer("count", size, step), np.arange(n), vals, cuts)
    s = size if step is None else step
    want = [vals[j * s: j * s + size].tolist() for j in range(n) if j * s + size <= n]
    assert got == want


@settings(max_examples=80, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 40), min_size=1, max_size=80),
    size=st.integers(5, 60),
    step=st.one_of(st.none(), st.integers(5, 60)),
    cuts=st.lists(st.integers(0, 200), max_size=10),
    start=st.integers(0, 10_000),
)
def test_time_windows_match_definition_in_order(gaps, size, step, cuts, start):
    ts = start + np.cumsum(gaps).astype(np.int64)
    vals = np.arange(len(ts), dtype=np.float64)
    got = _push_all(WindowBuffer("time", size, step), ts, vals, cuts)
    s = size if step is None else step
    want = []
    k = int(ts[0]) // s
    while k * s + size <= ts[-1]:
        inside = (ts >= k * s) & (ts < k * s + size)
        if inside.any():
            want.append(vals[inside].tolist())
        k += 1
    assert got == want


def test_time_windows_late_events_and_lateness():
    buf = WindowBuffer("time", size=100, allowed_lateness=50)
    assert buf.push(np.array([10, 120]), {"v": np.array([1.0, 2.0])}) == []  # 120 < 100 + 50
    out = buf.push(np.array([60, 160]), {"v": np.array([3.0, 4.0])})  # 60 is late but within lateness
    assert [w.columns["v"].tolist() for w in out] == [[1.0, 3.0]]
    assert out[0].bounds == (0, 100) and out[0].window.start_ts == 10 and out[0].window.end_ts == 60
    buf.push(np.array([50]), {"v": np.array([5.0])})  # its window has closed: dropped
    assert buf.late == 1
    assert [w.columns["v"].tolist() for w in buf.flush()] == [[2.0, 4.0]]


def test_time_windows_skip_long_gaps_fast():
    buf = WindowBuffer("time", size=1000, step=10)
    out = buf.push(np.array([0, 5, 10**12, 10**12 + 2000]), {"v": np.arange(4.0)})
    assert [w.columns["v"].tolist() for w in out][:1] == [[0.0, 1.0]]
    assert all(len(w.columns["v"]) for w in out)


def test_count_flush_and_reset():
    buf = WindowBuffer("count", size=4, step=2)
    assert len(buf.push(np.arange(7), {"v": np.arange(7.0)})) == 2  # [0, 4) and [2, 6)
    assert [w.columns["v"].tolist() for w in buf.flush()] == [[4.0, 5.0, 6.0]]
    assert buf.flush() == [] and buf.pending == 0
    out = buf.push(np.arange(4), {"v": np.arange(10.0, 14.0)})
    assert [w.columns["v"].tolist() for w in out] == [[10.0, 11.0, 12.0, 13.0]]
    assert buf.seen == 11


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        WindowBuffer("rows")
    with pytest.raises(ValueError):
        WindowBuffer("count", 0)
    buf = WindowBuffer("count", 3)
    with pytest.raises(ValueError):
        buf.push(np.arange(2), {"v": np.arange(3.0)})
    buf.push(np.arange(2), {"v": np.arange(2.0)})
    with pytest.raises(ValueError):
        buf.push(np.arange(2), {"w": np.arange(2.0)})


def _feed(buf, rng):
    n = int(rng.integers(1, 300))
    ts = np.sort(rng.integers(0, 50_000, n)) if buf.kind == "time" else np.arange(n)
    cat = rng.choice(["a", "b", None], n).astype(object)
    out = buf.push(ts, {"x": rng.normal(size=n), "c": cat})
    return [(w.window.n, w.window.start_ts, w.window.end_ts, float(w.columns["x"].sum())) for w in out]


@pytest.mark.parametrize("args", [("count", 50, None), ("count", 50, 20), ("time", 5000, None), ("time", 5000, 1000)])
def test_contract(args):
    kind, size, step = args
    check_all(lambda: WindowBuffer(kind, size, step), _feed)
