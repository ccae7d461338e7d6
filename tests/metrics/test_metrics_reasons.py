"""Reasons of records that are not billable or pending: readings set aside say why, with
counts and dates; an open period tells what it has already reached."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from engagement_world import World, local, of_kind
from test_metrics_csv_bulk import _both

from rpmpipe.records import EngagementRecord

CHICAGO = "America/Chicago"


def _run(world: World, as_of: date) -> list[EngagementRecord]:
    """The records, after checking that the bulk CSV path words them byte for byte alike."""
    expected, got, _ = _both(world, as_of)
    assert got == expected
    return world.compute(as_of)


def _supply(records: list[EngagementRecord], pid: str) -> list[EngagementRecord]:
    return of_kind(records, "device_supply", pid)


def test_readings_before_the_device_assignment_are_named_in_the_no_data_reason() -> None:
    w = World().patient("P1", start=date(2026, 9, 1), consent=date(2026, 9, 1))
    w.assign("BP-R6", "P1", date(2026, 9, 23))
    for i in range(20):
        w.reading("BP-R6", local(date(2026, 9, 3) + timedelta(days=i), 9, 0, CHICAGO))
    (record,) = _supply(_run(w, date(2026, 9, 22)), "P1")
    assert record.status == "pending"
    assert record.reason == (
        "no qualifying readings since the enrollment start 2026-09-01; not counted: "
        "20 readings from BP-R6 on 20 days it was not assigned to this patient "
        "(2026-09-03 to 2026-09-22)"
    )


def test_one_unassigned_day_is_named_by_its_date_and_counts_every_reading() -> None:
    w = World().patient("P1", start=date(2026, 11, 1), consent=date(2026, 11, 1))
    w.assign("BP-R6", "P1", date(2026, 11, 10))
    w.reading("BP-R6", local(date(2026, 11, 4), 8, 0, CHICAGO))
    w.reading("BP-R6", local(date(2026, 11, 4), 20, 0, CHICAGO))
    (record,) = _supply(_run(w, date(2026, 11, 8)), "P1")
    assert record.reason.endswith(
        "not counted: 2 readings from BP-R6 on 1 day it was not assigned to this patient "
        "(2026-11-04)"
    )


def test_the_local_date_decides_whether_the_device_was_assigned() -> None:
    # 03:00 UTC on Nov 10 is still Nov 9 in Chicago, the day before the assignment.
    w = World().patient("P1", start=date(2026, 11, 1), consent=date(2026, 11, 1))
    w.assign("BP-R6", "P1", date(2026, 11, 10))
    w.reading("BP-R6", local(date(2026, 11, 9), 21, 0, CHICAGO))
    (record,) = _supply(_run(w, date(2026, 11, 12)), "P1")
    assert "(2026-11-09)" in record.reason


def test_manual_and_clock_suspect_readings_are_named_on_a_period_not_billable() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 2), 1)
    w.reading("D-P1", local(date(2026, 3, 5), 8, 0, CHICAGO), manual=True)
    w.reading("D-P1", local(date(2026, 3, 6), 8, 0, CHICAGO), suspect=True)
    w.reading("D-P1", local(date(2026, 3, 7), 8, 0, CHICAGO), suspect=True, manual=True)
    (period,) = [r for r in _supply(_run(w, date(2026, 4, 2)), "P1") if r.status != "pending"]
    assert period.status == "not_billable"
    assert period.reason == (
        "1 day with data, 2 needed for the short supply code, 16 for 99454; not counted: "
        "2 readings from D-P1 entered manually on 2 days (2026-03-05 to 2026-03-07), "
        "1 reading from D-P1 timed over 10 minutes after receipt (clock error) on 1 day "
        "(2026-03-06)"
    )


def test_readings_before_consent_are_named_on_the_first_period() -> None:
    w = World().patient("P1", start=date(2026, 3, 1), consent=date(2026, 3, 10))
    w.daily("P1", date(2026, 3, 4), 7)  # Mar 4..10: six days before consent, one after
    first = _supply(_run(w, date(2026, 4, 15)), "P1")[0]
    assert first.status == "not_billable" and first.transmission_days == 1
    assert first.reason.endswith(
        "not counted: readings on 6 days before consent on 2026-03-10 (2026-03-04 to 2026-03-09)"
    )


def test_a_device_with_another_patient_that_day_is_not_this_patients_reason() -> None:
    w = World().patient("P1").patient("P2")
    w.assign("D-X", "P1", date(2026, 3, 1), date(2026, 3, 5))
    w.assign("D-X", "P2", date(2026, 3, 11))
    for i in range(16):  # Mar 5 (P1), Mar 6..10 (nobody), Mar 11..20 (P2)
        w.reading("D-X", local(date(2026, 3, 5) + timedelta(days=i), 12, 0, CHICAGO))
    records = _run(w, date(2026, 4, 20))
    p1 = _supply(records, "P1")[0]
    assert p1.status == "not_billable"
    assert p1.reason.endswith(
        "not counted: 5 readings from D-X on 5 days it was not assigned to this patient "
        "(2026-03-06 to 2026-03-10)"
    )
    p2 = _supply(records, "P2")[0]
    assert p2.status == "billable" and p2.transmission_days == 10
    assert "not counted" not in p2.reason


def test_set_aside_readings_on_days_that_count_anyway_are_not_a_reason() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 2), 1)
    w.reading("D-P1", local(date(2026, 3, 2), 20, 0, CHICAGO), manual=True)
    w.reading("BP-9", local(date(2026, 3, 2), 21, 0, CHICAGO))
    w.assign("BP-9", "P1", date(2026, 3, 20))
    (period,) = [r for r in _supply(_run(w, date(2026, 4, 2)), "P1") if r.status != "pending"]
    assert period.status == "not_billable"
    assert "not counted" not in period.reason


def test_billable_records_carry_no_set_aside_note() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 1), 20)
    w.reading("D-P1", local(date(2026, 3, 25), 8, 0, CHICAGO), manual=True)
    period = _supply(_run(w, date(2026, 4, 5)), "P1")[0]
    assert period.status == "billable"
    assert period.reason == "20 days with data (billed 99454)"


def test_battery_messages_are_never_a_reason() -> None:
    w = World().patient("P1", start=date(2026, 3, 1))
    w.reading("D-P1", local(date(2026, 3, 3), 8, 0, CHICAGO), kind="battery", manual=True)
    (record,) = _supply(_run(w, date(2026, 3, 20)), "P1")
    assert record.reason == "no qualifying readings since the enrollment start 2026-03-01"


def test_pending_period_in_2026_says_99445_is_already_reached() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 1), 2)
    (period,) = _supply(_run(w, date(2026, 3, 5)), "P1")
    assert period.status == "pending"
    assert period.reason == (
        "period open until 2026-03-30: 2 days with data so far, 99445 reached; "
        "16 needed for 99454; 25 days still possible"
    )


def test_pending_period_with_one_day_reaches_nothing_yet() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 1), 1)
    (period,) = _supply(_run(w, date(2026, 3, 5)), "P1")
    assert period.reason == (
        "period open until 2026-03-30: 1 day with data so far, 16 needed for 99454; "
        "25 days still possible"
    )


def test_pending_period_under_the_2025_rules_has_no_short_code_to_reach() -> None:
    w = World().patient("P1", start=date(2025, 3, 1), consent=date(2025, 3, 1))
    w.daily("P1", date(2025, 3, 1), 5)
    (period,) = _supply(_run(w, date(2025, 3, 10)), "P1")
    assert period.rule_set == "CY2025"
    assert period.reason == (
        "period open until 2025-03-30: 5 days with data so far, 16 needed for 99454; "
        "20 days still possible"
    )


def test_empty_patient_zone_falls_back_to_the_organisations_zone() -> None:
    # 03:30 UTC on Mar 2 is Mar 1 in New York (the organisation) but Mar 2 in UTC.
    w = World().patient("P1", zone="")
    w.reading("D-P1", datetime(2026, 3, 2, 3, 30, tzinfo=UTC))
    period = _supply(_run(w, date(2026, 3, 5)), "P1")[0]
    assert period.evidence_dates == (date(2026, 3, 1),)


def test_an_open_period_that_reached_99454_carries_no_set_aside_note() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 1), 17)
    w.reading("D-P1", local(date(2026, 3, 20), 8, 0, CHICAGO), manual=True)
    (period,) = _supply(_run(w, date(2026, 3, 25)), "P1")
    assert period.status == "pending"
    assert period.reason == "period open until 2026-03-30: 17 days with data so far, 99454 reached"


def test_an_open_period_short_of_99454_names_the_set_aside_readings() -> None:
    w = World().patient("P1").daily("P1", date(2026, 3, 1), 3)
    w.reading("D-P1", local(date(2026, 3, 20), 8, 0, CHICAGO), manual=True)
    (period,) = _supply(_run(w, date(2026, 3, 25)), "P1")
    assert period.reason == (
        "period open until 2026-03-30: 3 days with data so far, 99445 reached; "
        "16 needed for 99454; 5 days still possible; "
        "not counted: 1 reading from D-P1 entered manually on 1 day (2026-03-20)"
    )


def test_many_set_aside_devices_are_summarised_after_three() -> None:
    w = World().patient("P1", start=date(2026, 3, 1))
    for k in range(5):
        w.assign(f"BP-{k}", "P1", date(2026, 4, 1))
        w.reading(f"BP-{k}", local(date(2026, 3, 2 + k), 8, 0, CHICAGO))
    (record,) = _supply(_run(w, date(2026, 3, 20)), "P1")
    assert record.reason.count(" it was not assigned to this patient") == 3
    assert record.reason.endswith("(2026-03-04), and 2 more")
