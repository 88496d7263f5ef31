"""Generic contract checks run against every detector (in the spirit of River's ``checks``).

Each check takes a factory that builds a fresh detector and a ``feed(detector, rng)`` callable
that pushes one seeded chunk of data through it and returns what the detector said (a list of
detections, hit indices, ...), in a form comparable with ``==``.

:func:`discover` finds every concrete detector class of the ``detectors`` package and
:func:`yield_checks` names the checks that apply to a class; ``tests/detectors/test_contract.py``
runs them all, with per-class parameters, so a new detector is checked without anyone having
to remember to call :func:`check_all`.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

import detectors
from detectors import state as _state
from detectors.base import Detection, Snapshotable, StreamDetector, WindowDetector
from detectors.composite import encode_tree

Feed = Callable[[Any, np.random.Generator], Any]
Factory = Callable[[], Snapshotable]
Check = Callable[[Factory, Feed], None]


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


def _same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal parameters, compared as their exact encoding (parameters may hold numpy arrays and
    nested detectors, whose ``==`` is no bool)."""
    return _state.dumps(encode_tree(a)) == _state.dumps(encode_tree(b))


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
    assert _same_params(clone.params(), make().params())
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


def check_documented_class(make: Factory, feed: Feed) -> None:
    """:func:`check_documented` in the shape of the other checks."""
    check_documented(type(make()))


def check_params_match_init(make: Factory, feed: Feed) -> None:
    """``_params`` names constructor arguments, and every argument without a default is among
    them: :meth:`~detectors.base.Snapshotable.clone` rebuilds the detector from ``params()``."""
    cls = type(make())
    sig = inspect.signature(cls.__init__)
    names = [n for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = sorted(set(cls._params) - set(names))
    assert not unknown, f"{cls.__name__}._params names {unknown}, which __init__ does not take"
    required = [n for n in names if sig.parameters[n].default is inspect.Parameter.empty]
    lost = sorted(set(required) - set(cls._params))
    assert not lost, f"{cls.__name__}.__init__ requires {lost}, which _params leaves out: clone() cannot rebuild it"


def check_stream_detector(make: Factory, feed: Feed, chunks: int = 4) -> None:
    """A :class:`~detectors.base.StreamDetector` returns hit positions as integer arrays and
    ``drift_detected`` is a bool."""
    det = make()
    assert isinstance(det, StreamDetector)
    rng = np.random.default_rng(17)
    for _ in range(chunks):
        hits = np.asarray(feed(det, rng))
        assert hits.ndim == 1 and (hits.size == 0 or np.issubdtype(hits.dtype, np.integer)), hits
        assert isinstance(det.drift_detected, bool)


def check_window_detector(make: Factory, feed: Feed, chunks: int = 4) -> None:
    """A window detector (:class:`~detectors.base.WindowDetector`) answers each window with a
    list of :class:`~detectors.base.Detection`; ``firing()`` names the alerts firing and
    ``last()`` is a dict."""
    det = make()
    assert isinstance(det, WindowDetector)
    rng = np.random.default_rng(19)
    for _ in range(chunks):
        out = feed(det, rng)
        assert isinstance(out, list) and all(isinstance(d, Detection) for d in out), out
        assert isinstance(det.firing(), list) and all(isinstance(k, str) for k in det.firing())
        assert isinstance(det.last(), dict)


def is_window_detector(cls: type) -> bool:
    """Whether ``cls`` implements :class:`~detectors.base.WindowDetector`: its methods, and an
    ``update`` taking ``(window, columns, model_version)`` (``isinstance`` on a runtime
    protocol checks the names only)."""
    update, firing, last = (getattr(cls, m, None) for m in ("update", "firing", "last"))
    if not (callable(update) and callable(firing) and callable(last)):
        return False
    params = list(inspect.signature(update).parameters)
    return params[1:4] == ["window", "columns", "model_version"]


#: The checks every detector class gets.
GENERIC_CHECKS: tuple[Check, ...] = (
    check_snapshot_restore,
    check_clone,
    check_no_shared_state,
    check_deterministic,
    check_documented_class,
    check_params_match_init,
)
#: Every check :func:`yield_checks` may yield (a skip table may name only these).
ALL_CHECKS: tuple[Check, ...] = (*GENERIC_CHECKS, check_stream_detector, check_window_detector)


def yield_checks(cls: type) -> Iterator[Check]:
    """The checks that apply to detector class ``cls``, each named by its ``__name__`` (the
    name a class's skip table uses)."""
    yield from GENERIC_CHECKS
    if issubclass(cls, StreamDetector):
        yield check_stream_detector
    if is_window_detector(cls):
        yield check_window_detector


def _modules(package: ModuleType) -> Iterator[ModuleType]:
    yield package
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        yield importlib.import_module(info.name)


def discover(package: ModuleType = detectors) -> list[type[Snapshotable]]:
    """Every class defined in ``package`` (walked recursively) that is a
    :class:`~detectors.base.Snapshotable` — the base of every detector — sorted by module
    and name. Base classes are among them; the caller decides which are concrete."""
    found: dict[str, type[Snapshotable]] = {}
    for module in _modules(package):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and issubclass(obj, Snapshotable):
                found[f"{obj.__module__}:{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]
