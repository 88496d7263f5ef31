"""``driftloop.core.events.label_key`` (events) and ``detectors.reference.class_label`` (reference
samples) are one rule written twice (the base layer imports nothing of the detectors, the detectors
nothing of the project): they must give the same text for every value, or an event's class would
not compare equal to the reference's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.reference import class_label
from driftloop.core.events import label_key

VALUES = [None, True, False, 0, 1, -7, 1.0, 2.5, -0.0, float("nan"), float("inf"), 1e300, "1", "cat", "",
          np.int64(3), np.int8(-1), np.uint64(2**63), np.float32(1.0), np.float64(0.1), np.float16(2.5),
          np.bool_(True), np.bool_(False), np.nan, pd.NA, pd.NaT, 10**30, b"x"]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_same_text_for_each_kind_of_value(value):
    assert label_key(value) == class_label(value)


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=20), st.integers(-2**63, 2**63 - 1).map(np.int64),
                 st.floats(width=32).map(np.float32)))
def test_same_text_for_any_value(value):
    assert label_key(value) == class_label(value)
