"""99091 is counted per 30-day period of the patient's RPM episode: the supply periods, which
start on the first day with data and run back to back across the enrollments of an episode
(BILLING-RULES, Counting and Episodes); time before the first day with data never bills."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from engagement_world import ORG_ZONE, World

from rpmpipe.metrics.care_management import (
    CareFacts,
    compute_care_management,
)
from rpmpipe.metrics.care_time import TimeEntry
from rpmpipe.metrics.engagement import prepare, supply_periods
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import EngagementRecord
from rpmpipe.settings import RuleSettings

ZONE = "America/Chicago"
RULES = RuleSettings()


def _review(aid: str, day: date, minutes: int) -> TimeEntry:
    at = datetime.combine(day, time(9), ZoneInfo(ZONE))
    return TimeEntry(aid, "P1", "RPM", "physician", "data_review", at, Decimal(minutes), False)


def _interpretation(w: World, entries: list[TimeEntry], as_of: date) -> list[EngagementRecord]:
    work = prepare(w.table(), w.snapshot(), [], as_of, RULES, ORG_ZONE)
    facts = CareFacts(
        enrollments=tuple(
            Enrollment(
                e.patient_id, e.program, e.start_date, e.end_date, e.consent_date, e.ordering_npi
            )
            for e in w.enrollments
        ),
        zones=dict(w.zones),
    )
    periods = supply_periods(work, {"P1"})
    records = compute_care_management(entries, facts, as_of, RULES, ORG_ZONE, periods)
    return [r for r in records if r.kind == "data_interpretation"]


def test_99091_periods_start_on_the_first_day_with_data_not_the_enrollment_start() -> None:
    w = World().patient("P1", start=date(2026, 3, 1)).daily("P1", date(2026, 3, 10), 40)
    got = _interpretation(
        w,
        [_review("I1", date(2026, 4, 5), 20), _review("I2", date(2026, 4, 7), 15)],
        date(2026, 5, 1),
    )
    assert [(r.period_start, r.period_end) for r in got] == [(date(2026, 3, 10), date(2026, 4, 8))]
    assert [(x.code, x.date_of_service) for x in got[0].lines] == [("99091", date(2026, 4, 8))]
    assert got[0].evidence_activity_ids == ("I1", "I2")


def test_99091_periods_run_on_across_the_enrollments_of_an_episode() -> None:
    first, second = date(2026, 1, 5), date(2026, 2, 20)
    w = World().patient("P1", start=first, consent=first, end=date(2026, 2, 10), npi="1234567893")
    w.patient("P1", start=second, consent=second, npi="1245319599")
    w.assignments.pop()  # one device for both enrollments
    w.daily("P1", date(2026, 1, 6), 30).daily("P1", date(2026, 2, 20), 30)
    got = _interpretation(w, [_review("I1", date(2026, 3, 1), 30)], date(2026, 4, 1))
    # Periods from 2026-01-06: 01-06..02-04, 02-05..03-06 (not restarted on 02-20).
    assert [(r.period_start, r.period_end) for r in got] == [(date(2026, 2, 5), date(2026, 3, 6))]
    assert [x.code for x in got[0].lines] == ["99091"]
    assert got[0].ordering_npi == "1245319599"


def test_99091_time_before_the_first_day_with_data_is_not_billable() -> None:
    w = World().patient("P1", start=date(2026, 3, 1)).daily("P1", date(2026, 3, 20), 20)
    got = _interpretation(w, [_review("I1", date(2026, 3, 5), 45)], date(2026, 5, 1))
    assert len(got) == 1 and got[0].lines == () and got[0].status == "not_billable"
    assert (got[0].period_start, got[0].period_end) == (date(2026, 3, 5), date(2026, 3, 19))
    assert "before the first 30-day period (from 2026-03-20" in got[0].reason


def test_99091_time_with_no_reading_yet_is_pending() -> None:
    w = World().patient("P1", start=date(2026, 3, 1))
    got = _interpretation(w, [_review("I1", date(2026, 3, 5), 45)], date(2026, 3, 25))
    assert len(got) == 1 and got[0].status == "pending" and got[0].lines == ()
    assert "no 30-day period has started" in got[0].reason
