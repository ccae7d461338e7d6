"""RPM's management months count one set of entries however they arrive: the job's columns
(trimmed across programs) and the pure API's activities give the same entries and months."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from rpmpipe.metrics.care_table import ActivityColumns, care_time, objects
from rpmpipe.metrics.management_months import (
    MonthEntries,
    management_months,
    rpm_management_entries,
)
from rpmpipe.metrics.minutes import micros
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot
from rpmpipe.records import Activity

ZONE = "America/New_York"
AS_OF = date(2026, 9, 30)
START = date(2026, 8, 1)
NPI = "1234567893"


def _at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 9, day, hour, minute, tzinfo=UTC)


def _activities() -> list[Activity]:
    def act(aid: str, at: datetime, minutes: str, **kw: object) -> Activity:
        base = {"kind": "phone_call", "interactive": True, "program": "RPM"}
        return Activity(aid, "P1", "S1", at, Decimal(minutes), **{**base, **kw})  # type: ignore[arg-type]

    return [
        act("C1", _at(3, 13, 50), "20", program="CCM"),  # 13:50-14:10, CCM's, earlier
        act("R1", _at(3, 14, 0), "30"),  # 14:00-14:30: the first 10 minutes are CCM's
        act("R2", _at(3, 13, 55), "10"),  # inside CCM's time: nothing left for RPM
        act("R3", _at(4, 14, 0), "25", voided_reason="entered twice"),
        act("R4", _at(5, 14, 0), "12.50", kind="secure_message"),
        act("R5", _at(6, 9, 0), "7"),
        act("R6", _at(6, 9, 0), "7", interactive=False),  # R5's exact duplicate
        act("R7", _at(7, 9, 0), "130"),  # over the one-entry limit
    ]


def _columns(acts: list[Activity]) -> ActivityColumns:
    return ActivityColumns(
        objects([a.activity_id for a in acts]),
        objects([a.patient_id for a in acts]),
        objects([a.staff_id for a in acts]),
        np.array([micros(a.started_at) for a in acts], np.int64),
        np.array([int(a.minutes * 100) for a in acts], np.int64),
        objects([a.kind for a in acts]),
        np.array([a.interactive for a in acts], np.bool_),
        objects([a.program for a in acts]),
        objects([a.performer for a in acts]),
        objects([a.voided_reason for a in acts]),
    )


def _snapshot() -> RegistrySnapshot:
    enrolled = tuple(Enrollment("P1", p, START, None, START, NPI) for p in ("CCM", "RPM"))
    return RegistrySnapshot({"P1": ZONE}, (Assignment("BP-1", "P1", START),), enrolled)


def test_the_jobs_rpm_entries_are_the_activities_trimmed_across_programs() -> None:
    acts = _activities()
    snapshot = _snapshot()
    time = care_time(_columns(acts), snapshot.enrollments, {"P1": ZONE}, ZONE, AS_OF, 120, False)
    entries = rpm_management_entries(_columns(acts), time)
    # CCM's own entry and the RPM entry it covers are gone; R1 starts where CCM's time ends.
    assert entries.activity_id.tolist() == ["R1", "R3", "R4", "R5", "R6", "R7"]
    r1 = 0
    assert int(entries.at[r1]) == micros(_at(3, 14, 10))
    assert entries.minutes[r1] == Decimal("20") and int(entries.length[r1]) == 20 * 60_000_000
    # Every other entry as it is (the voided and the over-long ones, for RPM to name why).
    for k, a in zip(range(1, 6), acts[3:], strict=True):
        assert entries.activity_id[k] == a.activity_id
        assert int(entries.at[k]) == micros(a.started_at) and entries.minutes[k] == a.minutes
        assert entries.started_at(k) == a.started_at

    by_hand = [
        replace(acts[1], started_at=_at(3, 14, 10), minutes=Decimal("20")),
        *acts[3:],
    ]
    months = management_months(entries, snapshot, AS_OF, ZONE, "RPM", False, Decimal(120))
    same = management_months(
        MonthEntries.of(by_hand), snapshot, AS_OF, ZONE, "RPM", False, Decimal(120)
    )
    assert months == same
    (september,) = months
    # R1's 20 minutes, R4's 12.50 (not interactive: a secure message), R5's 7; R6 a
    # duplicate, R3 voided, R7 held for review.
    assert september.minutes == Decimal("39.50")
    assert september.interactive_minutes == Decimal("27")
    assert set(september.activity_ids) == {"R1", "R4", "R5"}
    assert {aid for aid, _ in september.not_counted} == {"R3", "R6", "R7"}


def test_entries_made_from_activities_keep_their_own_precision_and_zone() -> None:
    """The pure API's activities are taken as they are: minutes finer than hundredths and a
    start in another zone (the text of an impossible start shows it as given)."""
    eastern = datetime(2026, 9, 3, 10, 0, tzinfo=UTC).astimezone(ZoneInfo(ZONE))
    fine = Activity("A1", "P1", "S1", eastern, Decimal("19.995"), "phone_call", True)
    entries = MonthEntries.of([fine])
    assert int(entries.length[0]) == 1_199_700_000
    assert entries.started_at(0).utcoffset() == timedelta(hours=-4)
    assert int(entries.at[0]) == micros(datetime(2026, 9, 3, 10, 0, tzinfo=UTC))
