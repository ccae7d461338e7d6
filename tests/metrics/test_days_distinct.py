"""distinct(): numpy.unique's sorted distinct values, by a sort (NumPy 2.3's hashing unique is
tens of times slower on millions of day keys)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rpmpipe.metrics.days import distinct


@given(st.lists(st.integers(-(2**62), 2**62), max_size=300), st.integers(0, 4))
def test_distinct_is_the_sorted_set_of_the_keys(values: list[int], runs: int) -> None:
    keys = np.array(values, np.int64)
    if runs:  # a concatenation of sorted runs, as compaction and merging give it
        keys = np.concatenate([np.sort(part) for part in np.array_split(keys, runs)])
    got = distinct(keys)
    assert got.dtype == np.int64
    assert got.tolist() == sorted(set(values))
