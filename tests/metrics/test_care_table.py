"""The table of care-management months (metrics.care_management.care_table), program by
program and year at the threshold edges, at month edges in the patient's zone, and over
random activities: no row bills two exclusive codes, no minute is counted twice, and the
table's two renderings (records, CSV text) agree."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.metrics.care_management import (
    CareFacts,
    apply_exclusions,
    care_table,
    exclusion_patients,
    hold_in_table,
)
from rpmpipe.metrics.care_table import entries_of
from rpmpipe.metrics.care_time import TimeEntry, trim_across_programs
from rpmpipe.metrics.programs import CarePlanVersion, check_exclusive, program_rules_for
from rpmpipe.metrics.report import CsvRows, write_csv
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.records import RecordStatus
from rpmpipe.settings import RuleSettings

RULES = RuleSettings()
NPI = "1234567893"
ZONE = "America/Chicago"


def _facts(pid: str, programs: tuple[str, ...], codes: tuple[str, ...]) -> CareFacts:
    start = date(2024, 1, 1)
    return CareFacts(
        enrollments=tuple(Enrollment(pid, p, start, None, start, NPI) for p in programs),
        zones={pid: ZONE},
        icd10={pid: codes},
        qmb={pid: None},
        care_plans={(pid, p): (CarePlanVersion(start, None, start),) for p in programs},
        payer_of={pid: "MEDICARE"},
    )


def _entry(aid: str, at: datetime, minutes: str, **kw: object) -> TimeEntry:
    values: dict[str, object] = {
        "patient_id": "P1",
        "program": "CCM",
        "performer": "clinical_staff",
        "kind": "phone_call",
        "interactive": True,
        **kw,
    }
    return TimeEntry(aid, started_at=at, minutes=Decimal(minutes), **values)  # type: ignore[arg-type]


CODES = ("I10", "E11.9", "F32.9")


@pytest.mark.parametrize(
    ("program", "year", "minutes", "performer", "billed"),
    [
        ("CCM", 2025, "19.9", "clinical_staff", []),
        ("CCM", 2025, "20", "clinical_staff", [("99490", 1)]),
        ("CCM", 2026, "39.9", "clinical_staff", [("99490", 1)]),
        ("CCM", 2026, "40", "clinical_staff", [("99490", 1), ("99439", 1)]),
        ("CCM", 2026, "60", "clinical_staff", [("99490", 1), ("99439", 2)]),
        ("CCM", 2026, "60", "physician", [("99491", 1), ("99437", 1)]),
        ("PCM", 2026, "29.9", "clinical_staff", []),
        ("PCM", 2026, "60", "clinical_staff", [("99426", 1), ("99427", 1)]),
        ("BHI", 2025, "19.9", "clinical_staff", []),
        ("BHI", 2026, "20", "clinical_staff", [("99484", 1)]),
        ("RTM", 2025, "19.9", "clinical_staff", []),
        ("RTM", 2026, "19.9", "clinical_staff", [("98979", 1)]),
        ("RTM", 2026, "20", "clinical_staff", [("98980", 1)]),
        ("RTM", 2026, "40", "clinical_staff", [("98980", 1), ("98981", 1)]),
    ],
)
def test_the_table_bills_each_program_and_year_at_its_threshold_edges(
    program: str, year: int, minutes: str, performer: str, billed: list[tuple[str, int]]
) -> None:
    at = datetime(year, 3, 10, 15, tzinfo=UTC)
    entries = [_entry("A1", at, minutes, program=program, performer=performer)]
    table = care_table(
        entries_of(entries), _facts("P1", (program,), CODES), date(year, 5, 1), RULES, ZONE, {}
    )
    (record,) = table.records()
    assert (record.program, record.period_start, record.period_end) == (
        program,
        date(year, 3, 1),
        date(year, 3, 31),
    )
    assert [(line.code, line.units) for line in record.lines] == billed
    assert record.status == (RecordStatus.BILLABLE if billed else RecordStatus.NOT_BILLABLE)
    assert record.management_minutes == Decimal(minutes)
    assert int(table.staff[0] + table.physician[0]) == int(Decimal(minutes) * 100)


def test_a_month_is_the_patients_local_month_and_stays_pending_until_it_ends() -> None:
    # 23:30 on 31 March in Chicago is 1 April in UTC; 00:30 on 1 April local is April's.
    late = datetime(2026, 4, 1, 4, 30, tzinfo=UTC)
    early = datetime(2026, 4, 1, 5, 30, tzinfo=UTC)
    entries = [_entry("A1", late, "20"), _entry("A2", early, "20")]
    facts = _facts("P1", ("CCM",), CODES)
    rows = care_table(entries_of(entries), facts, date(2026, 4, 15), RULES, ZONE, {}).records()
    march, april = rows
    assert (march.period_start, march.evidence_activity_ids) == (date(2026, 3, 1), ("A1",))
    assert [line.code for line in march.lines] == ["99490"]
    assert (april.period_start, april.status, april.lines) == (
        date(2026, 4, 1),
        RecordStatus.PENDING,
        (),
    )


@pytest.mark.parametrize(
    ("codes", "plans", "why"),
    [
        (("I10",), True, "1 chronic condition(s) on file, CCM needs 2 or more"),
        (CODES, False, "no CCM care plan established and shared with the patient"),
    ],
)
def test_the_table_says_why_a_patient_is_not_eligible(
    codes: tuple[str, ...], plans: bool, why: str
) -> None:
    facts = _facts("P1", ("CCM",), codes)
    if not plans:
        facts = CareFacts(facts.enrollments, facts.zones, facts.icd10, facts.qmb, {}, {})
    entries = [_entry("A1", datetime(2026, 3, 10, 15, tzinfo=UTC), "45")]
    (record,) = care_table(entries_of(entries), facts, date(2026, 5, 1), RULES, ZONE, {}).records()
    assert record.status == RecordStatus.NOT_BILLABLE and not record.lines
    assert record.reason.startswith(why)


def test_exclusions_hold_rows_of_the_table_in_place() -> None:
    # CCM and PCM by one practitioner in one month: the later enrollment (PCM) is held.
    facts = _facts("P1", ("CCM", "PCM"), CODES)
    at = datetime(2026, 3, 10, 15, tzinfo=UTC)
    entries = [
        _entry("A1", at, "25"),
        _entry("A2", at + timedelta(hours=2), "35", program="PCM"),
    ]
    table = care_table(entries_of(entries), facts, date(2026, 5, 1), RULES, ZONE, {})
    expected = apply_exclusions(table.records(), facts, frozenset())
    assert exclusion_patients(facts, table) == {"P1"}
    assert hold_in_table(table, [], facts, frozenset(), {"P1"}) == []
    assert table.records() == expected
    ccm, pcm = expected
    assert [line.code for line in ccm.lines] == ["99490"]
    assert pcm.status == RecordStatus.NOT_BILLABLE and pcm.reason.startswith("held: ")


def test_pcm_physician_time_in_one_month_and_staff_time_in_the_next_bill_both() -> None:
    """99424 and 99426 are exclusive within a month only: a physician's 30 minutes in January
    and clinical staff's 30 minutes in December are each their month's line (the property
    test below once asserted the codes exclusive for a patient across every month)."""
    facts = _facts("P1", ("PCM",), ("I10",))
    entries = [
        _entry("A1", datetime(2025, 12, 10, 16, tzinfo=UTC), "30", program="PCM"),
        _entry(
            "A2", datetime(2026, 1, 12, 16, tzinfo=UTC), "30", program="PCM", performer="physician"
        ),
    ]
    table = care_table(entries_of(entries), facts, date(2026, 2, 10), RULES, ZONE, {})
    held = apply_exclusions(table.records(), facts, frozenset())
    billed = [(r.period_start, [line.code for line in r.lines]) for r in held if r.lines]
    assert billed == [(date(2025, 12, 1), ["99426"]), (date(2026, 1, 1), ["99424"])]


PROGRAMS = ("RPM", "CCM", "PCM", "BHI", "RTM", "APCM")
START = datetime(2025, 12, 20, tzinfo=UTC)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[TimeEntry], CareFacts]:
    entries = []
    for i in range(draw(st.integers(0, 20))):
        entries.append(
            TimeEntry(
                f"A{i:02d}",
                draw(st.sampled_from(("P1", "P2"))),
                draw(st.sampled_from(PROGRAMS)),
                draw(st.sampled_from(("clinical_staff", "physician"))),
                draw(st.sampled_from(("phone_call", "data_review", "video_visit"))),
                START + timedelta(minutes=draw(st.integers(0, 50 * 24 * 60))),
                Decimal(draw(st.integers(1, 9000))) / 100,
                draw(st.booleans()),
            )
        )
    enrolled = []
    for pid in ("P1", "P2"):
        for program in draw(st.sets(st.sampled_from(PROGRAMS), max_size=4)):
            day = date(2025, 12, 1) + timedelta(days=draw(st.integers(0, 40)))
            npi = draw(st.sampled_from((NPI, "1245319599")))
            enrolled.append(Enrollment(pid, program, day, None, day, npi))
    plan = (CarePlanVersion(date(2025, 12, 1), None, date(2025, 12, 1)),)
    facts = CareFacts(
        enrollments=tuple(enrolled),
        zones={"P1": ZONE, "P2": "UTC"},
        icd10={"P1": CODES, "P2": ("I10",)},
        qmb={"P1": True, "P2": None},
        care_plans={(e.patient_id, e.program): plan for e in enrolled},
        payer_of={"P1": "MEDICARE", "P2": "MEDICARE"},
    )
    return entries, facts


@settings(max_examples=200, deadline=None)
@given(worlds(), st.integers(0, 80))
def test_no_row_bills_two_exclusive_codes_or_counts_a_minute_twice(
    world: tuple[list[TimeEntry], CareFacts], days: int
) -> None:
    entries, facts = world
    as_of = date(2026, 2, 10) + timedelta(days=days)  # after every entry
    trimmed = trim_across_programs(entries)
    cols = entries_of(trimmed)
    table = care_table(cols, facts, as_of, RULES, ZONE, {})
    ids = [a for row in table.activity_ids.tolist() for a in row]
    assert len(ids) == len(set(ids))  # each activity in one row
    records = table.records()
    for r in records:
        rs = program_rules_for(r.program, r.lines[0].date_of_service) if r.lines else None
        if rs is not None:
            check_exclusive(rs, r.lines)
    for pid in ("P1", "P2"):
        union = sum(int(c) for c, p in zip(cols.counted, cols.patient_id, strict=True) if p == pid)
        mine = sum((r.management_minutes for r in records if r.patient_id == pid), Decimal(0))
        assert mine * 60_000_000 <= union
    held = apply_exclusions(records, facts, frozenset())
    hold_in_table(table, [], facts, frozenset(), exclusion_patients(facts, table))
    assert table.records() == held
    # PCM's physician and staff codes are exclusive within a calendar month, not across months.
    month_codes: dict[tuple[str, date], set[str]] = {}
    for r in held:
        for line in r.lines:
            month_codes.setdefault((r.patient_id, r.period_start), set()).add(line.code)
    assert not any({"99424", "99426"} <= codes for codes in month_codes.values())
    expected = io.StringIO()
    write_csv(held, expected)
    assert expected.getvalue().split("\n", 1)[1] == table.csv_text(CsvRows())


def test_time_of_a_program_nobody_is_enrolled_in_makes_no_row() -> None:
    """CCM time when no patient has an enrollment of any program with time months: no month
    is owned, so there is no row (this raised an IndexError in the table's owner lookup)."""
    facts = _facts("P1", ("RPM",), CODES)
    entries = [_entry("A1", datetime(2026, 3, 10, 15, tzinfo=UTC), "25")]
    assert care_table(entries_of(entries), facts, date(2026, 5, 1), RULES, ZONE, {}).records() == []
