"""One union of care time (metrics.minutes.new_shares) under RPM's months and every program's
counted minutes: shares add up to the measure of the union, a minute counts once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from rpmpipe.metrics.care_time import TimeEntry, counted_minutes
from rpmpipe.metrics.minutes import micros, new_shares

BASE = datetime(2026, 3, 1, 15, tzinfo=UTC)

intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60)), max_size=12)


@given(intervals)
def test_shares_add_up_to_the_union_and_none_exceeds_its_interval(
    spans: list[tuple[int, int]],
) -> None:
    ordered = sorted((start, start + length) for start, length in spans)
    shares = new_shares(ordered)
    covered = {t for start, end in ordered for t in range(start, end)}
    assert sum(shares) == len(covered)
    assert all(0 <= s <= end - start for s, (start, end) in zip(shares, ordered, strict=True))


@given(intervals)
def test_counted_minutes_are_the_union_of_the_entries(spans: list[tuple[int, int]]) -> None:
    entries = [
        TimeEntry(
            f"A{i:02d}",
            "P1",
            "CCM",
            "clinical_staff",
            "phone_call",
            BASE + timedelta(minutes=start, microseconds=7),
            Decimal(length),
            False,
        )
        for i, (start, length) in enumerate(spans)
    ]
    counted = counted_minutes(entries)
    covered = {t for start, length in spans for t in range(start, start + length)}
    assert sum(counted.values(), Decimal(0)) == len(covered)


def test_micros_are_exact_for_any_stored_instant() -> None:
    moment = datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert micros(moment) - micros(moment - timedelta(microseconds=1)) == 1
    assert micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
