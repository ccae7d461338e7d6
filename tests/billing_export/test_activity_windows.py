"""The care activities read behind a run's records are those of the records' periods: a late
correction of an old period reads that period's activities, not every month in between."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from export_registry import add_patient
from sqlalchemy import Engine, insert

from rpmpipe.billing_export.evidence_load import (
    _patient_activities,
    _PatientRows,
    activity_windows,
)
from rpmpipe.registry.models import CareActivity

JAN = (date(2026, 1, 1), date(2026, 1, 30))
NOV = (date(2026, 11, 1), date(2026, 11, 30))


def _monthly_calls(engine: Engine, patient_id: str) -> None:
    """A call on the 10th of every month of 2026, and one just inside each edge of JAN."""
    rows = [
        {
            "activity_id": f"{patient_id}-{month:02d}",
            "patient_id": patient_id,
            "staff_id": "S1",
            "started_at": datetime(2026, month, 10, 16, 0, tzinfo=UTC),
            "minutes": Decimal(20),
            "kind": "phone_call",
            "interactive": True,
            "program": "RPM",
        }
        for month in range(1, 13)
    ]
    for activity_id, at in (
        ("edge-first", datetime(2026, 1, 1, 5, 0, tzinfo=UTC)),  # Dec 31 23:00 in Chicago
        ("edge-last", datetime(2026, 1, 31, 4, 0, tzinfo=UTC)),  # Jan 30 22:00 in Chicago
    ):
        rows.append({**rows[0], "activity_id": activity_id, "started_at": at})
    with engine.begin() as conn:
        conn.execute(insert(CareActivity), rows)


def test_the_activities_read_are_those_of_the_periods_not_the_months_between(
    registry: Engine,
) -> None:
    add_patient(registry, "P-01")
    _monthly_calls(registry, "P-01")
    with registry.connect() as conn:
        found = _patient_activities(_PatientRows(conn, ["P-01"]), [JAN, NOV])
    ids = sorted(a.activity_id for a in found["P-01"])
    # January's and November's calls and January's local edges; not February to October's,
    # nor December's.
    assert ids == ["P-01-01", "P-01-11", "edge-first", "edge-last"]


def test_windows_merge_what_overlaps_and_keep_each_local_date_inside() -> None:
    windows = activity_windows([NOV, (date(2026, 11, 5), date(2026, 12, 4)), JAN])
    assert windows == [
        (datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 12, 6, tzinfo=UTC)),
    ]
    assert activity_windows([]) == []


def test_many_scattered_periods_are_read_in_a_few_windows_that_cover_every_one() -> None:
    start = date(2020, 1, 1)
    periods = [
        (start + timedelta(days=40 * n), start + timedelta(days=40 * n + 9)) for n in range(300)
    ]
    windows = activity_windows(periods, most=24)
    assert len(windows) == 24
    assert all(a[1] < b[0] for a, b in zip(windows, windows[1:], strict=False))
    for first, last in periods:
        lo = datetime.combine(first - timedelta(days=1), datetime.min.time(), UTC)
        hi = datetime.combine(last + timedelta(days=2), datetime.min.time(), UTC)
        assert any(w[0] <= lo and hi <= w[1] for w in windows), (first, last)
