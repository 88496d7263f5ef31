"""Safe, exact serialisation of detector state.

Detectors keep only plain data: numbers, strings, booleans, ``None``, lists, tuples, dicts and
numpy arrays. :func:`dumps` turns such a tree into bytes (MessagePack, numpy arrays stored
with dtype and shape, floats bit-exact) and :func:`loads` turns them back. Nothing here can
execute code on load, unlike pickle, so a state blob read from a shared store is harmless.

>>> import numpy as np
>>> blob = dumps({"n": 3, "w": np.arange(3.0), "t": (np.arange(2), "a"), "o": np.array(["x", None], dtype=object)})
>>> out = loads(blob)
>>> out["n"], out["w"].tolist(), out["t"][0].tolist(), out["t"][1], out["o"].tolist()
(3, [0.0, 1.0, 2.0], [0, 1], 'a', ['x', None])
"""
from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

__all__ = ["dumps", "loads"]

_NDARRAY = 1
_TUPLE = 2
_NPSCALAR = 3
_OBJARRAY = 4


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return msgspec.msgpack.Ext(_OBJARRAY, _packer.encode([list(obj.shape), obj.ravel().tolist()]))
        arr = np.ascontiguousarray(obj)
        head = _packer.encode([arr.dtype.str, list(arr.shape)])
        return msgspec.msgpack.Ext(_NDARRAY, len(head).to_bytes(4, "little") + head + arr.tobytes())
    if isinstance(obj, np.generic):
        return msgspec.msgpack.Ext(_NPSCALAR, _packer.encode([obj.dtype.str, obj.tobytes()]))
    raise TypeError(f"cannot serialise detector state of type {type(obj).__name__}")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _NDARRAY:
        n = int.from_bytes(data[:4], "little")
        dtype, shape = _unpacker.decode(data[4 : 4 + n])
        return np.frombuffer(bytes(data[4 + n :]), dtype=np.dtype(dtype)).reshape(shape).copy()
    if code == _NPSCALAR:
        dtype, raw = _unpacker.decode(data)
        return np.frombuffer(raw, dtype=np.dtype(dtype))[0]
    if code == _TUPLE:
        return tuple(_unpacker.decode(data))
    if code == _OBJARRAY:
        shape, items = _unpacker.decode(data)
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    raise ValueError(f"unknown state extension {code}")


def _tuples_to_ext(obj: Any) -> Any:
    """msgpack has no tuple; keep tuples distinct from lists so a restore is exact."""
    if isinstance(obj, tuple):
        return msgspec.msgpack.Ext(_TUPLE, _packer.encode([_tuples_to_ext(v) for v in obj]))
    if isinstance(obj, list):
        return [_tuples_to_ext(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _tuples_to_ext(v) for k, v in obj.items()}
    return obj


_packer = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_unpacker = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def dumps(state: Any) -> bytes:
    """Serialise a tree of plain data and numpy arrays to bytes."""
    return _packer.encode(_tuples_to_ext(state))


def loads(blob: bytes) -> Any:
    """Inverse of :func:`dumps`."""
    return _unpacker.decode(blob)
