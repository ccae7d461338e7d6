"""The table of supply periods gives, episode by episode, exactly the records of the
one-episode reference (tests/metrics/supply_reference.py), forecasts included."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from engagement_world import World, local
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supply_reference import episode_days_of, episode_records
from test_metrics_csv_bulk import _varied_world

from rpmpipe.metrics.engagement import episode_day_numbers, prepare, program_enrollments
from rpmpipe.metrics.periods import records_of
from rpmpipe.metrics.snapshot import Enrollment
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
@pytest.mark.parametrize("mode", ["rolling_30", "calendar_month"])
def test_table_records_are_the_one_episode_records(as_of: date, dos: str, mode: str) -> None:
    rules = RuleSettings(supply_date_of_service=dos, supply_period=mode)
    compared = _compare(_varied_world(), as_of, rules)
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
            st.one_of(st.none(), st.integers(0, 100)),  # enrollment length (None: open)
            # A second enrollment (another practitioner) some days after the first ends (or
            # starts, when the first is open): one episode when the gap is short.
            st.one_of(st.none(), st.tuples(st.integers(-20, 45), st.integers(0, 10))),
        ),
        max_size=6,
    ),
    as_of=st.integers(0, 180),
    mode=st.sampled_from(["rolling_30", "calendar_month"]),
    dos=st.sampled_from(["period_end", "last_reading_day"]),
)
def test_table_records_match_on_random_worlds(
    patients: list[
        tuple[str, int, list[int], int, int, list[int], int, int | None, tuple[int, int] | None]
    ],
    as_of: int,
    mode: str,
    dos: str,
) -> None:
    base = date(2025, 11, 1)
    w = World()
    for k, (zone, start, days, hour, assigned, flagged, consent, length, second) in enumerate(
        patients
    ):
        pid = f"P{k}"
        first = base + timedelta(days=start)
        end = None if length is None else first + timedelta(days=length)
        w.patient(
            pid, zone=zone, start=first, consent=first + timedelta(days=consent), end=end, npi="A"
        )
        if second is not None:
            gap, late = second
            again = max(first, (end or first) + timedelta(days=gap))
            w.enrollments.append(
                Enrollment(pid, "RPM", again, None, again + timedelta(days=late), "B")
            )
        w.assign(f"E-{pid}", pid, first + timedelta(days=assigned))
        for d in days:
            w.daily(pid, first + timedelta(days=d), 1, hour=hour)
            w.reading(f"E-{pid}", local(first + timedelta(days=d + 1), hour, 0, zone))
        for i, d in enumerate(flagged):
            when = local(first + timedelta(days=d), hour, 30, zone)
            w.reading(f"D-{pid}", when, manual=i % 2 == 0, suspect=i % 2 == 1)
    rules = RuleSettings(supply_period=mode, supply_date_of_service=dos)
    _compare(w, base + timedelta(days=as_of), rules)
