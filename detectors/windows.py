"""Windows over a stream of column batches: count- or time-based, tumbling or sliding.

A :class:`WindowBuffer` takes batches (event times and any columns) and returns the windows
that each batch completes, as :class:`WindowData`: the columns of the events in the window and
a :class:`~detectors.base.Window` with its event-time range and size.

* ``kind="count"``: windows of ``size`` events. Tumbling (``step=None`` or ``step == size``)
  windows are events ``[0, size)``, ``[size, 2 size)``, ...; sliding windows
  ``[j step, j step + size)``.
* ``kind="time"``: windows of ``size`` milliseconds of event time, aligned to the epoch:
  ``[k step, k step + size)``. A window closes when an event at least ``allowed_lateness`` ms
  past its end has been seen (the watermark); an event that arrives for a window already
  closed is late: it is dropped and counted in :attr:`WindowBuffer.late`. Windows without
  events are skipped.

Everything is vectorised over the batch: a batch of any size costs a few numpy calls.

>>> import numpy as np
>>> buf = WindowBuffer("count", size=4)
>>> out = buf.push(np.arange(10), {"x": np.arange(10.0)})
>>> [(w.window.n, w.columns["x"].tolist()) for w in out]
[(4, [0.0, 1.0, 2.0, 3.0]), (4, [4.0, 5.0, 6.0, 7.0])]
>>> buf.pending
2
>>> tw = WindowBuffer("time", size=1000, step=500)
>>> out = tw.push(np.array([100, 600, 1200, 1700, 2600]), {"x": np.arange(5.0)})
>>> [(w.bounds, w.columns["x"].tolist()) for w in out]
[((0, 1000), [0.0, 1.0]), ((500, 1500), [1.0, 2.0]), ((1000, 2000), [2.0, 3.0]), ((1500, 2500), [3.0])]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from detectors.base import Window
from detectors.composite import Composite

__all__ = ["WindowBuffer", "WindowData"]


@dataclass(frozen=True, slots=True)
class WindowData:
    """The events of one completed window."""

    window: Window
    ts: np.ndarray
    columns: dict[str, np.ndarray]
    bounds: tuple[int, int] | None = None  # [start, end) in ms for time windows; event indices for count

    def __len__(self) -> int:
        return self.window.n


def _window_of(ts: np.ndarray) -> Window:
    if len(ts) == 0:
        return Window(None, None, 0)
    return Window(int(ts.min()), int(ts.max()), int(len(ts)))


class WindowBuffer(Composite):
    """Accumulates column batches and cuts them into windows.

    Parameters
    ----------
    kind : {"count", "time"}
        Count-based (``size`` events) or time-based (``size`` milliseconds of event time).
    size : int
        Window length, in events or milliseconds.
    step : int, optional
        Distance between the starts of consecutive windows; ``None`` (the default) means
        ``size``: tumbling windows. Smaller than ``size``: sliding, overlapping windows.
    allowed_lateness : int
        Time windows only: how many ms past a window's end to wait for late events.

    Examples
    --------
    Sliding count windows of 3 events, one every 2 events:

    >>> import numpy as np
    >>> buf = WindowBuffer("count", size=3, step=2)
    >>> [w.columns["v"].tolist() for w in buf.push(np.arange(7), {"v": np.arange(7)})]
    [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    """

    _params = ("kind", "size", "step", "allowed_lateness")

    def __init__(
        self,
        kind: Literal["count", "time"] = "count",
        size: int = 5000,
        step: int | None = None,
        allowed_lateness: int = 0,
    ) -> None:
        if kind not in ("count", "time"):
            raise ValueError(f"window kind must be 'count' or 'time', not {kind!r}")
        if int(size) <= 0 or (step is not None and int(step) <= 0):
            raise ValueError("window size and step must be positive")
        self.kind = kind
        self.size = int(size)
        self.step = None if step is None else int(step)
        self.allowed_lateness = int(allowed_lateness)
        self._ts = np.empty(0, dtype=np.int64)
        self._cols: dict[str, np.ndarray] | None = None
        self._buf_start = 0  # count: absolute index of the first buffered event
        self._keep_from = 0  # count: events before this absolute index are not in any window
        self._seen = 0  # count: events since the last reset (window positions)
        self._total = 0
        self._emitted_to = 0  # count: end index of the last emitted window
        self._next_k: int | None = None  # time: index of the next window to close
        self._watermark: int | None = None
        self._late = 0

    # ------------------------------------------------------------------ info
    @property
    def stride(self) -> int:
        return self.size if self.step is None else self.step

    @property
    def pending(self) -> int:
        """Events buffered and not yet in a completed window."""
        return int(len(self._ts))

    @property
    def late(self) -> int:
        """Time windows: events dropped because their window had already closed."""
        return self._late

    @property
    def seen(self) -> int:
        """Events pushed so far (late ones included)."""
        return self._total

    def reset(self) -> None:
        """Forget buffered events (the counters of seen and late events stay)."""
        self._ts = np.empty(0, dtype=np.int64)
        self._cols = None
        self._buf_start = self._keep_from = self._emitted_to = self._seen = 0
        self._next_k = None
        self._watermark = None

    # ------------------------------------------------------------------ push
    def _append(self, ts: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        if self._cols is None:
            self._cols = {k: np.asarray(v) for k, v in columns.items()}
            self._ts = ts
            return
        if set(columns) != set(self._cols):
            raise ValueError(f"batch columns {sorted(columns)} differ from the window's {sorted(self._cols)}")
        self._cols = {k: np.concatenate([self._cols[k], np.asarray(columns[k])]) for k in self._cols}
        self._ts = np.concatenate([self._ts, ts])

    def _take(self, idx: slice | np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self._cols is not None
        return self._ts[idx], {k: v[idx] for k, v in self._cols.items()}

    def push(self, ts: np.ndarray, columns: dict[str, np.ndarray]) -> list[WindowData]:
        """Add a batch; return the windows it completes, oldest first.

        Parameters
        ----------
        ts : array of int64
            Event times (epoch ms), one per event.
        columns : dict of str to array
            Any per-event columns, each as long as ``ts``. Every batch must bring the same
            column names.
        """
        ts = np.asarray(ts, dtype=np.int64).ravel()
        self._total += len(ts)
        for k, v in columns.items():
            if len(v) != len(ts):
                raise ValueError(f"column {k!r} has {len(v)} values for {len(ts)} events")
        if self.kind == "count":
            return self._push_count(ts, columns)
        return self._push_time(ts, columns)

    def _push_count(self, ts: np.ndarray, columns: dict[str, np.ndarray]) -> list[WindowData]:
        before = self._seen
        after = before + len(ts)
        self._seen = after
        skip = max(0, self._keep_from - before)  # events between windows (step > size)
        if skip:
            ts = ts[skip:]
            columns = {k: v[skip:] for k, v in columns.items()}
        if len(ts):
            if len(self._ts) == 0:
                self._buf_start = before + skip
            self._append(ts, columns)
        size, step = self.size, self.stride
        j_lo = max(0, (before - size) // step + 1)  # windows ending in (before, after]
        j_hi = (after - size) // step
        out: list[WindowData] = []
        for j in range(j_lo, j_hi + 1):
            start = j * step
            wts, wcols = self._take(slice(start - self._buf_start, start + size - self._buf_start))
            out.append(WindowData(_window_of(wts), wts, wcols, (start, start + size)))
            self._emitted_to = start + size
        self._keep_from = max(self._keep_from, max(j_hi + 1, 0) * step)
        drop = min(max(0, self._keep_from - self._buf_start), len(self._ts))
        if drop:
            self._ts, self._cols = self._take(slice(drop, None))
            self._buf_start += drop
        return out

    def _push_time(self, ts: np.ndarray, columns: dict[str, np.ndarray]) -> list[WindowData]:
        if len(ts) == 0:
            return []
        step, size = self.stride, self.size
        if self._next_k is None:
            self._next_k = int(ts.min()) // step
        on_time = ts >= self._next_k * step
        n_late = int(len(ts) - on_time.sum())
        if n_late:
            self._late += n_late
            ts = ts[on_time]
            columns = {k: v[on_time] for k, v in columns.items()}
        if len(ts):
            self._append(ts, columns)
            wm = int(ts.max())
            self._watermark = wm if self._watermark is None else max(self._watermark, wm)
        out: list[WindowData] = []
        if self._watermark is None:
            return out
        limit = self._watermark - self.allowed_lateness
        while len(self._ts) and self._next_k * step + size <= limit:
            t_min = int(self._ts.min())
            first = (t_min - size) // step + 1  # first window that contains the oldest event
            if first > self._next_k:
                self._next_k = first
                continue
            k = self._next_k
            lo, hi = k * step, k * step + size
            mask = (self._ts >= lo) & (self._ts < hi)
            if mask.any():
                wts, wcols = self._take(mask)
                out.append(WindowData(_window_of(wts), wts, wcols, (lo, hi)))
            self._next_k = k + 1
            keep = self._ts >= self._next_k * step
            if not keep.all():
                self._ts, self._cols = self._take(keep)
        return out

    def flush(self) -> list[WindowData]:
        """Close what is buffered (end of a replay): the partial window(s), then reset.

        Count windows give one window with the buffered events; time windows give every
        remaining window that has events, whatever the watermark.
        """
        out: list[WindowData] = []
        if self._cols is None or len(self._ts) == 0:
            self.reset()
            return out
        if self.kind == "count":
            if self._seen > self._emitted_to:  # events not yet in any emitted window
                wts, wcols = self._take(slice(None))
                start = self._buf_start
                out.append(WindowData(_window_of(wts), wts, wcols, (start, start + len(wts))))
                self._emitted_to = self._seen
        else:
            step, size = self.stride, self.size
            assert self._next_k is not None
            k = max(self._next_k, (int(self._ts.min()) - size) // step + 1)
            last = int(self._ts.max()) // step
            while k <= last:
                lo, hi = k * step, k * step + size
                mask = (self._ts >= lo) & (self._ts < hi)
                if mask.any():
                    wts, wcols = self._take(mask)
                    out.append(WindowData(_window_of(wts), wts, wcols, (lo, hi)))
                k += 1
        self.reset()
        return out
