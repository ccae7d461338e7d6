"""The table of supply periods gives, episode by episode, exactly the records of the
one-episode rule function (supply_and_setup), forecasts included."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from engagement_world import World, local
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_metrics_csv_bulk import _varied_world

from rpmpipe.metrics.engagement import (
    episode_day_numbers,
    episode_days_of,
    episode_records,
    prepare,
    program_enrollments,
)
from rpmpipe.metrics.periods import records_of
from rpmpipe.settings import RuleSettings

ORG = "America/Chicago"


def _compare(world: World, as_of: date, rules: RuleSettings) -> int:
    work = prepare(world.table(), world.snapshot(), world.activities, as_of, rules, ORG)
    compared = 0
    for part in work.parts:
        if part.table is None:
            continue
        table = records_of(part.table)
        enrollments = program_enrollments(world.snapshot(), part.program.program)
        ep, day = episode_day_numbers(part.found, enrollments)
        days = episode_days_of(ep, day, enrollments, part.episodes)
        for i, episode in enumerate(part.episodes):
            got = table.get(episode.positions[0])
            if got is None:
                continue
            want = episode_records(episode, days.get(i), part.found, as_of, rules, part.program)
            assert got == want
            assert [r.forecast for r in got] == [r.forecast for r in want]
            compared += len(got)
    return compared


@pytest.mark.parametrize("as_of", [date(2026, 1, 10), date(2026, 3, 31), date(2026, 4, 25)])
@pytest.mark.parametrize("dos", ["period_end", "last_reading_day"])
def test_table_records_are_the_one_episode_records(as_of: date, dos: str) -> None:
    compared = _compare(_varied_world(), as_of, RuleSettings(supply_date_of_service=dos))
    assert compared > 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patients=st.lists(
        st.tuples(
            st.sampled_from(["America/Chicago", "Asia/Kolkata", "UTC"]),
            st.integers(0, 120),
            st.lists(st.integers(0, 160), max_size=30),
            st.integers(0, 23),
            st.integers(0, 40),
            st.lists(st.integers(0, 160), max_size=4),
            st.integers(0, 20),
        ),
        max_size=6,
    ),
    as_of=st.integers(0, 180),
)
def test_table_records_match_on_random_worlds(
    patients: list[tuple[str, int, list[int], int, int, list[int], int]], as_of: int
) -> None:
    base = date(2025, 11, 1)
    w = World()
    for k, (zone, start, days, hour, assigned, flagged, consent) in enumerate(patients):
        pid = f"P{k}"
        first = base + timedelta(days=start)
        w.patient(pid, zone=zone, start=first, consent=first + timedelta(days=consent))
        w.assign(f"E-{pid}", pid, first + timedelta(days=assigned))
        for d in days:
            w.daily(pid, first + timedelta(days=d), 1, hour=hour)
            w.reading(f"E-{pid}", local(first + timedelta(days=d + 1), hour, 0, zone))
        for i, d in enumerate(flagged):
            when = local(first + timedelta(days=d), hour, 30, zone)
            w.reading(f"D-{pid}", when, manual=i % 2 == 0, suspect=i % 2 == 1)
    _compare(w, base + timedelta(days=as_of), RuleSettings())
