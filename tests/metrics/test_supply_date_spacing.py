"""Supply dates of service of one patient are never less than 30 days apart (NGS: "30 days
from the prior date of billing"), under either date-of-service setting, on both paths."""

from __future__ import annotations

import io
from datetime import date, timedelta

from engagement_world import World, of_kind
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpmpipe.metrics.csv_bulk import compute_engagement_csv
from rpmpipe.metrics.report import write_csv
from rpmpipe.settings import RuleSettings

MAR1 = date(2026, 3, 1)


def supply_dates(world: World, as_of: date, dos: str) -> list[date]:
    records = of_kind(world.compute(as_of, supply_date_of_service=dos), "device_supply")
    return [line.date_of_service for r in records if r.status == "billable" for line in r.lines]


def test_last_reading_day_moves_an_early_date_to_30_days_after_the_prior_one() -> None:
    world = World().patient("P1")
    world.daily("P1", MAR1, 30)  # period 1: Mar 1 - Mar 30, last reading Mar 30
    world.daily("P1", date(2026, 3, 31), 11)  # period 2: Mar 31 - Apr 29, last reading Apr 10
    assert supply_dates(world, date(2026, 5, 1), "last_reading_day") == [
        date(2026, 3, 30),
        date(2026, 4, 29),  # not April 10: 30 days after March 30
    ]
    # The default (period end) was already 30 days apart.
    assert supply_dates(world, date(2026, 5, 1), "period_end") == [
        date(2026, 3, 30),
        date(2026, 4, 29),
    ]


def test_the_bulk_csv_path_spaces_the_dates_the_same_way() -> None:
    world = World().patient("P1")
    world.daily("P1", MAR1, 30)
    world.daily("P1", date(2026, 3, 31), 11)
    as_of = date(2026, 5, 1)
    rules = RuleSettings(supply_date_of_service="last_reading_day")
    expected = io.StringIO()
    write_csv(world.compute(as_of, supply_date_of_service="last_reading_day"), expected)
    pieces, _counts = compute_engagement_csv(
        world.table(), world.snapshot(), world.activities, as_of, rules, "America/New_York"
    )
    got = b"".join(bytes(p) for p in pieces).decode()
    assert expected.getvalue().split("\n", 1)[1] == got
    assert "99445x1@2026-04-29" in got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    days=st.lists(st.integers(0, 150), max_size=80),
    dos=st.sampled_from(["period_end", "last_reading_day"]),
)
def test_consecutive_supply_dates_are_never_less_than_30_days_apart(
    days: list[int], dos: str
) -> None:
    world = World().patient("P1")
    for d in sorted(set(days)):
        world.daily("P1", MAR1 + timedelta(days=d), 1)
    billed = supply_dates(world, date(2026, 9, 1), dos)
    assert all((b - a).days >= 30 for a, b in zip(billed, billed[1:], strict=False)), billed


JAN1 = date(2026, 1, 1)


def calendar_month_supply(world: World, as_of: date, dos: str) -> list[tuple[date, date]]:
    """(period start, date of service) of each billed supply line, calendar-month periods."""
    records = of_kind(
        world.compute(as_of, supply_period="calendar_month", supply_date_of_service=dos),
        "device_supply",
    )
    return [
        (r.period_start, ln.date_of_service)
        for r in records
        if r.status == "billable"
        for ln in r.lines
    ]


def test_calendar_month_lines_fall_in_their_month_so_february_comes_28_days_after_january() -> None:
    # Documented in the README (Programs and their rules): a calendar month bills one supply
    # line dated inside that month, so the line of February (28 days) is 28 days after
    # January's; the 30-day spacing is the rule of 30-day periods.
    world = World().patient("P1", start=JAN1, consent=JAN1)
    world.daily("P1", JAN1, 31)
    world.daily("P1", date(2026, 2, 1), 18)  # last reading Feb 18
    world.daily("P1", MAR1, 31)
    for dos in ("period_end", "last_reading_day"):
        dates = [d for _start, d in calendar_month_supply(world, date(2026, 4, 5), dos)]
        assert dates == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)], dos


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    days=st.lists(st.integers(0, 180), max_size=100),
    dos=st.sampled_from(["period_end", "last_reading_day"]),
)
def test_calendar_month_dates_are_30_days_apart_except_after_a_short_february(
    days: list[int], dos: str
) -> None:
    world = World().patient("P1", start=JAN1, consent=JAN1)
    for d in sorted(set(days)):
        world.daily("P1", JAN1 + timedelta(days=d), 1)
    billed = calendar_month_supply(world, date(2026, 7, 5), dos)
    for start, dos_day in billed:
        assert (dos_day.year, dos_day.month) == (start.year, start.month)  # inside its month
    for (_s, a), (_t, b) in zip(billed, billed[1:], strict=False):
        # Less than 30 days only when the later line is February's: then at least the
        # length of February (its last day is as late as the line can be).
        assert (b - a).days >= (28 if b.month == 2 else 30), billed
