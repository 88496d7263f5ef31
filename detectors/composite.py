"""Exact snapshots of detectors that hold other detectors.

:class:`detectors.base.Snapshotable` serialises ``self.__dict__`` as plain data. A monitor that
holds sub-detectors, a reference sample and a settings object needs one more step: nested
:class:`~detectors.base.Snapshotable` objects are written as tagged dicts (their class's module
and qualified name, and their own state) and rebuilt on restore. An object held in two places
(say the reference sample shared by the monitor and its drift detector) is written once and
comes back shared, so a restored composite is the same graph, byte for byte.

Restoring never imports anything: a tag is looked up among the subclasses of
:class:`~detectors.base.Snapshotable` that are already loaded, so a state blob cannot name
arbitrary code.

>>> from detectors.composite import Composite
>>> class Inner(Composite):
...     def __init__(self):
...         self.n = 0
>>> class Outer(Composite):
...     def __init__(self):
...         self.a = Inner()
...         self.b = self.a
>>> o = Outer()
>>> o.a.n = 5
>>> r = Outer.restore(o.snapshot())
>>> r.a.n, r.a is r.b, r.snapshot() == o.snapshot()
(5, True, True)
"""
from __future__ import annotations

from typing import Any, ClassVar, Self

from detectors import state as _state
from detectors.base import Snapshotable

__all__ = ["Composite", "encode_tree", "decode_tree"]

_OBJ = "__obj__"
_REF = "__ref__"
_BLOB = "__blob__"


def _tag(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


#: Modules renamed since snapshots were first written (old module -> new module). Snapshots
#: persisted in users' stores keep the tag of the class's module at the time they were written,
#: so an old tag is read as the new one: ``detectors.drift`` became ``detectors.univariate_drift``
#: (it holds the UnivariateDrift detector) and ``detectors.univariate`` became
#: ``detectors.two_sample`` (the vectorised two-sample statistics). Never remove an entry.
_RENAMED_MODULES: dict[str, str] = {
    "detectors.drift": "detectors.univariate_drift",
    "detectors.univariate": "detectors.two_sample",
}
#: Classes renamed (or moved alone) since snapshots were first written: old tag -> new tag,
#: both ``"module:qualname"``. Empty so far; never remove an entry.
_RENAMED_CLASSES: dict[str, str] = {}


def _current_tag(tag: str) -> str:
    """``tag`` with a class or module renamed since it was written replaced by the current name.

    >>> _current_tag("detectors.drift:UnivariateDrift")
    'detectors.univariate_drift:UnivariateDrift'
    >>> _current_tag("detectors.windows:WindowBuffer")
    'detectors.windows:WindowBuffer'
    """
    if tag in _RENAMED_CLASSES:
        return _RENAMED_CLASSES[tag]
    module, sep, qualname = tag.partition(":")
    return _RENAMED_MODULES.get(module, module) + sep + qualname


def _find_class(tag: str) -> type[Snapshotable]:
    tag = _current_tag(tag)
    stack: list[type[Snapshotable]] = [Snapshotable]
    seen: set[type[Snapshotable]] = set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if _tag(cls) == tag:
            return cls
        stack.extend(cls.__subclasses__())
    raise ValueError(f"snapshot names an unknown detector class {tag!r}")


def _plain(obj: Snapshotable) -> bool:
    """Whether ``obj`` keeps its state in ``__dict__`` (and so can be inlined)."""
    snap = type(obj).snapshot
    return isinstance(obj, Composite) or snap is Snapshotable.snapshot


def _persisted(obj: Snapshotable) -> dict[str, Any]:
    """The attributes a snapshot keeps: all but the ones the class can recompute."""
    derived = getattr(type(obj), "_derived", ())
    if not derived:
        return obj.__dict__
    return {k: v for k, v in obj.__dict__.items() if k not in derived}


def _rebuild(obj: Any) -> None:
    hook = getattr(obj, "_rebuild", None)
    if callable(hook):
        hook()


def encode_tree(value: Any, memo: dict[int, int] | None = None) -> Any:
    """Replace nested Snapshotable objects in a tree of plain data by tagged dicts."""
    memo = {} if memo is None else memo
    if isinstance(value, Snapshotable):
        key = id(value)
        if key in memo:
            return {_REF: memo[key]}
        memo[key] = len(memo)
        if _plain(value):
            return {_OBJ: _tag(type(value)), "id": memo[key], "state": encode_tree(_persisted(value), memo)}
        return {_BLOB: _tag(type(value)), "id": memo[key], "data": value.snapshot()}
    if isinstance(value, dict):
        return {k: encode_tree(v, memo) for k, v in value.items()}
    if isinstance(value, list):
        return [encode_tree(v, memo) for v in value]
    if isinstance(value, tuple):
        return tuple(encode_tree(v, memo) for v in value)
    return value


def decode_tree(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """Inverse of :func:`encode_tree`."""
    memo = {} if memo is None else memo
    if isinstance(value, dict):
        if _REF in value and len(value) == 1:
            return memo[value[_REF]]
        if _OBJ in value and len(value) == 3:
            cls = _find_class(value[_OBJ])
            obj = cls.__new__(cls)
            memo[value["id"]] = obj
            obj.__dict__.update(decode_tree(value["state"], memo))
            _rebuild(obj)
            return obj
        if _BLOB in value and len(value) == 3:
            cls = _find_class(value[_BLOB])
            obj = cls.restore(value["data"])
            memo[value["id"]] = obj
            return obj
        return {k: decode_tree(v, memo) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tree(v, memo) for v in value]
    if isinstance(value, tuple):
        return tuple(decode_tree(v, memo) for v in value)
    return value


class Composite(Snapshotable):
    """A :class:`~detectors.base.Snapshotable` whose state may hold other Snapshotables.

    A subclass may name in ``_derived`` attributes that are a deterministic function of the
    rest (say a sorted copy of the reference): snapshots leave them out and ``_rebuild()``
    recomputes them on restore, so the restored object is the same, its bytes smaller.
    """

    _derived: ClassVar[tuple[str, ...]] = ()

    def snapshot(self) -> bytes:
        """All state, nested detectors included, as bytes."""
        return _state.dumps({"cls": type(self).__qualname__, "state": encode_tree(_persisted(self), {id(self): 0})})

    @classmethod
    def restore(cls, blob: bytes) -> Self:
        """Rebuild an object from :meth:`snapshot`'s bytes; it continues exactly."""
        data = _state.loads(blob)
        if data["cls"] != cls.__qualname__:
            raise ValueError(f"snapshot is of {data['cls']}, not {cls.__qualname__}")
        obj = cls.__new__(cls)
        obj.__dict__.update(decode_tree(data["state"], {0: obj}))
        _rebuild(obj)
        return obj
