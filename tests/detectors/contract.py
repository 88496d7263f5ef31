"""Generic contract checks run against every detector (in the spirit of River's ``checks``).

Each check takes a factory that builds a fresh detector and a ``feed(detector, rng)`` callable
that pushes one seeded chunk of data through it and returns what the detector said (a list of
detections, hit indices, ...), in a form comparable with ``==``.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors.base import Snapshotable

Feed = Callable[[Any, np.random.Generator], Any]


def _outputs(det: Any, feed: Feed, seed: int, chunks: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [_normalise(feed(det, rng)) for _ in range(chunks)]


def _normalise(out: Any) -> Any:
    if isinstance(out, np.ndarray):
        return out.tolist()
    if isinstance(out, list):
        return [_normalise(o) for o in out]
    if hasattr(out, "to_dict"):
        return out.to_dict()
    return out


def check_snapshot_restore(make: Callable[[], Snapshotable], feed: Feed, chunks: int = 6) -> None:
    """Snapshot mid-stream, restore into a new object: it continues exactly like the original."""
    rng_a = np.random.default_rng(7)
    rng_b = np.random.default_rng(7)
    a, b = make(), make()
    half = chunks // 2
    out_a = [_normalise(feed(a, rng_a)) for _ in range(chunks)]
    out_b = [_normalise(feed(b, rng_b)) for _ in range(half)]
    b = type(b).restore(b.snapshot())
    out_b += [_normalise(feed(b, rng_b)) for _ in range(chunks - half)]
    assert out_a == out_b
    assert a.snapshot() == b.snapshot()


def check_clone(make: Callable[[], Snapshotable], feed: Feed, chunks: int = 4) -> None:
    """A clone of a used detector has its parameters and none of its state."""
    used = make()
    _outputs(used, feed, 3, chunks)
    clone = used.clone()
    assert clone.params() == make().params()
    assert _outputs(clone, feed, 11, chunks) == _outputs(make(), feed, 11, chunks)


def check_no_shared_state(make: Callable[[], Snapshotable], feed: Feed, chunks: int = 4) -> None:
    """Feeding one instance leaves another untouched (no shared mutable defaults)."""
    a, b = make(), make()
    before = b.snapshot()
    _outputs(a, feed, 5, chunks)
    assert b.snapshot() == before


def check_deterministic(make: Callable[[], Snapshotable], feed: Feed, chunks: int = 4) -> None:
    """Same seed, same data, same outputs: with the default seed, and, for a detector that takes
    a ``seed``, with an explicit one (built through ``params()``, as :meth:`clone` does)."""
    assert _outputs(make(), feed, 13, chunks) == _outputs(make(), feed, 13, chunks)
    proto = make()
    if "seed" in proto.params():
        def seeded() -> Snapshotable:
            return type(proto)(**{**proto.params(), "seed": 20261203})
        assert seeded().params()["seed"] == 20261203
        assert _outputs(seeded(), feed, 13, chunks) == _outputs(seeded(), feed, 13, chunks)


def check_documented(cls: type) -> None:
    """The class has a docstring with a runnable example (run by pytest's doctest collection)."""
    doc = inspect.getdoc(cls) or ""
    assert doc.strip(), f"{cls.__name__} has no docstring"
    assert ">>>" in doc or ">>>" in (inspect.getdoc(inspect.getmodule(cls)) or ""), (
        f"{cls.__name__} has no example"
    )


def check_all(make: Callable[[], Snapshotable], feed: Feed) -> None:
    check_snapshot_restore(make, feed)
    check_clone(make, feed)
    check_no_shared_state(make, feed)
    check_deterministic(make, feed)
    check_documented(type(make()))
