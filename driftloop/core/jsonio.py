"""JSON for stored messages and API responses: numpy values as numbers, NaN/inf as null.

>>> import numpy as np
>>> dumps({"a": np.float64(float("nan")), "b": np.arange(2), 3: (1,), "s": {"y", "x"}})
b'{"a":null,"b":[0,1],"3":[1],"s":["x","y"]}'
>>> loads(b'{"a": 1}')
{'a': 1}
"""
from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def _default(obj: Any) -> Any:
    """numpy scalars/arrays, sets, msgspec structs and anything else orjson cannot encode."""
    for attr in ("item", "tolist"):
        f = getattr(obj, attr, None)
        if callable(f):
            try:
                return f()
            except (TypeError, ValueError):
                pass
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    try:
        import msgspec

        return msgspec.to_builtins(obj)
    except TypeError:
        return str(obj)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def loads(raw: bytes | memoryview) -> Any:
    return orjson.loads(bytes(raw))
