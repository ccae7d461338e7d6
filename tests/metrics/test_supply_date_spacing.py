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
