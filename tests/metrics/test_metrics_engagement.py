"""Counting days and minutes, and the records they become, on plain values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from engagement_world import World, codes, iso_dates, local, of_kind

from rpmpipe.metrics.engagement import compute_engagement
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.settings import RuleSettings

MAR1 = date(2026, 3, 1)
AFTER_P1 = date(2026, 4, 5)  # period 1 (Mar 1..Mar 30) is final, period 2 is pending


@pytest.mark.parametrize(
    ("days", "status", "lines", "reason"),
    [
        (
            1,
            "not_billable",
            [],
            "1 day with data, 2 needed for the short supply code, 16 for 99454",
        ),
        (2, "billable", [("99445", 1)], "2 days with data, 16 needed for 99454 (billed 99445)"),
        (15, "billable", [("99445", 1)], "15 days with data, 16 needed for 99454 (billed 99445)"),
        (16, "billable", [("99454", 1)], "16 days with data (billed 99454)"),
        (30, "billable", [("99454", 1)], "30 days with data (billed 99454)"),
    ],
)
def test_cy2026_supply_routing_by_days(
    world: World, days: int, status: str, lines: list[tuple[str, int]], reason: str
) -> None:
    world.patient("P1").daily("P1", MAR1, days)
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert (first.period_start, first.period_end) == (MAR1, date(2026, 3, 30))
    assert first.transmission_days == days
    assert first.status == status
    assert codes(first) == lines
    assert first.reason == reason
    assert all(x.date_of_service == date(2026, 3, 30) for x in first.lines)


@pytest.mark.parametrize(
    ("days", "status", "lines"),
    [
        (1, "not_billable", []),
        (2, "not_billable", []),
        (15, "not_billable", []),
        (16, "billable", [("99454", 1)]),
        (30, "billable", [("99454", 1)]),
    ],
)
def test_cy2025_supply_has_no_short_code(
    world: World, days: int, status: str, lines: list[tuple[str, int]]
) -> None:
    start = date(2025, 3, 1)
    world.patient("P1", start=start, consent=start).daily("P1", start, days)
    first = of_kind(world.compute(date(2025, 4, 5)), "device_supply")[0]
    assert first.rule_set == "CY2025"
    assert (first.status, codes(first)) == (status, lines)
    if days < 16:
        assert first.reason == f"{days} day{'s' if days > 1 else ''} with data, 16 needed for 99454"


@pytest.mark.parametrize(
    ("start", "days", "setup_lines"),
    [
        (date(2026, 3, 1), 1, []),
        (date(2026, 3, 1), 2, [("99453", 1)]),
        (date(2025, 3, 1), 15, []),
        (date(2025, 3, 1), 16, [("99453", 1)]),
    ],
)
def test_setup_is_billed_on_the_first_qualifying_period(
    world: World, start: date, days: int, setup_lines: list[tuple[str, int]]
) -> None:
    world.patient("P1", start=start, consent=start).daily("P1", start, days)
    records = world.compute(start + timedelta(days=35))
    (setup,) = of_kind(records, "setup")
    assert codes(setup) == setup_lines
    if setup_lines:
        supply = of_kind(records, "device_supply")[0]
        assert setup.status == "billable"
        assert setup.lines[0].date_of_service == supply.lines[0].date_of_service
    else:
        assert setup.status == "pending"
        assert "no supply period has reached" in setup.reason


def test_setup_waits_for_a_later_period_and_is_billed_once(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 1).daily("P1", date(2026, 3, 31), 20)
    world.daily("P1", date(2026, 4, 30), 20)
    records = world.compute(date(2026, 6, 1))
    (setup,) = of_kind(records, "setup")
    assert setup.period_start == date(2026, 3, 31)
    assert codes(setup) == [("99453", 1)]
    assert setup.lines[0].date_of_service == date(2026, 4, 29)


def test_second_and_third_periods_follow_back_to_back(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 90)
    supply = of_kind(world.compute(date(2026, 6, 1)), "device_supply")
    spans = [(r.period_start, r.period_end, r.transmission_days, codes(r)) for r in supply]
    assert spans[:3] == [
        (date(2026, 3, 1), date(2026, 3, 30), 30, [("99454", 1)]),
        (date(2026, 3, 31), date(2026, 4, 29), 30, [("99454", 1)]),
        (date(2026, 4, 30), date(2026, 5, 29), 30, [("99454", 1)]),
    ]
    # The fourth period exists (0 days so far) and is still open on the as-of date.
    assert spans[3][:3] == (date(2026, 5, 30), date(2026, 6, 28), 0)
    assert supply[3].status == "pending"


def test_a_period_is_never_stretched_to_reach_16_days(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 15).daily("P1", date(2026, 3, 31), 5)
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.transmission_days == 15
    assert codes(first) == [("99445", 1)]


def test_period_anchors_on_first_reading_after_enrollment_start(world: World) -> None:
    world.patient("P1", start=date(2026, 3, 10), consent=date(2026, 3, 10))
    world.daily("P1", MAR1, 20)  # Mar 1..20: only Mar 10..20 count
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.period_start == date(2026, 3, 10)
    assert first.transmission_days == 11
    assert min(first.evidence_dates) == date(2026, 3, 10)


def test_readings_before_consent_do_not_count(world: World) -> None:
    world.patient("P1", start=MAR1, consent=date(2026, 3, 5)).daily("P1", MAR1, 10)
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.period_start == date(2026, 3, 5)
    assert first.transmission_days == 6


def test_no_consent_records_show_the_days_and_minutes_that_would_count(world: World) -> None:
    world.patient("P1", consent=None).daily("P1", MAR1, 20)
    world.activity("P1", local(date(2026, 3, 10), 10, 0, "America/Chicago"), 30)
    records = world.compute(AFTER_P1)
    assert [(r.kind, r.status, r.reason) for r in records] == [
        (
            "device_supply",
            "not_billable",
            "no consent on file: 20 days with data would count once consent is on file",
        ),
        (
            "treatment_management",
            "not_billable",
            "no consent on file: 30 minutes with 1 interactive communication would count "
            "once consent is on file",
        ),
    ]
    supply, month = records
    assert supply.transmission_days == 20 and len(supply.evidence_dates) == 20
    assert month.management_minutes == 30 and month.lines == ()


def test_enrollment_without_readings_is_pending_with_a_reason(world: World) -> None:
    world.patient("P1")
    (record,) = world.compute(AFTER_P1)
    assert record.status == "pending"
    assert record.reason == "no qualifying readings since the enrollment start 2026-03-01"


@pytest.mark.parametrize(
    ("manual", "suspect", "kind", "counted"),
    [
        (False, False, "blood_pressure", True),
        (False, False, "body_weight", True),
        (True, False, "blood_pressure", False),
        (False, True, "blood_pressure", False),
        (False, False, "battery", False),
    ],
)
def test_only_transmitted_physiologic_readings_with_a_sane_clock_count(
    world: World, manual: bool, suspect: bool, kind: str, counted: bool
) -> None:
    world.patient("P1").daily("P1", MAR1, 3)
    world.reading("D-P1", local(date(2026, 3, 10), 9, 0, "America/Chicago"), kind, manual, suspect)
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.transmission_days == (4 if counted else 3)


def test_absent_flag_columns_are_treated_as_false(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 5)
    records = compute_engagement(
        world.table(with_flags=False),
        world.snapshot(),
        [],
        AFTER_P1,
        RuleSettings(),
        "America/New_York",
    )
    assert of_kind(records, "device_supply")[0].transmission_days == 5


def test_duplicates_and_several_readings_a_day_count_once(world: World) -> None:
    world.patient("P1")
    when = local(date(2026, 3, 2), 8, 0, "America/Chicago")
    for _ in range(3):
        world.reading("D-P1", when)
    world.reading("D-P1", when + timedelta(hours=10))
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.transmission_days == 1
    assert first.evidence_dates == (date(2026, 3, 2),)


def test_several_devices_count_their_days_together_once(world: World) -> None:
    world.patient("P1").assign("SCALE-1", "P1", date(2026, 1, 1))
    world.daily("P1", MAR1, 10)  # cuff: Mar 1..10
    for i in range(5, 17):  # scale: Mar 6..17
        world.reading(
            "SCALE-1", local(MAR1 + timedelta(days=i), 7, 0, "America/Chicago"), "body_weight"
        )
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.transmission_days == 17
    assert codes(first) == [("99454", 1)]


def test_device_reassignment_mid_period_splits_readings_by_local_date(world: World) -> None:
    world.zones.update(P1="America/Chicago", P2="America/Chicago")
    world.enrollments.append(Enrollment("P1", "RPM", MAR1, None, MAR1))
    world.enrollments.append(Enrollment("P2", "RPM", MAR1, None, MAR1))
    world.assign("D1", "P1", MAR1, date(2026, 3, 10)).assign("D1", "P2", date(2026, 3, 11))
    for i in range(20):  # Mar 1..20
        world.reading("D1", local(MAR1 + timedelta(days=i), 12, 0, "America/Chicago"))
    records = world.compute(AFTER_P1)
    p1 = of_kind(records, "device_supply", "P1")[0]
    p2 = of_kind(records, "device_supply", "P2")[0]
    assert (p1.transmission_days, max(p1.evidence_dates)) == (10, date(2026, 3, 10))
    assert (p2.transmission_days, p2.period_start) == (10, date(2026, 3, 11))


def test_reading_from_unassigned_device_does_not_count(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 3)
    world.reading("UNKNOWN", local(date(2026, 3, 9), 9, 0, "America/Chicago"))
    assert of_kind(world.compute(AFTER_P1), "device_supply")[0].transmission_days == 3


def test_local_dates_across_the_dst_change_follow_the_patient_zone(world: World) -> None:
    world.patient("P1", zone="America/New_York")
    # 04:30 UTC is 23:30 the evening before under EST, 00:30 the same day under EDT (from Mar 8).
    for day in (7, 8, 9):
        world.reading("D-P1", datetime(2026, 3, day, 4, 30, tzinfo=UTC))
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert iso_dates(first.evidence_dates) == ["2026-03-06", "2026-03-07", "2026-03-09"]


def test_patient_without_zone_falls_back_to_the_organisation_zone(world: World) -> None:
    world.patient("P1", zone=None)
    world.reading("D-P1", datetime(2026, 3, 3, 3, 0, tzinfo=UTC))  # Mar 2, 22:00 in New York
    first = of_kind(world.compute(AFTER_P1), "device_supply")[0]
    assert first.evidence_dates == (date(2026, 3, 2),)


def test_pending_period_carries_a_forecast(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 8)  # Mar 1..8
    (supply,) = of_kind(world.compute(date(2026, 3, 20)), "device_supply")
    assert supply.status == "pending"
    assert supply.lines == ()
    assert supply.forecast == {
        "days_so_far": 8,
        "days_still_possible": 10,
        "can_reach_16": True,
        "at_risk": True,  # 8 days in 20 keeps pace for 12, short of 16
    }
    assert supply.reason.startswith("period open until 2026-03-30: 8 days with data so far")


def test_forecast_says_when_16_is_out_of_reach(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 3)
    (supply,) = of_kind(world.compute(date(2026, 3, 25)), "device_supply")
    assert supply.forecast is not None
    assert supply.forecast["can_reach_16"] is False
    assert supply.forecast["days_still_possible"] == 5


def test_readings_after_as_of_are_not_counted(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 20)
    (supply,) = of_kind(world.compute(date(2026, 3, 10)), "device_supply")
    assert supply.transmission_days == 10


def test_calendar_month_periods_setting(world: World) -> None:
    world.patient("P1").daily("P1", date(2026, 3, 20), 20)  # Mar 20..Apr 8
    supply = of_kind(
        world.compute(date(2026, 5, 2), supply_period="calendar_month"), "device_supply"
    )
    assert [(r.period_start, r.period_end, r.transmission_days) for r in supply] == [
        (date(2026, 3, 1), date(2026, 3, 31), 12),
        (date(2026, 4, 1), date(2026, 4, 30), 8),
        (date(2026, 5, 1), date(2026, 5, 31), 0),
    ]


def test_last_reading_day_date_of_service_setting(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 5)
    first = of_kind(
        world.compute(AFTER_P1, supply_date_of_service="last_reading_day"), "device_supply"
    )[0]
    assert first.lines[0].date_of_service == date(2026, 3, 5)


def test_rule_set_follows_the_date_of_service_across_new_year(world: World) -> None:
    start = date(2025, 12, 20)
    world.patient("P1", start=start, consent=start).daily("P1", start, 10)  # Dec 20..29
    records = world.compute(date(2026, 1, 25))
    assert codes(of_kind(records, "device_supply")[0]) == [("99445", 1)]  # DOS 2026-01-18
    ngs = world.compute(date(2026, 1, 25), supply_date_of_service="last_reading_day")
    first = of_kind(ngs, "device_supply")[0]
    assert (first.rule_set, first.status) == ("CY2025", "not_billable")  # DOS 2025-12-29


def test_no_periods_after_the_enrollment_ends(world: World) -> None:
    world.patient("P1", end=date(2026, 4, 10)).daily("P1", MAR1, 60)
    supply = of_kind(world.compute(date(2026, 6, 1)), "device_supply")
    assert [(r.period_start, r.transmission_days) for r in supply] == [
        (date(2026, 3, 1), 30),
        (date(2026, 3, 31), 11),
    ]


def test_each_enrollment_is_an_episode_with_its_own_setup(world: World) -> None:
    world.patient("P1", end=date(2026, 3, 31)).daily("P1", MAR1, 5)
    world.enrollments.append(Enrollment("P1", "RPM", date(2026, 6, 1), None, date(2026, 6, 1)))
    world.daily("P1", date(2026, 6, 1), 5)
    setups = of_kind(world.compute(date(2026, 8, 1)), "setup")
    assert [(s.period_start, codes(s)) for s in setups] == [
        (date(2026, 3, 1), [("99453", 1)]),
        (date(2026, 6, 1), [("99453", 1)]),
    ]


# --- minutes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "lines", "reason"),
    [
        (9, [], "9 minutes, 10 needed for 99470"),
        (
            10,
            [("99470", 1)],
            "10 minutes with 1 interactive communication, 20 needed for 99457 (billed 99470)",
        ),
        (
            19,
            [("99470", 1)],
            "19 minutes with 1 interactive communication, 20 needed for 99457 (billed 99470)",
        ),
        (
            "19.9",
            [("99470", 1)],
            "19.9 minutes with 1 interactive communication, 20 needed for 99457 (billed 99470)",
        ),
        (20, [("99457", 1)], "20 minutes with 1 interactive communication (billed 99457)"),
        (39, [("99457", 1)], "39 minutes with 1 interactive communication (billed 99457)"),
        (
            40,
            [("99457", 1), ("99458", 1)],
            "40 minutes with 1 interactive communication (billed 99457 + 99458)",
        ),
        (
            60,
            [("99457", 1), ("99458", 2)],
            "60 minutes with 1 interactive communication (billed 99457 + 2x 99458)",
        ),
        (
            85,
            [("99457", 1), ("99458", 2)],
            "85 minutes with 1 interactive communication "
            "(billed 99457 + 2x 99458; 99458 capped at 2 units)",
        ),
    ],
)
def test_cy2026_management_minutes_routing(
    world: World, minutes: int | str, lines: list[tuple[str, int]], reason: str
) -> None:
    world.patient("P1").daily("P1", MAR1, 3)
    world.activity("P1", local(date(2026, 3, 12), 10, 0, "America/Chicago"), minutes)
    (month,) = of_kind(world.compute(AFTER_P1), "treatment_management")
    assert (month.period_start, month.period_end) == (MAR1, date(2026, 3, 31))
    assert codes(month) == lines
    assert month.status == ("billable" if lines else "not_billable")
    assert month.reason == reason
    assert all(x.date_of_service == date(2026, 3, 31) for x in month.lines)


@pytest.mark.parametrize(
    ("minutes", "lines"),
    [(10, []), (19, []), (20, [("99457", 1)]), (40, [("99457", 1), ("99458", 1)])],
)
def test_cy2025_management_needs_20_minutes(
    world: World, minutes: int, lines: list[tuple[str, int]]
) -> None:
    start = date(2025, 3, 1)
    world.patient("P1", start=start, consent=start)
    world.activity("P1", local(date(2025, 3, 12), 10, 0, "America/Chicago"), minutes)
    (month,) = of_kind(world.compute(date(2025, 4, 5)), "treatment_management")
    assert month.rule_set == "CY2025"
    assert codes(month) == lines


def test_minutes_add_up_across_activities_and_list_their_ids(world: World) -> None:
    world.patient("P1")
    world.activity(
        "P1",
        local(date(2026, 3, 2), 9, 0, "America/Chicago"),
        12,
        interactive=False,
        kind="data_review",
        aid="A-rev",
    )
    world.activity("P1", local(date(2026, 3, 9), 9, 0, "America/Chicago"), 10, aid="A-call")
    world.activity(
        "P1", local(date(2026, 3, 9), 9, 0, "America/Chicago"), 10, aid="A-call"
    )  # duplicate
    (month,) = of_kind(world.compute(AFTER_P1), "treatment_management")
    assert month.management_minutes == 22
    assert month.interactive_minutes == 10  # the call; the data review is not interactive
    assert month.interactive_communications == 1
    assert month.evidence_activity_ids == ("A-call", "A-rev")
    assert codes(month) == [("99457", 1)]


def test_minutes_without_interactive_communication_are_not_billable(world: World) -> None:
    world.patient("P1")
    world.activity(
        "P1",
        local(date(2026, 3, 2), 9, 0, "America/Chicago"),
        18,
        interactive=False,
        kind="data_review",
    )
    (month,) = of_kind(world.compute(AFTER_P1), "treatment_management")
    assert month.status == "not_billable"
    assert month.reason == "18 minutes, no interactive communication this month"


@pytest.mark.parametrize(("setting", "billable"), [(False, False), (True, True)])
def test_secure_message_counts_as_interactive_only_by_setting(
    world: World, setting: bool, billable: bool
) -> None:
    world.patient("P1")
    world.activity(
        "P1", local(date(2026, 3, 2), 9, 0, "America/Chicago"), 25, kind="secure_message"
    )
    (month,) = of_kind(
        world.compute(AFTER_P1, secure_message_interactive=setting), "treatment_management"
    )
    assert (month.status == "billable") is billable


def test_minutes_near_midnight_at_month_end_count_in_the_local_month(world: World) -> None:
    world.patient("P1", zone="America/Los_Angeles")
    # 2026-04-01 03:30 UTC is March 31, 20:30 in Los Angeles.
    world.activity("P1", datetime(2026, 4, 1, 3, 30, tzinfo=UTC), 25)
    world.activity("P1", datetime(2026, 4, 1, 7, 30, tzinfo=UTC), 5)  # April 1, 00:30 local
    months = of_kind(world.compute(date(2026, 5, 2)), "treatment_management")
    assert [(m.period_start, m.interactive_minutes) for m in months] == [
        (date(2026, 3, 1), Decimal(25)),
        (date(2026, 4, 1), Decimal(5)),
    ]


def test_current_month_is_pending(world: World) -> None:
    world.patient("P1")
    world.activity("P1", local(date(2026, 4, 2), 9, 0, "America/Chicago"), 25)
    (month,) = of_kind(world.compute(AFTER_P1), "treatment_management")
    assert month.status == "pending"
    assert month.lines == ()
    assert month.reason.startswith("month open until 2026-04-30: 25 minutes")


def test_activity_outside_the_enrollment_is_not_counted_and_says_why(world: World) -> None:
    world.patient("P1", start=date(2026, 3, 15), consent=date(2026, 3, 15))
    world.activity("P1", local(date(2026, 3, 2), 9, 0, "America/Chicago"), 25)
    (month,) = of_kind(world.compute(AFTER_P1), "treatment_management")
    assert month.status == "not_billable" and month.lines == ()
    assert month.reason == (
        "no RPM enrollment on the entry's date (25 minutes with 1 interactive communication "
        "not counted)"
    )


def test_records_accept_readings_as_a_stream_of_batches(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 20)
    table = world.table()
    batches = table.to_batches(max_chunksize=3)
    records = compute_engagement(
        iter(batches), world.snapshot(), [], AFTER_P1, RuleSettings(), "America/New_York"
    )
    assert of_kind(records, "device_supply")[0].transmission_days == 20
    assert pa.concat_tables([pa.Table.from_batches(batches)]).num_rows == 20


def test_sorted_key_mode_gives_the_same_days_as_the_bitmap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large windows switch from the patient x day bitmap to sorted keys; same answer."""
    import rpmpipe.metrics.days

    world.patient("P1").patient("P2", zone="America/Denver").daily("P1", MAR1, 25)
    world.daily("P2", date(2026, 3, 3), 12, hour=23).daily("P2", date(2026, 4, 2), 5, hour=0)
    with_bitmap = world.compute(date(2026, 5, 1))
    monkeypatch.setattr(rpmpipe.metrics.days, "_BITMAP_CELLS", 0)
    monkeypatch.setattr(rpmpipe.metrics.days, "_WORK_ROWS", 4)
    assert world.compute(date(2026, 5, 1)) == with_bitmap


