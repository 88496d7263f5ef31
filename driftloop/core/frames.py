"""Reading a reference sample file into a DataFrame, by its name: CSV, JSON lines or Parquet.

A ranking model's reference holds lists (the ranked items, the engagement), which JSON lines
and Parquet carry as they are; CSV cells hold them as JSON text (``["i1", "i2"]``), which the
ranking monitor reads too (:func:`detectors.ranking_monitor.encoded_lists`).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "ref.jsonl"
>>> _ = p.write_text('{"x": 1, "prediction": ["a", "b"]}\\n')
>>> read_frame(p)["prediction"].tolist()
[['a', 'b']]
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["read_frame"]


def read_frame(path: str | Path) -> pd.DataFrame:
    """The table in ``path``: ``.jsonl``/``.ndjson`` (JSON lines), ``.parquet``, else CSV."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        return pd.read_json(p, lines=True, dtype=False)
    if name.endswith(".parquet"):
        return pd.read_parquet(p)
    return pd.read_csv(p)
