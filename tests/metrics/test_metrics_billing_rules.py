"""What the rules allow and nothing more: one reading one patient, one supply code per period
across enrollments, care time counted once, nothing outside the episode."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

from engagement_world import World, codes, local, of_kind
from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.metrics.engagement import NO_DEVICE
from rpmpipe.metrics.report import record_to_dict, write_csv
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import EngagementRecord

CHI = "America/Chicago"
NPI_A, NPI_B = "1234567893", "1245319599"


def _billed(records: list[EngagementRecord]) -> list[tuple[str, str, date]]:
    return [
        (r.kind, line.code, line.date_of_service)
        for r in records
        if r.status == "billable"
        for line in r.lines
    ]


# --- point 6: care time counted once ------------------------------------------------------


def test_two_entries_of_the_same_call_count_once_and_the_duplicate_is_named(
    world: World,
) -> None:
    world.patient("P1")
    at = local(date(2026, 3, 9), 9, 0, CHI)
    world.activity("P1", at, 12, aid="A1").activity("P1", at, 12, aid="A2")
    (month,) = of_kind(world.compute(date(2026, 4, 2)), "treatment_management")
    assert month.management_minutes == 12
    assert codes(month) == [("99470", 1)]
    assert month.evidence_activity_ids == ("A1",)
    assert month.activities_not_counted == (("A2", "exact duplicate of A1"),)
    assert "A2 (exact duplicate of A1)" in month.reason
    assert record_to_dict(month)["evidence"]["activities_not_counted"] == [
        {"activity_id": "A2", "why": "exact duplicate of A1"}
    ]


def test_overlapping_contacts_of_two_staff_count_the_union_of_their_time(world: World) -> None:
    world.patient("P1")
    world.activity("P1", local(date(2026, 3, 9), 9, 0, CHI), 20, aid="A1", staff="S1")
    world.activity("P1", local(date(2026, 3, 9), 9, 10, CHI), 20, aid="A2", staff="S2")
    (month,) = of_kind(world.compute(date(2026, 4, 2)), "treatment_management")
    assert month.management_minutes == 30  # 9:00 to 9:30, not 40
    assert codes(month) == [("99457", 1)]
    assert month.evidence_activity_ids == ("A1", "A2")


def test_an_entry_over_max_activity_minutes_is_held_for_review_with_a_reason(
    world: World,
) -> None:
    world.patient("P1")
    world.activity("P1", local(date(2026, 3, 9), 9, 0, CHI), 180, aid="A-long")
    world.activity("P1", local(date(2026, 3, 10), 9, 0, CHI), 12, aid="A-ok")
    (month,) = of_kind(world.compute(date(2026, 4, 2)), "treatment_management")
    assert month.management_minutes == 12
    assert month.activities_not_counted == (
        ("A-long", "held for review: 180 minutes in one entry, over the 120 allowed"),
    )
    assert "held for review" in month.reason
    (month,) = of_kind(
        world.compute(date(2026, 4, 2), max_activity_minutes=240), "treatment_management"
    )
    assert month.management_minutes == 192


def test_care_time_belongs_to_the_local_month_in_which_each_entry_starts(world: World) -> None:
    world.patient("P1")
    # 23:50 on March 31 for 30 minutes; a second entry from 00:00 on April 1 overlaps it.
    world.activity("P1", local(date(2026, 3, 31), 23, 50, CHI), 30, aid="A1")
    world.activity("P1", local(date(2026, 4, 1), 0, 0, CHI), 20, aid="A2", staff="S2")
    months = of_kind(world.compute(date(2026, 5, 2)), "treatment_management")
    assert [(m.period_start, m.management_minutes) for m in months] == [
        (date(2026, 3, 1), 30),
        (date(2026, 4, 1), 0),  # fully inside A1's interval, which started in March
    ]


# --- point 13: management presumes monitoring ---------------------------------------------


def test_management_time_with_no_device_assigned_that_month_is_not_billable(
    world: World,
) -> None:
    world.zones["P1"] = CHI
    world.enrollments.append(Enrollment("P1", "RPM", date(2026, 3, 1), None, date(2026, 3, 1)))
    world.activity("P1", local(date(2026, 3, 9), 9, 0, CHI), 45)
    (month,) = of_kind(world.compute(date(2026, 4, 2)), "treatment_management")
    assert month.status == "not_billable" and month.lines == ()
    assert NO_DEVICE in month.reason
    assert NO_DEVICE == "no device assigned to the patient this month"


# --- point 14: two minute figures ----------------------------------------------------------


def test_records_report_management_and_interactive_minutes_apart(world: World) -> None:
    world.patient("P1")
    world.activity("P1", local(date(2026, 3, 2), 9, 0, CHI), 27, aid="A-call")
    world.activity(
        "P1", local(date(2026, 3, 3), 9, 0, CHI), 10, interactive=False, kind="data_review"
    )
    (month,) = of_kind(world.compute(date(2026, 4, 2)), "treatment_management")
    assert (month.management_minutes, month.interactive_minutes) == (37, 27)
    as_json = json.loads(json.dumps(record_to_dict(month)))
    assert (as_json["management_minutes"], as_json["interactive_minutes"]) == (37, 27)
    out = io.StringIO()
    write_csv([month], out)
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert (row["management_minutes"], row["interactive_minutes"]) == ("37", "27")


# --- point 15: reasons for what is not counted ---------------------------------------------


def test_every_month_with_time_entries_has_a_record_with_a_reason(world: World) -> None:
    world.patient("P1", consent=None)
    world.activity("P1", local(date(2026, 3, 9), 9, 0, CHI), 25)
    world.activity("P1", local(date(2026, 4, 9), 9, 0, CHI), 5)
    # A patient with time entries and no RPM enrollment at all.
    world.zones["P2"] = CHI
    world.activity("P2", local(date(2026, 3, 9), 9, 0, CHI), 15)
    records = world.compute(date(2026, 5, 2))
    months = [
        (r.patient_id, r.period_start, r.status) for r in of_kind(records, "treatment_management")
    ]
    assert months == [
        ("P1", date(2026, 3, 1), "not_billable"),
        ("P1", date(2026, 4, 1), "not_billable"),
        ("P2", date(2026, 3, 1), "not_billable"),
    ]
    assert all(r.reason for r in records)
    p2 = of_kind(records, "treatment_management", "P2")[0]
    assert p2.management_minutes == 15 and "no RPM enrollment" in p2.reason


# --- point 5: calendar-month periods -------------------------------------------------------


def test_a_31_day_calendar_month_with_data_every_day_bills_99454_with_its_setup(
    world: World,
) -> None:
    world.patient("P1").daily("P1", date(2026, 3, 1), 31)
    records = world.compute(date(2026, 4, 2), supply_period="calendar_month")
    assert _billed(records) == [
        ("setup", "99453", date(2026, 3, 31)),
        ("device_supply", "99454", date(2026, 3, 31)),
    ]


# --- points 2 and 4: episodes, and the practitioner who owns the days ---------------------


def test_a_new_enrollment_soon_after_the_last_continues_the_episode(world: World) -> None:
    world.patient("P1", start=date(2026, 3, 1), end=date(2026, 3, 20), npi=NPI_A)
    world.enrollments.append(
        Enrollment("P1", "RPM", date(2026, 3, 25), None, date(2026, 3, 25), NPI_B)
    )
    world.daily("P1", date(2026, 3, 1), 20).daily("P1", date(2026, 3, 25), 40)
    records = world.compute(date(2026, 5, 10))
    supply = [r for r in of_kind(records, "device_supply") if r.status == "billable"]
    for a, b in zip(supply, supply[1:], strict=False):
        assert a.period_end < b.period_start  # never overlapping
    assert [(r.period_start, r.period_end) for r in supply] == [
        (date(2026, 3, 1), date(2026, 3, 30)),
        (date(2026, 3, 31), date(2026, 4, 29)),
    ]
    setups = [r for r in of_kind(records, "setup") if r.status == "billable"]
    assert len(setups) == 1 and codes(setups[0]) == [("99453", 1)]
    assert {r.episode_start for r in records} == {date(2026, 3, 1)}


def test_an_enrollment_after_a_longer_gap_starts_a_new_episode(world: World) -> None:
    world.patient("P1", start=date(2026, 3, 1), end=date(2026, 3, 20))
    world.enrollments.append(Enrollment("P1", "RPM", date(2026, 3, 25), None, date(2026, 3, 25)))
    world.daily("P1", date(2026, 3, 1), 20).daily("P1", date(2026, 3, 25), 40)
    records = world.compute(date(2026, 5, 10), episode_gap_days=3)
    setups = [r for r in of_kind(records, "setup") if r.status == "billable"]
    assert [s.episode_start for s in setups] == [date(2026, 3, 1), date(2026, 3, 25)]
    supply = [r for r in of_kind(records, "device_supply") if r.status == "billable"]
    for a, b in zip(supply, supply[1:], strict=False):
        assert a.period_end < b.period_start


def test_lines_go_out_under_the_practitioner_whose_enrollment_owns_the_days(
    world: World,
) -> None:
    world.patient("P1", start=date(2026, 3, 1), npi=NPI_A)
    # A second practitioner's enrollment overlaps from March 20: the days stay with A's.
    world.enrollments.append(
        Enrollment("P1", "RPM", date(2026, 3, 20), None, date(2026, 3, 20), NPI_B)
    )
    world.daily("P1", date(2026, 3, 1), 30)
    world.activity("P1", local(date(2026, 3, 9), 9, 0, CHI), 25)
    records = world.compute(date(2026, 4, 2))
    billed = [r for r in records if r.status == "billable"]
    assert {r.kind for r in billed} == {"setup", "device_supply", "treatment_management"}
    assert {r.ordering_npi for r in billed} == {NPI_A}


# --- point 8: nothing billed outside the episode -------------------------------------------


def test_no_date_of_service_falls_after_the_enrollment_end(world: World) -> None:
    world.patient("P1", start=date(2026, 7, 1), end=date(2026, 7, 12))
    world.daily("P1", date(2026, 7, 1), 12)
    world.activity("P1", local(date(2026, 7, 5), 9, 0, CHI), 25)
    records = world.compute(date(2026, 8, 5))
    billed = _billed(records)
    assert {kind for kind, _code, _dos in billed} == {
        "setup",
        "device_supply",
        "treatment_management",
    }
    assert all(dos <= date(2026, 7, 12) for _kind, _code, dos in billed), billed
    supply = of_kind(records, "device_supply")[0]
    assert (supply.period_start, supply.period_end) == (date(2026, 7, 1), date(2026, 7, 12))


# --- point 12: an impossible stored date cannot stop billing -------------------------------


def test_an_activity_with_an_impossible_date_is_not_counted_and_metrics_runs(
    world: World,
) -> None:
    world.patient("P1").daily("P1", date(2026, 3, 1), 20)
    world.activity("P1", datetime(1, 1, 1, tzinfo=UTC), 30, aid="A-old")
    world.activity("P1", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), 30, aid="A-far")
    world.activity("P1", local(date(2026, 3, 9), 9, 0, CHI), 25, aid="A-ok")
    records = world.compute(date(2026, 4, 2))
    months = of_kind(records, "treatment_management")
    assert [(m.period_start, m.management_minutes) for m in months] == [
        (date(2026, 3, 1), 25),
        (date(2026, 4, 1), 0),
    ]
    april = months[1]
    assert [aid for aid, _why in april.activities_not_counted] == ["A-far", "A-old"]
    assert "impossible start 0001-01-01T00:00:00+00:00" in april.reason
    assert april.status == "pending" and april.lines == ()
    assert of_kind(records, "device_supply")[0].status == "billable"


# --- points 2, 5 and 8 over random enrollments ----------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.integers(0, 40), st.one_of(st.none(), st.integers(0, 60))),
        min_size=1,
        max_size=3,
    ),
    days=st.lists(st.integers(0, 150), max_size=80),
    mode=st.sampled_from(["rolling_30", "calendar_month"]),
)
def test_supply_periods_never_overlap_and_setup_goes_with_a_supply_line(
    spans: list[tuple[int, int | None]], days: list[int], mode: str
) -> None:
    world = World()
    world.zones["P1"] = CHI
    world.assign("D-P1", "P1", date(2026, 1, 1))
    start = date(2026, 2, 1)
    ends: list[date | None] = []
    for gap, length in spans:
        start = start + timedelta(days=gap)
        end = None if length is None else start + timedelta(days=length)
        world.enrollments.append(Enrollment("P1", "RPM", start, end, start, NPI_A))
        ends.append(end)
        if end is not None:
            start = end
    for d in sorted(set(days)):
        world.daily("P1", date(2026, 2, 1) + timedelta(days=d), 1)
    records = world.compute(date(2026, 8, 1), supply_period=mode)
    billed = [r for r in records if r.kind == "device_supply" and r.status == "billable"]
    for a, b in zip(billed, billed[1:], strict=False):
        assert a.period_end < b.period_start
    supply_periods = {r.period_start for r in billed}
    setups = [r for r in records if r.kind == "setup" and r.status == "billable"]
    assert all(s.period_start in supply_periods for s in setups)
    assert len(setups) == len({s.episode_start for s in setups})
    if all(e is not None for e in ends):
        last = max(e for e in ends if e is not None)
        assert all(
            line.date_of_service <= last
            for r in records
            if r.status == "billable"
            for line in r.lines
        )
