"""One reading, one patient: a device moving between patients in different zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.metrics.days import from_day_number, patient_days
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot

ZONES = (
    "Pacific/Kiritimati",
    "Asia/Tokyo",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
)
BASE = date(2026, 3, 1)
AS_OF = date(2026, 4, 30)


def _table(instants: list[datetime]) -> pa.Table:
    return pa.table(
        {
            "device_id": pa.array(["D1"] * len(instants), pa.string()),
            "type": pa.array(["blood_pressure"] * len(instants), pa.string()),
            "measured_at": pa.array(instants, pa.timestamp("us", tz="UTC")),
        }
    )


def _counted(snapshot: RegistrySnapshot, instants: list[datetime]) -> set[tuple[str, date]]:
    found = patient_days(_table(instants), snapshot, AS_OF, "UTC")
    return {
        (found.index.ids[p], from_day_number(d))
        for p, d in zip(found.patient.tolist(), found.day.tolist(), strict=True)
    }


def _snapshot(zones: list[str], spans: list[tuple[date, date | None]]) -> RegistrySnapshot:
    pids = [f"P{i}" for i in range(len(zones))]
    return RegistrySnapshot(
        dict(zip(pids, zones, strict=True)),
        tuple(Assignment("D1", p, s, e) for p, (s, e) in zip(pids, spans, strict=True)),
        tuple(Enrollment(p, "RPM", date(2026, 1, 1), None, date(2026, 1, 1)) for p in pids),
    )


def test_a_reading_in_the_hours_both_local_dates_match_counts_for_the_later_assignment() -> None:
    # The device leaves a Los Angeles patient at the end of March 10 and goes to a Tokyo
    # patient from March 11: at 20:00 UTC on March 10 it is March 10 in Los Angeles and
    # March 11 in Tokyo, inside both assignments.
    snapshot = _snapshot(
        ["America/Los_Angeles", "Asia/Tokyo"],
        [(date(2026, 3, 1), date(2026, 3, 10)), (date(2026, 3, 11), None)],
    )
    assert _counted(snapshot, [datetime(2026, 3, 10, 20, 0, tzinfo=UTC)]) == {
        ("P1", date(2026, 3, 11))
    }


@st.composite
def _worlds(draw: st.DrawFn) -> tuple[list[str], list[tuple[date, date | None]], list[datetime]]:
    n = draw(st.integers(1, 4))
    zones = [draw(st.sampled_from(ZONES)) for _ in range(n)]
    spans: list[tuple[date, date | None]] = []
    start = BASE
    for k in range(n):
        length = draw(st.integers(0, 5))
        end: date | None = start + timedelta(days=length)
        if k == n - 1 and draw(st.booleans()):
            end = None
        spans.append((start, end))
        if end is not None:
            # The next assignment starts the next day, or overlaps or leaves a gap a little.
            start = end + timedelta(days=draw(st.integers(0, 2)))
    minutes = st.integers(-2 * 1440, 30 * 1440)
    origin = datetime.combine(BASE, datetime.min.time(), UTC)
    instants = [
        origin + timedelta(minutes=m) for m in draw(st.lists(minutes, min_size=1, max_size=6))
    ]
    return zones, spans, instants


@settings(max_examples=120, deadline=None)
@given(_worlds())
def test_every_reading_counts_toward_at_most_one_patient(
    world: tuple[list[str], list[tuple[date, date | None]], list[datetime]],
) -> None:
    zones, spans, instants = world
    snapshot = _snapshot(zones, spans)
    together = _counted(snapshot, instants)
    alone: set[tuple[str, date]] = set()
    for at in instants:
        counted = _counted(snapshot, [at])
        assert len(counted) <= 1, (at, counted)
        # And it does count when some assignment covers its local date.
        covered = any(
            s <= at.astimezone(ZoneInfo(z)).date()
            and (e is None or at.astimezone(ZoneInfo(z)).date() <= e)
            for z, (s, e) in zip(zones, spans, strict=True)
        )
        assert len(counted) == int(covered), (at, counted)
        alone |= counted
    # Counting all readings at once gives the same days as one by one.
    assert together == alone
