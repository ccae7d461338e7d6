"""Properties over random care time: no two exclusive codes, no minute counted twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.metrics.care_table import program_months
from rpmpipe.metrics.care_time import (
    TimeEntry,
    counted_minutes,
    is_interpretation,
    trim_across_programs,
)
from rpmpipe.metrics.programs import (
    PERFORMERS,
    PROGRAMS,
    RULE_SETS,
    CareMinutes,
    check_exclusive,
    program_rules_for,
    time_lines,
)

START = datetime(2025, 12, 20, tzinfo=UTC)
KINDS = ("phone_call", "video_visit", "data_review", "care_plan_update")


@st.composite
def entries(draw: st.DrawFn) -> list[TimeEntry]:
    n = draw(st.integers(0, 25))
    out = []
    for i in range(n):
        offset = draw(st.integers(0, 40 * 24 * 60))  # minutes into a 40-day window
        out.append(
            TimeEntry(
                activity_id=f"A{i}",
                patient_id=draw(st.sampled_from(("P1", "P2"))),
                program=draw(st.sampled_from(PROGRAMS)),
                performer=draw(st.sampled_from(PERFORMERS)),
                kind=draw(st.sampled_from(KINDS)),
                started_at=START + timedelta(minutes=offset),
                minutes=Decimal(draw(st.integers(1, 9000))) / 100,
                interactive=draw(st.booleans()),
            )
        )
    return out


def union_minutes(items: list[TimeEntry]) -> Decimal:
    spans = sorted(
        (e.started_at, e.started_at + timedelta(microseconds=int(e.minutes * 60_000_000)))
        for e in items
    )
    total = timedelta(0)
    cur_start, cur_end = None, None
    for s, e in spans:
        if cur_end is None or s > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return Decimal(total // timedelta(microseconds=1)) / 60_000_000


@settings(max_examples=300, deadline=None)
@given(entries())
def test_no_minute_is_counted_twice_across_programs(items: list[TimeEntry]) -> None:
    counted = counted_minutes(items)
    for patient in ("P1", "P2"):
        mine = [e for e in items if e.patient_id == patient]
        assert sum((counted[e.activity_id] for e in mine), Decimal(0)) == union_minutes(mine)
    for e in items:
        assert 0 <= counted[e.activity_id] <= e.minutes
    months = program_months(items, lambda _: "America/Chicago")
    in_months = sum((m.minutes.total for m in months.values()), Decimal(0))
    outside = sum((counted[e.activity_id] for e in items if is_interpretation(e)), Decimal(0))
    assert in_months + outside == sum(counted.values(), Decimal(0))
    ids = [a for m in months.values() for a in m.activity_ids]
    assert len(ids) == len(set(ids))  # each activity in one program month


@settings(max_examples=300, deadline=None)
@given(entries())
def test_after_trimming_two_programs_never_share_a_minute(items: list[TimeEntry]) -> None:
    trimmed = trim_across_programs(items)
    spans = sorted(
        (
            e.patient_id,
            e.started_at,
            e.started_at + timedelta(microseconds=int(e.minutes * 60_000_000)),
            e.program,
        )
        for e in trimmed
    )
    by_patient: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for pid, s, e, prog in spans:
        by_patient.setdefault(pid, []).append((s, e, prog))
    for mine in by_patient.values():
        for i, (s1, e1, p1) in enumerate(mine):
            for s2, e2, p2 in mine[i + 1 :]:
                if p1 != p2:
                    assert e1 <= s2 or e2 <= s1
    for patient in ("P1", "P2"):
        before = [e for e in items if e.patient_id == patient]
        after = [e for e in trimmed if e.patient_id == patient]
        assert union_minutes(after) == union_minutes(before)


@settings(max_examples=300, deadline=None)
@given(entries(), st.integers(0, 4), st.integers(0, 4), st.booleans())
def test_no_month_bills_two_exclusive_codes_or_more_minutes_than_counted(
    items: list[TimeEntry], cap_99439: int, cap_99458: int, changed: bool
) -> None:
    caps = {"max_99439_units": cap_99439, "max_99458_units": cap_99458}
    for (_patient, program, month), m in program_months(items, lambda _: "UTC").items():
        rs = program_rules_for(program, month)
        if rs is None:
            continue
        outcome = time_lines(rs, m.minutes, m.interactive_communications, changed, month, caps)
        check_exclusive(rs, outcome.lines)  # raises on two exclusive codes
        codes = [line.code for line in outcome.lines]
        assert len(codes) == len(set(codes)) <= 2
        assert outcome.minutes_used <= m.minutes.total
        every_pair = [p for r in RULE_SETS for p in r.exclusive]
        assert not any(pair <= set(codes) for pair in every_pair)


@given(
    st.decimals(min_value=0, max_value=300, places=2),
    st.decimals(min_value=0, max_value=300, places=2),
    st.integers(0, 3),
    st.booleans(),
    st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
)
def test_any_minutes_bill_at_most_one_track_per_program(
    staff: Decimal, physician: Decimal, talks: int, changed: bool, day: date
) -> None:
    for program in PROGRAMS:
        rs = program_rules_for(program, day)
        if rs is None:
            continue
        minutes = CareMinutes(staff, physician)
        outcome = time_lines(rs, minutes, talks, changed, day, {})
        base_codes = {t.code for track in rs.tracks for t in track.tiers}
        assert len([line for line in outcome.lines if line.code in base_codes]) <= 1
        assert outcome.minutes_used <= minutes.total
