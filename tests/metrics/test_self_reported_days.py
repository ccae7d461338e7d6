"""Self-reported days: a manual entry from an assigned device is a day with data for a
program that counts self-reported data (RTM), never a clock-suspect reading."""

from __future__ import annotations

from datetime import date

from engagement_world import ORG_ZONE, World, local

from rpmpipe.metrics.days import patient_days, with_self_reported

ZONE = "America/Chicago"


def _world() -> World:
    w = World().patient("P1")
    w.reading("D-P1", local(date(2026, 3, 2), 9, 0, ZONE))
    w.reading("D-P1", local(date(2026, 3, 3), 9, 0, ZONE), manual=True)
    w.reading("D-P1", local(date(2026, 3, 4), 9, 0, ZONE), manual=True, suspect=True)
    w.reading("D-P1", local(date(2026, 3, 5), 9, 0, ZONE), suspect=True)
    # Manual on a day that counted anyway: no reason, and no second day.
    w.reading("D-P1", local(date(2026, 3, 2), 10, 0, ZONE), manual=True)
    return w


def test_a_manual_entry_is_a_self_reported_day_and_a_clock_suspect_one_is_not() -> None:
    w = _world()
    found = patient_days(w.table(), w.snapshot(), date(2026, 3, 31), ORG_ZONE)
    assert found.day.tolist() == [(date(2026, 3, 2) - date(1970, 1, 1)).days]
    held = {(s.day.day, s.cause, s.self_reported) for s in found.set_aside["P1"]}
    # A reading both manual and clock-suspect is still worded as manual, but is no self-report.
    assert held == {
        (3, "manual_entry", True),
        (4, "manual_entry", False),
        (5, "clock_suspect", False),
    }
    rtm = with_self_reported(found)
    days = [date(1970, 1, 1).toordinal() + d for d in rtm.day.tolist()]
    assert [date.fromordinal(d).day for d in days] == [2, 3]
    assert {s.day.day for s in rtm.set_aside["P1"]} == {4, 5}


def test_without_manual_entries_the_days_are_unchanged() -> None:
    w = World().patient("P1")
    w.reading("D-P1", local(date(2026, 3, 2), 9, 0, ZONE), suspect=True)
    found = patient_days(w.table(), w.snapshot(), date(2026, 3, 31), ORG_ZONE)
    assert with_self_reported(found) is found
