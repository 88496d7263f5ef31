"""Ranked lists and graded relevance as the text columns a ranking model's batches carry.

A ranking model's prediction is the ranked list of item ids shown (best first), and its label
the items engaged with or item → graded relevance (contract v1.1, ``task: ranking``). The
pipeline (validation, journal, store, join, windows) moves one ``str`` per event, as it does a
class label, so a list travels as its item ids joined by :data:`ITEM_SEP`; a relevance as
``item`` (relevance 1) or ``item`` :data:`REL_SEP` ``relevance``. Item ids are text (an
integer id ``7`` is ``"7"``) and never hold either separator (validation refuses them).
An empty list is the empty string: nothing was engaged, which is a valid label.

>>> encode_ranking(["b", "a", 7])
'b\\x1fa\\x1f7'
>>> decode_ranking(encode_ranking(["b", "a", 7]))
['b', 'a', '7']
>>> decode_relevance(encode_relevance({"a": 3, "b": 0.5}))
{'a': 3.0, 'b': 0.5}
>>> decode_relevance(encode_relevance(["a", "c"])), decode_relevance(encode_relevance([]))
({'a': 1.0, 'c': 1.0}, {})
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ITEM_SEP", "REL_SEP", "encode_ranking", "decode_ranking", "encode_relevance", "decode_relevance",
           "item_id", "as_json"]

ITEM_SEP = "\x1f"
"""Between the item ids of one list (ASCII unit separator)."""
REL_SEP = "\x1e"
"""Between an item id and its graded relevance (ASCII record separator)."""


def item_id(value: Any) -> str:
    """An item id as text: an integer ``7`` is ``"7"`` (and a float ``7.0``, as JSON decoders give it)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode_ranking(items: Iterable[Any]) -> str:
    """A ranked list as one text value (best first)."""
    return ITEM_SEP.join(item_id(i) for i in items)


def decode_ranking(text: str) -> list[str]:
    """The item ids of an encoded ranked list, best first."""
    return text.split(ITEM_SEP) if text else []


def encode_relevance(label: Iterable[Any] | Mapping[Any, float]) -> str:
    """A label as one text value: a list of engaged items (relevance 1 each) or item → relevance."""
    if isinstance(label, Mapping):
        return ITEM_SEP.join(f"{item_id(k)}{REL_SEP}{float(v)!r}" for k, v in label.items())
    return ITEM_SEP.join(item_id(i) for i in label)


def decode_relevance(text: str) -> dict[str, float]:
    """item → relevance of an encoded label (an empty dict: nothing engaged)."""
    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.split(ITEM_SEP):
        item, sep, rel = part.partition(REL_SEP)
        out[item] = float(rel) if sep else 1.0
    return out


def as_json(text: str | None, *, relevance: bool = False) -> str | None:
    """An encoded list (or label) as JSON text, the form a stored sample keeps (a file a person
    reads, and one that no item id can make ambiguous).

    >>> as_json("b\x1fa"), as_json("a\x1e3.0\x1fb", relevance=True), as_json("", relevance=True)
    ('["b", "a"]', '{"a": 3.0, "b": 1.0}', '{}')
    """
    import json

    if text is None:
        return None
    return json.dumps(decode_relevance(text) if relevance else decode_ranking(text))