def test_null_flags_count_as_false_and_untimed_readings_are_skipped(world: World) -> None:
    world.patient("P1")
    when = local(date(2026, 3, 2), 9, 0, "America/Chicago")
    table = pa.table(
        {
            "device_id": pa.array(["D-P1", "D-P1", None], pa.string()),
            "type": ["blood_pressure", "blood_pressure", "blood_pressure"],
            "measured_at": pa.array([when, None, when], pa.timestamp("us", tz="UTC")),
            "manual_entry": pa.array([None, False, False], pa.bool_()),
            "clock_suspect": pa.array([None, None, None], pa.bool_()),
        }
    )
    records = compute_engagement(
        table, world.snapshot(), [], AFTER_P1, RuleSettings(), "America/New_York"
    )
    assert of_kind(records, "device_supply")[0].evidence_dates == (date(2026, 3, 2),)


def test_pending_period_that_already_has_16_days_says_so(world: World) -> None:
    world.patient("P1").daily("P1", MAR1, 17)
    (supply,) = of_kind(world.compute(date(2026, 3, 20)), "device_supply")
    assert supply.reason == "period open until 2026-03-30: 17 days with data so far, 99454 reached"
    assert supply.forecast is not None and supply.forecast["at_risk"] is False


def test_pending_month_reports_progress_without_billing(world: World) -> None:
    world.patient("P1")
    world.activity("P1", local(date(2026, 4, 2), 9, 0, "America/Chicago"), 45)
    (month,) = of_kind(world.compute(AFTER_P1), "treatment_management")
    assert month.reason == (
        "month open until 2026-04-30: 45 minutes with 1 interactive communication "
        "(so far 99457 + 99458)"
    )
